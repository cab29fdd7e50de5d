"""Two-view contrastive learning with the NT-Xent loss (Chen, Kornblith, Norouzi & Hinton, *A Simple
Framework for Contrastive Learning of Visual Representations*, 2020, https://arxiv.org/abs/2002.05709)
as a task of :func:`workbench.fit`.

For a batch of ``N`` images, two random views of each give ``2N`` embeddings ``z`` (L2-normalized).
With ``sim(i, j) = z_i . z_j / tau``, the loss of anchor ``i`` whose other view is ``p(i)`` is::

    l_i = -log( exp(sim(i, p(i))) / sum over k != i of exp(sim(i, k)) )

and NT-Xent is the mean of ``l_i`` over all ``2N`` anchors: each view must pick its partner out of
the ``2N - 2`` other images' views.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_crop_flip, random_stream
from ..train import Task
from ..train.tasks import check_image_batch

__all__ = ["Contrastive", "nt_xent", "two_views"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent of two views ``[N, D]`` (row ``i`` of ``z1`` and of ``z2`` are views of one image).

    Returns:
        ``(loss, hits)``: the mean loss over the ``2N`` anchors, and for how many anchors the
        most similar other embedding is the partner view (contrastive top-1).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent needs two views of the same shape [N, D], got {list(z1.shape)} and {list(z2.shape)}")
    if len(z1) < 2:
        raise ValueError("nt_xent needs at least 2 images per batch (the other images are the negatives)")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)           # [2N, D]
    sim = z @ z.T / temperature                                     # [2N, 2N]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = F.cross_entropy(sim, partner)
    hits = (sim.argmax(1) == partner).sum()
    return loss, hits


def two_views(x: torch.Tensor, seed: int, step: int, padding: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random crop-and-flip views of a batch, a pure function of ``(seed, step)``."""
    return tuple(random_crop_flip(x, random_stream(seed, step, view), padding=padding) for view in (0, 1))


class Contrastive(Task):
    """The model maps images to embeddings; each batch gives two views of every image, NT-Xent.

    Args:
        temperature: ``tau`` of the similarities.
        padding: the views' random shift (pixels), each view also flipped at random.

    Train with ``augment=None`` (the task makes the views). Metrics: ``loss`` and ``acc``, how often a
    view's nearest other embedding is its partner; test views use a fixed seed, so the test figures
    of two epochs are comparable.
    """

    metric_names = ("loss", "acc")

    def __init__(self, temperature: float = 0.5, padding: int = 4):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature, self.padding = float(temperature), int(padding)
        self._eval_calls = 0

    def config(self) -> dict[str, Any]:
        return {"name": "Contrastive", "temperature": self.temperature, "padding": self.padding}

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)
        if len(batch[0]) < 2:
            raise ValueError(f"{self.name} needs at least 2 images per batch (the negatives); raise batch_size")

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        if state is not None:  # a pure function of the step: a resumed run sees the same views (so does SAM's pass)
            v1, v2 = two_views(x, state.seed, state.step, self.padding)
        else:  # evaluation: the same views every time
            self._eval_calls += 1
            v1, v2 = two_views(x, 12345, self._eval_calls, self.padding)
        z = model(torch.cat([v1, v2]))
        if z.ndim != 2:
            raise ValueError(f"{self.name} needs the model to return embeddings [B, D], got shape {list(z.shape)}")
        return z[: len(x)], z[len(x):]

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        return nt_xent(*outputs, temperature=self.temperature)[0]

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        z1, z2 = (o.detach() for o in outputs)
        _, hits = nt_xent(z1, z2, self.temperature)
        n = 2 * len(z1)
        return {"loss": loss.detach().double() * n, "acc": hits.double()}, n

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        self._eval_calls = 0
        return super().evaluate(model, loader, precision)
