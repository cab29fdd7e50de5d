"""Diffusion's noise schedule and samplers (DDPM and DDIM), written out and checked against the closed form.

Ho, Jain & Abbeel, *Denoising Diffusion Probabilistic Models* (arXiv:2006.11239): with ``beta_1 .. beta_T``
and ``abar_t = prod_{s <= t} (1 - beta_s)``, the forward process has the closed form
``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``; a network ``eps(x_t, t)`` learns the noise, the loss
is ``||eps - eps(x_t, t)||^2``. DDPM samples with the ancestral step, DDIM (Song, Meng & Ermon,
arXiv:2010.02502) deterministically (``eta = 0``) on a subsequence of the steps.

Steps are numbered ``t = 0 .. T`` with ``t = 0`` the data itself (``abar_0 = 1``: the forward process at
``t = 0`` is the identity).

:class:`Denoising` is the noise-prediction loss as a ``wb.fit`` task: each batch draws its ``t`` and its noise
from a stream that is a pure function of ``(seed, step)``, so a resumed run draws what the uninterrupted one did.
"""
from __future__ import annotations

import math
from typing import Callable

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..train.tasks import StepRandomness, Task

__all__ = ["NoiseSchedule", "ddpm_sample", "ddim_sample", "Denoising"]

_NOISE_STREAM = 0xD1F

SCHEDULES = ("linear", "cosine")


class NoiseSchedule:
    """``betas``, ``alphas_cumprod`` (``abar``) over ``t = 0 .. T`` for a ``"linear"`` schedule (Ho et al.:
    1e-4 to 0.02 over T = 1000) or a ``"cosine"`` one (Nichol & Dhariwal, arXiv:2102.09672, offset 0.008)."""

    def __init__(self, steps: int = 1000, kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02):
        if kind not in SCHEDULES:
            raise ValueError(f"kind is one of {', '.join(SCHEDULES)}, got {kind!r}")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.steps, self.kind = steps, kind
        self.beta_start, self.beta_end = (float(beta_start), float(beta_end)) if kind == "linear" else (None, None)
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        else:
            f = lambda t: math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
            abar = torch.tensor([f(t) / f(0) for t in range(steps + 1)], dtype=torch.float64)
            betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])        # [T + 1], beta_0 = 0
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)                      # abar_0 = 1

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.device)[t.to(like.device)].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` (per example ``t`` ``[B]``)."""
        if (t < 0).any() or (t > self.steps).any():
            raise ValueError(f"t must lie in 0..{self.steps}")
        a = self._at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


@torch.no_grad()
def ddpm_sample(eps_model: Callable, schedule: NoiseSchedule, shape: tuple[int, ...],
                generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Ancestral sampling from ``x_T ~ N(0, I)``: ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(1 - beta_t)
    + sigma_t z`` with ``sigma_t^2 = beta_t`` (Ho et al.'s algorithm 2), down to ``t = 1``."""
    g = generator or torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device)
    for t in range(schedule.steps, 0, -1):
        tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = eps_model(x, tt)
        beta, abar = float(schedule.betas[t]), float(schedule.alphas_cumprod[t])
        x = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)
        if t > 1:
            x = x + math.sqrt(beta) * torch.randn(shape, generator=g).to(device)
    return x


@torch.no_grad()
def ddim_sample(eps_model: Callable, schedule: NoiseSchedule, shape: tuple[int, ...], steps: int = 50,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic DDIM (``eta = 0``) over ``steps`` evenly spaced steps from ``T`` to 0:
    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, ``x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps``."""
    if not 1 <= steps <= schedule.steps:
        raise ValueError(f"steps must lie in 1..{schedule.steps}, got {steps}")
    g = generator or torch.Generator().manual_seed(0)
    x = x_T.to(device) if x_T is not None else torch.randn(shape, generator=g).to(device)
    ts = torch.linspace(schedule.steps, 0, steps + 1).round().long().tolist()
    for t, s in zip(ts[:-1], ts[1:]):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
        eps = eps_model(x, tt)
        a_t, a_s = float(schedule.alphas_cumprod[t]), float(schedule.alphas_cumprod[s])
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps
    return x


class Denoising(StepRandomness, Task):
    """Ho et al.'s simple loss as a ``wb.fit`` task: for a batch of images ``x_0`` (a ``wb.Loader`` of an image
    dataset; the labels are not used) draw ``t ~ U{1..T}`` and ``noise ~ N(0, I)`` per image, and train
    ``model(x_t, t)`` (e.g. ``wb.create_model("dit_tiny")``) to predict the noise: ``mean ||noise - eps||^2``.

    The draws are a pure function of ``(fit's seed, step)`` (of a call counter in evaluation, so every
    evaluation of a model sees the same draws for the same batches): a resumed run is the uninterrupted one.
    Metric: ``loss``."""

    metric_names = ("loss",)

    def __init__(self, schedule: NoiseSchedule):
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"Denoising needs a wb.dense.NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        steps = getattr(model, "steps", None)
        if steps is not None and steps != self.schedule.steps:
            raise ValueError(f"the model embeds {steps} diffusion steps and the schedule has {self.schedule.steps}: "
                             f"create the model with steps={self.schedule.steps} (or the schedule with {steps})")

    def check_batch(self, batch: Any) -> None:
        x = batch[0]
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name} trains on batches of images [B, C, H, W] (a wb.Loader of an image "
                             f"dataset), got {got}")

    def draw(self, x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t, noise)`` for the images ``x0``, drawn on the CPU from ``gen`` (the same on every device)."""
        t = torch.randint(1, self.schedule.steps + 1, (len(x0),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32)
        return t.to(x0.device), noise.to(device=x0.device, dtype=x0.dtype)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = batch[0]
        t, noise = self.draw(x0, self.generator(state, _NOISE_STREAM))
        return model(self.schedule.q_sample(x0, t, noise), t), noise

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor], batch: Any, state: Any = None) -> torch.Tensor:
        eps, noise = outputs
        if eps.shape != noise.shape:
            raise ValueError(f"the model returned {tuple(eps.shape)} for noise of {tuple(noise.shape)}: a noise "
                             "predictor outputs the shape of its input")
        return F.mse_loss(eps.float(), noise.float())

    def config(self) -> dict[str, Any]:
        s = self.schedule
        return {"name": self.name, "steps": s.steps, "schedule": s.kind, "betas": [s.beta_start, s.beta_end]}
