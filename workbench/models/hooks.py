"""Named places in a model where activations can be read.

A :class:`HookPoint` is an identity module placed where a paper looks at a
representation (a block's output, the residual branch before the addition). Its
name in ``model.named_modules()`` is the name ``run_with_cache`` takes. Every other
module name works too; hook points exist for the places that are not the output
of a module.
"""
from __future__ import annotations

import torch
from torch import nn


class HookPoint(nn.Identity):
    """An identity layer that marks a named activation."""


def hook_points(model: nn.Module) -> list[str]:
    """Names of the model's canonical read-out places, in forward order.

    These are the :class:`HookPoint` modules, plus whatever the model lists in its
    ``hook_layers`` attribute (whole blocks and stages, for instance).
    """
    names = [n for n, m in model.named_modules() if isinstance(m, HookPoint)]
    extra = list(getattr(model, "hook_layers", ()))
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted(set(names) | set(extra), key=lambda n: order.get(n, len(order)))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


