"""Two-view contrastive learning as tasks of :func:`workbench.fit`: SimCLR's NT-Xent (Chen, Kornblith,
Norouzi & Hinton, *A Simple Framework for Contrastive Learning of Visual Representations*, 2020,
https://arxiv.org/abs/2002.05709) and the supervised contrastive loss (Khosla et al., *Supervised
Contrastive Learning*, 2020, https://arxiv.org/abs/2004.11362).

For a batch of ``N`` images, two random views of each give ``2N`` embeddings ``z`` (L2-normalized).
With ``sim(i, j) = z_i . z_j / tau``, the loss of anchor ``i`` whose other view is ``p(i)`` is::

    l_i = -log( exp(sim(i, p(i))) / sum over k != i of exp(sim(i, k)) )

and NT-Xent is the mean of ``l_i`` over all ``2N`` anchors: each view must pick its partner out of
the ``2N - 2`` other images' views. The supervised loss (SupCon, Khosla et al. eq. 2, the "out"
form) counts every other view of the same class as a positive::

    l_i = -1/|P(i)| sum over p in P(i) of log( exp(sim(i, p)) / sum over k != i of exp(sim(i, k)) )

With every label distinct, ``P(i) = {p(i)}`` and SupCon is NT-Xent.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_crop_flip, random_stream
from ..train import Task
from ..train.tasks import check_image_batch
from .views import VIEW_RECIPES, make_views

__all__ = ["Contrastive", "SupervisedContrastive", "nt_xent", "supcon_loss", "two_views"]


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive (SimCLR uses 0.5 on CIFAR, SupCon 0.1), got {temperature}")
    return float(temperature)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent of two views ``[N, D]`` (row ``i`` of ``z1`` and of ``z2`` are views of one image).

    Returns:
        ``(loss, hits)``: the mean loss over the ``2N`` anchors, and for how many anchors the
        most similar other embedding is the partner view (contrastive top-1).
    """
    temperature = _check_temperature(temperature)
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent needs two views of the same shape [N, D] (one row per image in each), got "
                         f"{list(z1.shape)} and {list(z2.shape)}")
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


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss of ``V`` views of ``N`` images, ``z`` ``[N, V, D]`` (or ``[N, D]``: one view).

    Every other embedding with the same label is a positive; the mean over anchors of the mean
    log-probability of their positives, negated. An anchor without any positive (a class seen once
    with one view) is left out; a batch where no anchor has one is an error.
    """
    temperature = _check_temperature(temperature)
    if z.ndim == 2:
        z = z[:, None]
    if z.ndim != 3:
        raise ValueError(f"supcon_loss needs embeddings [N, views, D] or [N, D], got {list(z.shape)}")
    n, v, _ = z.shape
    if not (isinstance(labels, torch.Tensor) and labels.shape == (n,) and not labels.is_floating_point()):
        raise ValueError(f"supcon_loss needs integer labels [{n}] (one per image), got "
                         f"{list(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    feats = F.normalize(z.float().transpose(0, 1).reshape(v * n, -1), dim=1)   # view-major [V N, D]
    lab = labels.to(feats.device).repeat(v)
    sim = feats @ feats.T / temperature
    self_mask = torch.eye(v * n, dtype=torch.bool, device=feats.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    positive = (lab[:, None] == lab[None, :]) & ~self_mask
    count = positive.sum(1)
    has = count > 0
    if not has.any():
        raise ValueError("supcon_loss: no anchor has a positive (every class appears once with one view); "
                         "give two views per image or larger batches")
    mean_log_prob = (log_prob.masked_fill(~positive, 0).sum(1)[has] / count[has])
    return -mean_log_prob.mean()


def two_views(x: torch.Tensor, seed: int, step: int, padding: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random crop-and-flip views of a batch, a pure function of ``(seed, step)``."""
    return tuple(random_crop_flip(x, random_stream(seed, step, view), padding=padding) for view in (0, 1))


def _view_seed(seed: int, step: int, view: int) -> int:
    return int(torch.randint(0, 2 ** 62, (1,), generator=random_stream(seed, step, view)))


class Contrastive(Task):
    """The model maps images to embeddings; each batch gives two views of every image, NT-Xent.

    Args:
        temperature: ``tau`` of the similarities.
        views: how a view is made, one of :data:`~workbench.ssl.views.VIEW_RECIPES`: ``"crop_flip"``
            (shift and flip) or ``"simclr"`` (random resized crop, flip, colour jitter, grayscale).
        strength: the colour jitter's strength ``s`` of the SimCLR views.
        padding: the ``"crop_flip"`` views' random shift (pixels).

    Train with ``augment=None`` (the task makes the views). Metrics: ``loss`` and ``acc``, how often a
    view's nearest other embedding is its partner; test views use a fixed seed, so the test figures
    of two epochs are comparable.
    """

    metric_names = ("loss", "acc")

    def __init__(self, temperature: float = 0.5, views: str = "crop_flip", strength: float = 0.5, padding: int = 4):
        if views not in VIEW_RECIPES:
            raise ValueError(f"unknown views {views!r}; choose one of {', '.join(VIEW_RECIPES)}")
        self.temperature, self.views = _check_temperature(temperature), views
        self.strength, self.padding = float(strength), int(padding)
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self._eval_calls = 0

    def config(self) -> dict[str, Any]:
        cfg = {"name": self.name, "temperature": self.temperature, "padding": self.padding}
        if self.views != "crop_flip":  # the first version had crop-and-flip only: its cache keys stay valid
            cfg.update(views=self.views, strength=self.strength)
        return cfg

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if self.mean is None:  # the views un-normalize with the training data's statistics
            self.mean, self.std = tuple(dataset.mean), tuple(dataset.std)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)
        if len(batch[0]) < 2:
            raise ValueError(f"{self.name} needs at least 2 images per batch (the negatives); raise batch_size")

    def make_pair(self, x: torch.Tensor, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of a batch, a pure function of ``(seed, step)``."""
        if self.views == "crop_flip":
            return two_views(x, seed, step, self.padding)
        if self.mean is None:
            raise ValueError(f"{self.name}(views={self.views!r}) needs the data's mean and std: train it with fit(), "
                             "which hands them over, or set task.mean and task.std")
        return tuple(make_views(x, self.mean, self.std, _view_seed(seed, step, v), self.views, self.strength)
                     for v in (0, 1))

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        if state is not None:  # a pure function of the step: a resumed run sees the same views (so does SAM's pass)
            v1, v2 = self.make_pair(x, state.seed, state.step)
        else:  # evaluation: the same views every time
            self._eval_calls += 1
            v1, v2 = self.make_pair(x, 12345, self._eval_calls)
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


class SupervisedContrastive(Contrastive):
    """:class:`Contrastive` with labels: every view of the same class is a positive (SupCon).

    Metrics: ``loss`` and ``acc``, how often a view's nearest other embedding has its label.
    The defaults are SupCon's (temperature 0.1, SimCLR views).
    """

    def __init__(self, temperature: float = 0.1, views: str = "simclr", strength: float = 0.5, padding: int = 4):
        super().__init__(temperature, views, strength, padding)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature, "views": self.views, "strength": self.strength,
                "padding": self.padding}

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        return supcon_loss(torch.stack(outputs, 1), batch[1], self.temperature)

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        z = F.normalize(torch.cat([o.detach() for o in outputs]).float(), dim=1)
        sim = (z @ z.T).fill_diagonal_(float("-inf"))
        lab = batch[1].repeat(2)
        hits = (lab[sim.argmax(1)] == lab).sum()
        return {"loss": loss.detach().double() * len(z), "acc": hits.double()}, len(z)
