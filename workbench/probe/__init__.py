"""Read activations by name: ``run_with_cache(model, x, names)``.

TransformerLens-style: any name from ``model.named_modules()`` (a block, a stage,
a :class:`~workbench.models.HookPoint`) is a place to read. Hooks are always
removed afterwards, also when the forward pass raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from ..models.hooks import hook_points

__all__ = ["run_with_cache", "hooks", "resolve_names", "hook_points"]


def resolve_names(model: nn.Module, names: Iterable[str] | str | None) -> list[str]:
    """Check names against the model; ``None`` means the model's :func:`hook_points`."""
    modules = dict(model.named_modules())
    if names is None:
        return hook_points(model)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        available = hook_points(model) or [n for n in modules if n]
        raise ValueError(f"no module named {', '.join(map(repr, unknown))} in {type(model).__name__}; "
                         f"available hook points: {', '.join(available)}")
    return names


@contextmanager
def hooks(model: nn.Module, fns: dict[str, Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]]
          ) -> Iterator[None]:
    """Register forward hooks ``{module name: fn(module, inputs, output)}`` for a ``with`` block; always removed."""
    modules = dict(model.named_modules())
    resolve_names(model, list(fns))
    handles = []
    try:
        for name, fn in fns.items():
            handles.append(modules[name].register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def run_with_cache(model: nn.Module, x: torch.Tensor, names: Iterable[str] | str | None = None,
                   detach: bool = True, device: torch.device | str | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model(x)`` and return ``(output, {name: activation})``.

    Args:
        model: any module.
        x: its input batch.
        names: module names to record (``None``: the model's hook points).
        detach: detach the activations (keep ``False`` to backpropagate through them,
            for example in an alignment loss).
        device: move the recorded activations there (for example ``"cpu"`` to save GPU memory).

    Example:
        >>> model = wb.models.create_model("resnet20")                       # doctest: +SKIP
        >>> logits, cache = run_with_cache(model, x, ["layer1", "layer3.2"])  # doctest: +SKIP
        >>> cache["layer1"].shape                                             # doctest: +SKIP
        torch.Size([8, 16, 32, 32])
    """
    names = resolve_names(model, names)
    cache: dict[str, torch.Tensor] = {}

    def make(name: str):
        def fn(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            out = out.detach() if detach else out
            cache[name] = out.to(device) if device is not None else out
        return fn

    with hooks(model, {n: make(n) for n in names}):
        output = model(x)
    return output, cache
