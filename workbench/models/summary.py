"""What an architecture costs, block by block: parameters, multiply-adds and activations.

>>> import workbench as wb
>>> s = wb.models.summary(wb.create_model("resnet20"))
>>> s.params, s.macs                     # doctest: +SKIP
(272474, 40813184)

The multiply-adds come from torch's own counter (``torch.utils.flop_counter.FlopCounterMode``, which
counts the FLOPs of convolutions and matrix products per module; a multiply-add is two of them), so
every architecture is priced by the same rules, including operators written by hand with
``torch.matmul``. Elementwise work (activations, BatchNorm at inference, additions) is not counted,
as in the papers' multiply-add figures. Attention's two products (scores and the weighted sum of the
values) count as well: torch registers its formula for the GPU's fused kernels but not for the CPU's
(``aten._scaled_dot_product_flash_attention_for_cpu``), so :func:`summary` adds that one with the
same formula, and ``nn.MultiheadAttention``'s fused inference path likewise; an attention written as two
``matmul`` calls is counted by torch itself. A model whose forward takes more than the images (a
diffusion model's timestep) supplies it from ``example_args(x)``. The rows are the model's *blocks*: the finest entries of
its ``hook_layers`` (stem, residual blocks, heads), plus a row for the top-level modules outside
them (the classifier), so that the rows add up to the totals.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .count import eval_forward

__all__ = ["ModelSummary", "summary", "summary_table"]


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _native_mha_flop(query_shape, key_shape, value_shape, embed_dim, num_head, *args, out_shape=None,
                     **kwargs) -> int:
    """``nn.MultiheadAttention``'s inference fast path, one fused operator: the three input projections,
    scores and weighted sum (as :func:`sdpa_flop_count` counts them), the output projection."""
    (b, lq, e), (_, lk, _), (_, lv, _) = query_shape, key_shape, value_shape
    projections = 2 * b * e * e * (lq + lk + lv) + 2 * b * lq * e * e
    return projections + 4 * b * lq * lk * e


# operators whose FLOPs torch's counter leaves out: the CPU's fused attention (the GPU's are registered) and
# nn.MultiheadAttention's inference fast path
_EXTRA_FORMULAS = {op: f for name, f in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_flop),
                                         ("_native_multi_head_attention", _native_mha_flop))
                   if (op := getattr(torch.ops.aten, name, None)) is not None}


@dataclass
class ModelSummary:
    """Per-block costs of one model for one input (see :func:`summary`)."""

    name: str
    input_size: tuple[int, int, int]
    table: pd.DataFrame  # one row per block: block, kind, params, macs, activations, output
    params: int  # all parameters of the model (also those no forward pass reaches)
    macs: int  # multiply-adds of one forward pass of one input
    activations: int  # output elements of the blocks, summed (what a forward pass keeps for backward, roughly)
    extra: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The totals as one record (``summary_table`` stacks them)."""
        return {"model": self.name, "params": self.params, "macs": self.macs, "activations": self.activations,
                "blocks": len(self.table)}

    def figure(self, metric: str = "macs"):
        """A plotly bar chart of ``metric`` (``"macs"``, ``"params"`` or ``"activations"``) per block."""
        if metric not in ("macs", "params", "activations"):
            raise ValueError(f"metric must be 'macs', 'params' or 'activations', got {metric!r}")
        import plotly.express as px

        label = {"macs": "multiply-adds", "params": "parameters", "activations": "activations (elements)"}[metric]
        fig = px.bar(self.table, x="block", y=metric, color="kind", labels={metric: label},
                     title=f"{self.name}: {label} per block ({_human(getattr(self, metric))} in all, "
                           f"input {'x'.join(map(str, self.input_size))})")
        fig.update_layout(xaxis_tickangle=-45, height=380)
        return fig

    def __str__(self) -> str:
        head = (f"{self.name}: {self.params:,} parameters, {_human(self.macs)} multiply-adds, "
                f"{_human(self.activations)} activations per {'x'.join(map(str, self.input_size))} input")
        return head + "\n" + self.table.to_string(index=False)

    def _repr_html_(self) -> str:
        head = (f"<b>{self.name}</b>: {self.params:,} parameters, {_human(self.macs)} multiply-adds, "
                f"{_human(self.activations)} activations per {'x'.join(map(str, self.input_size))} input")
        return head + self.table.to_html(index=False)


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def _blocks(model: nn.Module) -> list[str]:
    """The finest ``hook_layers`` entries (none of them the parent of another), then every top-level
    module with parameters that none of them covers."""
    listed = [n for n in getattr(model, "hook_layers", ()) if n]
    finest = [n for n in listed if not any(o != n and o.startswith(n + ".") for o in listed)]
    covered = {n.split(".")[0] for n in finest}
    names = list(finest)
    for top, m in model.named_children():
        if top in covered or not any(True for _ in m.parameters()):
            continue
        names.append(top)
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted(names, key=lambda n: order[n])


