"""Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur, ICLR 2021, arXiv 2010.01412).

Each step first climbs to the worst point of an L2 ball of radius ``rho`` around the weights,
``e = rho g / ||g||``, takes the gradient there, steps back and lets the base optimizer apply
that gradient at the original weights. ``adaptive=True`` is ASAM (Kwon et al. 2021): the ball
is scaled by ``|w|``. A SAM step costs two forward-backward passes.

>>> wb.fit(model, train, optimizer=wb.train.sam(rho=0.05), lr=0.1)      # doctest: +SKIP

BatchNorm's running statistics see both passes (as in the reference implementations).
"""
from __future__ import annotations

from typing import Callable

import torch


class SAM(torch.optim.Optimizer):
    needs_closure = True  # workbench.fit passes the closure that recomputes loss and gradients

    def __init__(self, params, base: Callable[[list], torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False):
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive))
        self.base = base(self.param_groups)
        for g in self.param_groups:
            g.setdefault("rho", rho)
            g.setdefault("adaptive", adaptive)

    # one set of groups, the base optimizer's, also after load_state_dict replaces them: the
    # trainer's learning-rate schedule must reach the optimizer that steps
    @property
    def param_groups(self):
        return self.base.param_groups if "base" in self.__dict__ else self.__dict__["_groups"]

    @param_groups.setter
    def param_groups(self, groups):
        self.__dict__["_groups"] = groups

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [((p.abs() if g["adaptive"] else 1.0) * p.grad).norm(2)
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        return torch.norm(torch.stack(norms), 2) if norms else torch.zeros(())

    def step(self, closure=None):
        if closure is None:
            raise ValueError("SAM needs the closure that recomputes the loss and gradients: optimizer.step(closure)")
        norm = self._grad_norm()
        moved = []
        with torch.no_grad():
            for g in self.param_groups:
                scale = g["rho"] / (norm + 1e-12)
                for p in g["params"]:
                    if p.grad is None:
                        continue
                    e = (p * p if g["adaptive"] else 1.0) * p.grad * scale
                    p.add_(e)
                    moved.append((p, e))
        with torch.enable_grad():
            closure()  # the gradient at the worst point of the ball
        with torch.no_grad():
            for p, e in moved:
                p.sub_(e)
        self.base.step()

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict):
        self.base.load_state_dict(state_dict)


def sam(rho: float = 0.05, base: str = "sgd", adaptive: bool = False, momentum: float = 0.9,
        nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999)) -> Callable[[list], SAM]:
    """An ``optimizer=`` for :func:`workbench.fit`: SAM around SGD (with momentum), Adam or AdamW."""
    bases = {"sgd": lambda g: torch.optim.SGD(g, lr=0.1, momentum=momentum, nesterov=nesterov and momentum > 0),
             "adam": lambda g: torch.optim.Adam(g, lr=1e-3, betas=betas),
             "adamw": lambda g: torch.optim.AdamW(g, lr=1e-3, betas=betas)}
    if base not in bases:
        raise ValueError(f"unknown base optimizer {base!r}; choose one of {', '.join(bases)}")

    def make(groups):
        return SAM(groups, bases[base], rho=rho, adaptive=adaptive)

    make.__qualname__ = f"sam(rho={rho}, base={base!r}, adaptive={adaptive})"
    make.cache_key = (f"sam(rho={rho!r}, base={base!r}, adaptive={adaptive!r}, momentum={momentum!r}, "
                      f"nesterov={nesterov!r}, betas={tuple(betas)!r})")   # for train_model's cache
    return make
