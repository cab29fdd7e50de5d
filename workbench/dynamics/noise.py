"""Annealed Gaussian gradient noise as a ``wb.fit`` algorithm, and the plain initializations it is
meant to rescue.

Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens, *Adding Gradient Noise Improves Learning
for Very Deep Networks* (arXiv:1511.06807): after every backward pass, add to each gradient Gaussian
noise of variance ``sigma_t ** 2 = eta / (1 + t) ** gamma``, ``t`` the step, ``gamma = 0.55`` and ``eta``
one of 0.01, 0.3 and 1.0 (the paper's section 2).

>>> noise = GradientNoise(eta=0.01)                                   # doctest: +SKIP
>>> wb.fit(model, train, test, algorithms=[noise])                    # doctest: +SKIP

The noise has a generator of its own, on the training device, seeded from ``seed`` (default: the run's
seed), checkpointed with the run: a resumed run draws exactly the noise an uninterrupted one would.
``eta = 0`` is the identity (no draw at all). The history gets a column ``noise_std``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..train.events import Algorithm, State

__all__ = ["GradientNoise", "noise_std", "gaussian_init"]

_NOISE_STREAM = 7_919  # keeps the noise's generator apart from the loader's and the model's


def _check_scale(eta: float, gamma: float) -> None:
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"the noise scale eta is a variance, so it must be >= 0 (the paper uses 0.01, 0.3 or 1.0); "
                         f"got {eta!r}")
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma is the annealing exponent, >= 0 (the paper: 0.55; 0 keeps the noise constant); "
                         f"got {gamma!r}")


def noise_std(step: int, eta: float, gamma: float = 0.55) -> float:
    """The noise's standard deviation at ``step`` (0-based): ``sqrt(eta / (1 + step) ** gamma)``."""
    _check_scale(eta, gamma)
    return math.sqrt(eta / (1 + step) ** gamma)


class GradientNoise(Algorithm):
    """Gaussian noise of variance ``eta / (1 + t) ** gamma`` added to every trained gradient after backward.

    Args:
        eta: the variance at step 0 (>= 0; 0 is the identity).
        gamma: the annealing exponent (the paper: 0.55).
        seed: the noise's own seed; ``None`` derives it from the run's seed.
    """

    def __init__(self, eta: float = 0.01, gamma: float = 0.55, seed: int | None = None):
        _check_scale(eta, gamma)
        super().__init__(eta=float(eta), gamma=float(gamma), seed=seed)
        self.eta, self.gamma, self.seed = float(eta), float(gamma), seed
        self.gen: torch.Generator | None = None

    def on_init(self, state: State) -> None:
        seed = state.seed * 1_000_003 + _NOISE_STREAM if self.seed is None else int(self.seed)
        self.gen = torch.Generator(device=state.device).manual_seed(seed)

    def on_after_backward(self, state: State) -> None:
        if self.eta == 0.0:
            return
        std = math.sqrt(self.eta / (1 + state.step) ** self.gamma)  # noise_std, its arguments checked at __init__
        state.logs["noise_std"] = std
        for p in state.trainable.values():
            if p.grad is not None:
                noise = torch.randn(p.grad.shape, generator=self.gen, device=p.grad.device, dtype=p.grad.dtype)
                p.grad.add_(noise, alpha=std)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.gen.get_state()} if self.gen is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.gen.set_state(state["generator"].to(torch.uint8).cpu())


def gaussian_init(model: nn.Module, std: float, bias: float = 0.0, seed: int = 0, fan_in: bool = False) -> nn.Module:
    """Draw every ``Linear`` and ``Conv2d`` weight from ``N(0, std ** 2)`` and set every bias to ``bias``, in place.

    A plain, depth-unaware initialization such as the gradient-noise paper's "simple init" (its section 4.1
    trains a 20-layer network of 50 units from one); ``std = 0`` gives all-zero weights. With ``fan_in=True``
    each layer's standard deviation is ``std / sqrt(fan_in)`` instead: ``std = sqrt(2)`` is He et al.'s
    initialization for ReLU networks (arXiv:1502.01852). BatchNorm layers, if any, are left as they are.
    Returns the model.
    """
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
        raise ValueError(f"std is a standard deviation, >= 0; got {std!r}")
    gen = torch.Generator().manual_seed(int(seed))
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to initialize")
    with torch.no_grad():
        for m in layers:
            scale = std / math.sqrt(m.weight[0].numel()) if fan_in else std  # weight[0]: one output's inputs
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * scale)
            if m.bias is not None:
                m.bias.fill_(bias)
    return model