def summary(model: nn.Module, input_size: tuple[int, int, int] | None = None, name: str | None = None) -> ModelSummary:
    """Parameters, multiply-adds and activations of ``model``, per block and in all, for one input.

    Args:
        model: any module; workbench models list their blocks in ``hook_layers``.
        input_size: ``(channels, height, width)`` of one input; default the model's own
            (``in_chans`` x ``img_size``, 3 x 32 x 32 when it does not say).
        name: the label in tables and figures (default the registered name).

    Returns:
        :class:`ModelSummary`: ``.params``, ``.macs``, ``.activations``, ``.table`` and ``.figure()``.

    Example:
        >>> s = wb.models.summary(wb.create_model("mobilenetv2", num_classes=1000), (3, 224, 224))  # doctest: +SKIP
        >>> round(s.macs / 1e6)                                                                      # doctest: +SKIP
        301
    """
    if input_size is None:
        s = getattr(model, "img_size", None) or 32
        input_size = (getattr(model, "in_chans", 3), s, s)
    if len(input_size) != 3 or any(int(v) < 1 for v in input_size):
        raise ValueError(f"input_size must be (channels, height, width) of one input, got {input_size!r}")
    input_size = tuple(int(v) for v in input_size)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = torch.zeros(1, *input_size, device=device)
    names = _blocks(model)
    modules = dict(model.named_modules())
    outputs: dict[str, tuple[int, tuple]] = {}

    def keep(n):
        def hook(mod, args, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(t, torch.Tensor):
                outputs[n] = (t[0].numel(), tuple(t.shape[1:]))
        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_EXTRA_FORMULAS)
    with counter:
        eval_forward(model, x, handles)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    total_macs = int(counter.get_total_flops()) // 2

    def macs_of(n: str) -> int:
        return int(sum(counts.get(f"{root}.{n}", {}).values())) // 2

    rows, seen = [], set()
    for n in names:
        p = sum(q.numel() for q in modules[n].parameters() if id(q) not in seen)
        seen.update(id(q) for q in modules[n].parameters())
        numel, shape = outputs.get(n, (0, ()))
        rows.append({"block": n, "kind": type(modules[n]).__name__, "params": p, "macs": macs_of(n),
                     "activations": numel, "output": "x".join(map(str, shape))})
    total_params = sum(q.numel() for q in model.parameters())
    rest_params = total_params - sum(r["params"] for r in rows)
    rest_macs = total_macs - sum(r["macs"] for r in rows)
    if rest_params or rest_macs:  # parameters or work outside every block (a functional head, say)
        rows.append({"block": "(rest)", "kind": "", "params": rest_params, "macs": rest_macs,
                     "activations": 0, "output": ""})
    table = pd.DataFrame(rows, columns=["block", "kind", "params", "macs", "activations", "output"])
    label = name or getattr(model, "model_name", None) or type(model).__name__
    return ModelSummary(label, input_size, table, total_params, total_macs, int(table["activations"].sum()))


def summary_table(models: dict[str, nn.Module], input_size: tuple[int, int, int] | None = None) -> pd.DataFrame:
    """One row of totals per model (``{label: model}``): parameters, multiply-adds, activations, blocks;
    the table notebooks print before comparing architectures at equal cost."""
    if not models:
        raise ValueError("summary_table needs at least one model: pass {label: model}")
    return pd.DataFrame([summary(m, input_size, name=k).row() for k, m in models.items()])
