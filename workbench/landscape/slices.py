"""1-D and 2-D slices of a model's loss and accuracy over a dataset.

Each point ``theta + a * dx (+ b * dy)`` is evaluated with ``torch.func.functional_call`` on
weights formed in place of the model's, so nothing is copied into the model and no state dict
is reloaded per point; the model itself is never changed. The grid always contains 0, and the
value there is the model's own loss (a test holds this to equality, and every point to the
loop that loads a state dict per point within 1e-6).

BatchNorm: ``bn="eval"`` (default) evaluates every point with the model's running statistics,
which were estimated at the centre; ``bn="train"`` uses each batch's own statistics at every
point (the running ones are not touched): the loss as training sees it. The choice is recorded in
the result.

On a GPU, ``chunk`` points are evaluated at once with ``torch.func.vmap`` over stacked weights
(fewer, larger kernels); on a CPU one point at a time is already at the forward-only bound.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._analysis import analysis_mode, check_bn_mode, weighted_batches
from .directions import check_direction


@dataclass
class Landscape:
    """A slice: ``loss``/``acc`` are ``(len(alphas),)`` for 1-D, ``(len(betas), len(alphas))`` for 2-D
    (rows follow ``betas``, as plotly's ``z`` expects)."""
    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    acc: np.ndarray
    center_loss: float
    center_acc: float
    bn: str
    seconds: float
    label: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return 1 if self.betas is None else 2

    def to_dict(self) -> dict:
        """Plain data (for :func:`workbench.cached` and records)."""
        return {"alphas": self.alphas, "betas": self.betas, "loss": self.loss, "acc": self.acc,
                "center_loss": self.center_loss, "center_acc": self.center_acc, "bn": self.bn,
                "seconds": self.seconds, "label": self.label, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Landscape":
        arr = lambda v: None if v is None else np.asarray(v)  # noqa: E731
        return cls(arr(d["alphas"]), arr(d["betas"]), np.asarray(d["loss"]), np.asarray(d["acc"]),
                   float(d["center_loss"]), float(d["center_acc"]), d["bn"], float(d["seconds"]),
                   d.get("label", ""), dict(d.get("meta") or {}))


def grid(radius: float = 1.0, n: int = 21) -> np.ndarray:
    """``n`` (odd) evenly spaced values in ``[-radius, radius]`` with 0 exactly in the middle."""
    if not isinstance(n, int) or n < 3 or n % 2 == 0:
        raise ValueError(f"n must be an odd integer >= 3 so the grid passes through the model, got {n!r}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    k = n // 2
    return radius * np.arange(-k, k + 1, dtype=np.float64) / k


def _weighted(batches) -> tuple[list, list[float]]:
    return weighted_batches(batches, "evaluate the loss over")


def _stats(out: torch.Tensor, y, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
    loss = loss_fn(out, y)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar tensor (the batch's mean loss), got {getattr(loss, 'shape', loss)}")
    if isinstance(y, torch.Tensor) and out.ndim == 2 and not y.is_floating_point():
        acc = (out.argmax(1) == y).double().mean()
    else:
        acc = torch.full((), float("nan"), dtype=torch.float64, device=out.device)
    return loss.double(), acc


def evaluate_points(model: nn.Module, batches: Sequence, coords: np.ndarray, directions: Sequence[Mapping],
                    loss_fn: Callable = F.cross_entropy, *, bn: str = "eval", chunk: int | None = None,
                    progress: bool = False, desc: str = "landscape") -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and accuracy over ``batches`` at ``theta + sum_j coords[i, j] * directions[j]``
    for every row ``i`` of ``coords`` (``(P, len(directions))``). Returns two ``(P,)`` arrays."""
    check_bn_mode(bn)
    batches, w = _weighted(batches)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != len(directions):
        raise ValueError(f"coords must have shape (points, {len(directions)}), got {coords.shape}")
    for j, d in enumerate(directions):
        check_direction(model, d, f"directions[{j}]")
    if not np.isfinite(coords).all():
        raise ValueError("coords must be finite")
    dev = next(model.parameters()).device
    if chunk is None:
        chunk = 16 if dev.type == "cuda" else 1
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer (points per vectorized evaluation), got {chunk!r}")
    from torch.func import functional_call, vmap
    from tqdm.auto import tqdm

    base = {n: p.detach() for n, p in model.named_parameters()}
    dirs = [{n: d[n].to(device=dev, dtype=base[n].dtype) for n in base} for d in directions]
    data = [(x.to(dev), y.to(dev) if isinstance(y, torch.Tensor) else y) for x, y in batches]
    P = len(coords)
    loss = np.zeros(P)
    acc = np.zeros(P)
    bar = tqdm(total=P, desc=desc, disable=not progress, leave=False)
    with analysis_mode(model, bn), torch.no_grad():
        for start in range(0, P, chunk):
            block = coords[start:start + chunk]
            if len(block) == 1:
                c = block[0]
                params = {}
                for n, t in base.items():
                    v = t
                    for cj, d in zip(c, dirs):
                        v = v + float(cj) * d[n]
                    params[n] = v
                for (x, y), wi in zip(data, w):
                    li, ai = _stats(functional_call(model, params, (x,), strict=False), y, loss_fn)
                    loss[start] += wi * float(li)
                    acc[start] += wi * float(ai)
            else:
                C = torch.as_tensor(block, dtype=torch.float64)
                stacked = {}
                for n, t in base.items():
                    v = t.expand(len(block), *t.shape)
                    for j, d in enumerate(dirs):
                        v = v + C[:, j].to(t).view(-1, *([1] * t.dim())) * d[n]
                    stacked[n] = v
                for (x, y), wi in zip(data, w):
                    out = vmap(lambda p: functional_call(model, p, (x,), strict=False))(stacked)
                    li, ai = vmap(lambda o: _stats(o, y, loss_fn))(out)
                    loss[start:start + len(block)] += wi * li.cpu().numpy()
                    acc[start:start + len(block)] += wi * ai.cpu().numpy()
            bar.update(len(block))
    bar.close()
    return loss, acc


def _center(model, batches, loss_fn, bn) -> tuple[float, float]:
    batches, w = _weighted(batches)
    dev = next(model.parameters()).device
    loss = acc = 0.0
    with analysis_mode(model, bn), torch.no_grad():
        for (x, y), wi in zip(batches, w):
            li, ai = _stats(model(x.to(dev)), y.to(dev) if isinstance(y, torch.Tensor) else y, loss_fn)
            loss += wi * float(li)
            acc += wi * float(ai)
    return loss, acc


def slice_1d(model: nn.Module, direction: Mapping, batches: Sequence, alphas: Sequence[float] | None = None, *,
             loss_fn: Callable = F.cross_entropy, bn: str = "eval", chunk: int | None = None,
             progress: bool = True, label: str = "") -> Landscape:
    """Loss and accuracy along ``theta + a * direction`` for ``a`` in ``alphas`` (default
    :func:`grid` ``(1, 21)``)."""
    alphas = grid(1.0, 21) if alphas is None else np.asarray(alphas, dtype=np.float64)
    check_direction(model, direction, "direction")
    t = time.perf_counter()
    loss, acc = evaluate_points(model, batches, alphas[:, None], [direction], loss_fn, bn=bn, chunk=chunk,
                                progress=progress, desc=label or "1-D slice")
    secs = time.perf_counter() - t
    c_loss, c_acc = _center(model, batches, loss_fn, bn)
    return Landscape(alphas, None, loss, acc, c_loss, c_acc, bn, secs, label)


def slice_2d(model: nn.Module, dx: Mapping, dy: Mapping, batches: Sequence, alphas: Sequence[float] | None = None,
             betas: Sequence[float] | None = None, *, loss_fn: Callable = F.cross_entropy, bn: str = "eval",
             chunk: int | None = None, progress: bool = True, label: str = "") -> Landscape:
    """Loss and accuracy over ``theta + a * dx + b * dy`` on the grid ``alphas x betas``
    (default :func:`grid` ``(1, 21)`` each)."""
    alphas = grid(1.0, 21) if alphas is None else np.asarray(alphas, dtype=np.float64)
    betas = alphas if betas is None else np.asarray(betas, dtype=np.float64)
    check_direction(model, dx, "dx")
    check_direction(model, dy, "dy")
    B, A = np.meshgrid(betas, alphas, indexing="ij")
    coords = np.stack([A.ravel(), B.ravel()], 1)
    t = time.perf_counter()
    loss, acc = evaluate_points(model, batches, coords, [dx, dy], loss_fn, bn=bn, chunk=chunk,
                                progress=progress, desc=label or "2-D slice")
    secs = time.perf_counter() - t
    c_loss, c_acc = _center(model, batches, loss_fn, bn)
    shape = (len(betas), len(alphas))
    return Landscape(alphas, betas, loss.reshape(shape), acc.reshape(shape), c_loss, c_acc, bn, secs, label)
