"""Sharpness measures of a model's loss over a dataset.

* :func:`dominant_eigenvalue`: the largest Hessian eigenvalue (Lanczos, :mod:`workbench.hessian`).
* :func:`worst_case_increase`: ``max_{||e|| <= rho} L(theta + e) - L(theta)``, the quantity SAM
  minimizes (Foret et al. 2021), found by normalized gradient ascent projected onto the ball;
  one step is SAM's own first-order estimate ``e = rho g / ||g||``. ``adaptive=True`` uses
  ASAM's ball scaled by ``|w|`` (Kwon et al. 2021), which makes the measure invariant to
  rescaling a ReLU network's layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._analysis import analysis_mode
from .slices import _weighted


@dataclass
class WorstCase:
    loss: float            # at the weights
    perturbed_loss: float  # at the worst point found in the ball
    increase: float        # their difference
    rho: float
    steps: int
    adaptive: bool
    bn: str


def dominant_eigenvalue(model: nn.Module, loss_fn: Callable, batches: Sequence, **kwargs):
    """:func:`workbench.hessian.eigenvalues` with ``top_k=1`` (the :class:`HessianResult`)."""
    from ..hessian import eigenvalues

    return eigenvalues(model, loss_fn, batches, top_k=1, **kwargs)


def worst_case_increase(model: nn.Module, loss_fn: Callable = F.cross_entropy, batches: Sequence = (), *,
                        rho: float = 0.05, steps: int = 1, adaptive: bool = False, bn: str = "eval") -> WorstCase:
    """The largest loss increase found within an L2 ball of radius ``rho`` about the weights
    (over all trainable parameters and the mean loss of ``batches``), by ``steps`` projected
    normalized-gradient ascent steps of length ``rho / steps`` each (at least one reaches the
    boundary). More steps can only find a larger increase at a given ``rho``."""
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    batches, w = _weighted(batches)
    from torch.func import functional_call

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters to perturb")
    dev = named[0][1].device
    base = {n: p.detach() for n, p in named}
    scale = {n: (p.abs() if adaptive else torch.ones_like(p)) for n, p in base.items()}

    def mean_loss(eps: dict, grad: bool):
        total = 0.0
        grads = {n: torch.zeros_like(t) for n, t in eps.items()} if grad else None
        for (x, y), wi in zip(batches, w):
            e = {n: t.detach().requires_grad_(grad) for n, t in eps.items()}
            with torch.set_grad_enabled(grad):
                out = functional_call(model, {n: base[n] + e[n] for n in base}, (x.to(dev),), strict=False)
                loss = loss_fn(out, y.to(dev) if isinstance(y, torch.Tensor) else y)
            if grad:
                gs = torch.autograd.grad(loss, list(e.values()), allow_unused=True)
                for (n, _), g in zip(e.items(), gs):
                    if g is not None:
                        grads[n] += wi * g
            total += wi * float(loss.detach())
        return total, grads

    def ball_norm(eps):   # ||T^-1 e|| (T = |w| for ASAM, identity for SAM)
        return float(torch.sqrt(sum(((eps[n] / scale[n].clamp_min(1e-12)) ** 2).double().sum() for n in eps)))

    with analysis_mode(model, bn):
        zero = {n: torch.zeros_like(t) for n, t in base.items()}
        loss0, _ = mean_loss(zero, False)
        eps = zero
        for _ in range(steps):
            _, g = mean_loss(eps, True)
            tg = {n: scale[n] * g[n] for n in g}                     # T g
            gn = float(torch.sqrt(sum((t.double() ** 2).sum() for t in tg.values())))
            if gn == 0:
                break
            eps = {n: eps[n] + (rho / steps) * scale[n] * tg[n] / gn for n in eps}   # T^2 g / ||T g||
            r = ball_norm(eps)
            if r > rho:
                eps = {n: t * (rho / r) for n, t in eps.items()}
        worst, _ = mean_loss(eps, False)
    if not (torch.isfinite(torch.tensor(loss0)) and torch.isfinite(torch.tensor(worst))):
        raise FloatingPointError(f"the loss was not finite (at the weights {loss0}, in the ball {worst}); "
                                 "check the model and inputs, or use a smaller rho")
    return WorstCase(loss0, worst, worst - loss0, float(rho), steps, adaptive, bn)
