"""One pattern for every interactive figure: controls that re-render a plotly figure in place.

``explorer(render, depth=[14, 32], policy=[...])`` shows dropdowns (or a slider for
numbers) and a ``FigureWidget``; moving a control calls ``render(**values)`` and
copies the new traces into the same widget, so the figure updates without being
re-created. Each control starts at ``render``'s default for that keyword when it is one of
the values offered (so a slider's values can stay in order), else at the first value. Without a
widget frontend (nbconvert, the docs build, a console) the same call returns the static figure
for those initial values.
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, Sequence

from .env import widgets_available


def explorer(render: Callable[..., Any], **controls: Sequence[Any]):
    """Interactive figure ``render(**values)`` with one control per keyword.

    Args:
        render: returns a plotly ``go.Figure`` for one choice of every control.
        **controls: the values each control offers, in the order shown. The initial value is
            ``render``'s default for that keyword when it is among them, else the first. Numbers
            give a slider, anything else a dropdown.

    Returns:
        An ``ipywidgets.VBox`` (controls above a ``FigureWidget``) with a widget frontend,
        else the static figure for the initial values.
    """
    if not controls:
        raise ValueError("explorer needs at least one control, for example depth=[14, 32]")
    for name, values in controls.items():
        if len(values) == 0:
            raise ValueError(f"control {name!r} has no values")
    controls = {k: list(v) for k, v in controls.items()}
    initial = {k: _initial(render, k, v) for k, v in controls.items()}
    if not widgets_available():
        return render(**initial)
    import ipywidgets as W
    import plotly.graph_objects as go

    fig = go.FigureWidget(render(**initial))
    widgets = {}
    for name, values in controls.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(values) > 2:
            w = W.SelectionSlider(options=values, value=initial[name], description=name, continuous_update=False)
        else:
            w = W.Dropdown(options=values, value=initial[name], description=name)
        widgets[name] = w

    status = W.HTML(value="")

    def update(_change=None) -> None:
        status.value = "<i>updating…</i>"
        try:
            new = render(**{k: w.value for k, w in widgets.items()})
        except Exception as e:  # noqa: BLE001 (show it beside the controls; a widget callback's error is otherwise lost)
            status.value = f"<span style='color:#b00'>{type(e).__name__}: {e}</span>"
            return
        status.value = ""
        with fig.batch_update():
            if len(new.data) == len(fig.data) and all(a.type == b.type for a, b in zip(new.data, fig.data)):
                for old_t, new_t in zip(fig.data, new.data):
                    old_t.update(new_t.to_plotly_json(), overwrite=True)
            else:
                fig.data = ()
                fig.add_traces(list(new.data))
            fig.layout.update(new.layout.to_plotly_json(), overwrite=True)

    for w in widgets.values():
        w.observe(update, names="value")
    box = W.VBox([W.HBox(list(widgets.values()) + [status]), fig])
    box.figure, box.controls, box.status = fig, widgets, status
    return box


def _initial(render: Callable[..., Any], name: str, values: list[Any]) -> Any:
    """``render``'s default for keyword ``name`` if it is one of ``values`` (the very value offered), else the
    first value."""
    try:
        default = inspect.signature(render).parameters[name].default
    except (KeyError, TypeError, ValueError):  # no such parameter (a **kwargs render), or no signature
        return values[0]
    if default is inspect.Parameter.empty:
        return values[0]
    for v in values:
        try:
            alike = type(v) is type(default) or (isinstance(v, numbers.Number) and isinstance(default, numbers.Number))
            if v is default or (alike and bool(v == default)):
                return v
        except Exception:  # noqa: BLE001 (values whose == is not a truth value: arrays, tensors)
            continue
    return values[0]
