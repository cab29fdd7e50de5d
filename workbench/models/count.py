"""Counting what a model computes: multiply-accumulates per conv and linear layer, from one traced
forward pass (shared by the tools that price a model: ``wb.quant.cost``, ``wb.prune.sparsity_report``)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["example_input", "eval_forward", "extra_args", "layer_macs"]


def example_input(model: nn.Module, n: int = 2) -> torch.Tensor:
    """Zeros of the model's input shape (``in_chans`` x ``img_size``, 3 x 32 when it does not say)."""
    c, s = getattr(model, "in_chans", 3), getattr(model, "img_size", None) or 32
    return torch.zeros(n, c, s, s, device=next(model.parameters()).device)


def extra_args(model: nn.Module, x: torch.Tensor) -> tuple:
    """What a model's forward takes after its images, for a pass that only measures (a diffusion model's
    timestep, say): the model's ``example_args(x)`` if it has one, else nothing."""
    make = getattr(model, "example_args", None)
    return tuple(make(x)) if callable(make) else ()


def eval_forward(model: nn.Module, x: torch.Tensor, handles: list) -> None:
    """One forward pass of ``x`` in eval mode without gradients; ``handles`` (hooks) are removed and the
    train flag restored afterwards, also when the pass raises."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x, *extra_args(model, x))
    finally:
        for h in handles:
            h.remove()
        model.train(was)


def layer_macs(model: nn.Module, example: torch.Tensor | None = None) -> dict[str, int]:
    """``{layer name: multiply-accumulates}`` of every conv and linear layer for one input (the first of
    ``example``); a layer the pass does not reach is missing."""
    x = example_input(model)[:1] if example is None else example[:1]
    macs: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(lambda mod, a, o, n=name: macs.__setitem__(
                n, int(o[0].numel() * mod.weight[0].numel()))))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(lambda mod, a, o, n=name: macs.__setitem__(
                n, int(o[0].numel() * mod.in_features))))
    eval_forward(model, x, handles)
    return macs
