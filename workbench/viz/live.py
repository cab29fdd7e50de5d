"""A loss/accuracy plot that updates while a model trains."""
from __future__ import annotations

from typing import Any

from .env import widgets_available


class LivePlot:
    """Live training curves: a plotly FigureWidget updated in place with a widget
    frontend; elsewhere nothing is drawn until :meth:`finish` shows a static figure."""

    def __init__(self, total_epochs: int | None = None, metrics: tuple[str, ...] = ("loss", "acc")):
        self.metrics = metrics
        self.widget = None
        self.total_epochs = total_epochs
        if widgets_available():
            import plotly.graph_objects as go
            from IPython.display import display
            from plotly.subplots import make_subplots

            # both traces of every metric exist from the start, so updates only change data
            fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
            for j, m in enumerate(metrics):
                for split, dash in (("train", None), ("test", "dash")):
                    fig.add_trace(go.Scatter(x=[], y=[], name=f"{split}_{m}", mode="lines+markers",
                                             line=dict(dash=dash)), row=1, col=j + 1)
            fig.update_layout(height=320, margin=dict(l=40, r=10, t=50, b=40))
            if total_epochs:
                fig.update_xaxes(range=[0.5, total_epochs + 0.5])
            self.widget = go.FigureWidget(fig)
            display(self.widget)

    def update(self, rows: list[dict[str, Any]]) -> None:
        if self.widget is None or not rows:
            return
        epochs = [r["epoch"] for r in rows]
        with self.widget.batch_update():
            k = 0
            for m in self.metrics:
                for split in ("train", "test"):
                    self.widget.data[k].x = epochs
                    self.widget.data[k].y = [r.get(f"{split}_{m}") for r in rows]
                    k += 1

    def finish(self, rows: list[dict[str, Any]]) -> None:
        if self.widget is not None:
            self.update(rows)
            return
        try:
            from IPython import get_ipython
            if get_ipython() is None:
                return
            import pandas as pd
            from IPython.display import display

            from .figures import training_curves
            display(training_curves(pd.DataFrame(rows), self.metrics))
        except ImportError:  # pragma: no cover
            pass
