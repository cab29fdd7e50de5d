"""Comparing segmentation architectures at an equal budget (paper 12: Sinha et al., *Simple and Efficient
Architectures for Semantic Segmentation*, arXiv:2206.08236).

* :func:`segmentation_macs`: multiply-adds of one forward pass of one ``size x size`` image (torch's own
  FLOP counter, a multiply-add being two FLOPs; elementwise work, resizing and BatchNorm are not counted, as
  in the papers' figures).
* :func:`width_for_macs`: the ``width`` that brings a registry model closest to a target number of
  multiply-adds (to compare architectures at equal compute).
* :func:`train_segmenter`: ``wb.train_model`` for segmentation: a registry model built from a seed, trained by
  ``wb.fit`` with the :class:`~workbench.dense.Segmentation` task on :class:`~workbench.dense.SegLoader`
  batches, cached on everything that changes the result.
* :func:`throughput`: inference images per second of several models measured in the same process, the models
  taking turns in every repeat (so a busy machine slows them alike); one row per model and repeat.
* :func:`speed_ratio`: the per-repeat ratio of two models' throughputs, and its median and range.
* :func:`constant_miou`: the mean IoU of predicting one class everywhere (what a network that learned nothing
  but the majority class scores; the floor a trained one must beat).
* :func:`erf_of`: the effective receptive field (:func:`~workbench.dense.effective_receptive_field`) of a model
  at the centre of real images and its radius (:func:`~workbench.dense.erf_radius`).
"""
from __future__ import annotations

import time
from typing import Any, Iterable

import pandas as pd
import torch
from torch import nn

from ..cache import fingerprint
from ..models._registry import create_model
from .metrics import effective_receptive_field, erf_radius
from .tasks import SegLoader, Segmentation, SegmentationData

__all__ = ["segmentation_macs", "width_for_macs", "seg_fingerprint", "train_segmenter", "throughput",
           "speed_ratio", "erf_of", "constant_miou"]


def segmentation_macs(model: nn.Module, size: int = 64, in_chans: int | None = None) -> int:
    """Multiply-adds of ``model`` on one ``[1, C, size, size]`` input (``C`` the model's ``in_chans``, default 3)."""
    from torch.utils.flop_counter import FlopCounterMode

    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"size is the image side in pixels, a positive integer; got {size!r}")
    c = in_chans or getattr(model, "in_chans", 3)
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, c, size, size, device=dev))
    finally:
        model.train(was)
    return int(counter.get_total_flops()) // 2


def width_for_macs(name: str, target: int, size: int = 64, widths: Iterable[int] = range(2, 129),
                   **model_kwargs) -> tuple[int, int]:
    """The ``width`` (of ``widths``) whose ``create_model(name, width=..., **model_kwargs)`` spends the number of
    multiply-adds per ``size x size`` image closest to ``target`` (the smaller width on a tie); returns
    ``(width, macs)``.

    Example: ``width_for_macs("seg_hrnet", 40_000_000, 64)`` gives ``(8, 41779200)``.
    """
    if not (isinstance(target, int) and target >= 1):
        raise ValueError(f"target is a positive number of multiply-adds, got {target!r}")
    if "width" in model_kwargs:
        raise ValueError("width is what width_for_macs chooses: leave it out of the model's arguments")
    widths = sorted(set(int(w) for w in widths))
    if not widths or widths[0] < 1:
        raise ValueError(f"widths must be positive integers, got {widths[:5]}")
    best: tuple[int, int] | None = None
    for w in widths:
        n = segmentation_macs(create_model(name, width=w, **model_kwargs), size)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (w, n)
        if n > target:  # the cost grows with the width: nothing further can be closer
            break
    return best


def seg_fingerprint(data: SegmentationData) -> str:
    """A short hash of a segmentation set's pixels and masks (for cache keys)."""
    if not isinstance(data, SegmentationData):
        raise TypeError(f"seg_fingerprint needs a wb.dense.SegmentationData, got {type(data).__name__}")
    return fingerprint(data.images, data.masks)


def train_segmenter(name: str, train: SegmentationData, test: SegmentationData | None = None, *,
                    model_kwargs: dict | None = None, seed: int = 0, batch_size: int = 32, cache: bool = True,
                    **fit_kwargs: Any):
    """``create_model(name, num_classes=train.num_classes, **model_kwargs)`` from ``seed``, trained by ``wb.fit``
    with the :class:`~workbench.dense.Segmentation` task on ``train`` (``test`` evaluated each epoch); cached on
    the model, the data's pixels and masks, the seed and every fit argument. Returns ``wb.fit``'s
    ``TrainResult`` (from the cache: the model rebuilt with its trained weights, and the history)."""
    from ..train.cached import cached_fit

    if not isinstance(train, SegmentationData) or (test is not None and not isinstance(test, SegmentationData)):
        raise TypeError("train_segmenter trains on wb.dense.SegmentationData (e.g. SegmentationData.from_scenes) "
                        "for train and test")
    if test is not None and test.num_classes != train.num_classes:
        raise ValueError(f"train has {train.num_classes} classes, test {test.num_classes}")
    model_kwargs = {"num_classes": train.num_classes, **(model_kwargs or {})}

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return create_model(name, **model_kwargs)

    def loaders():
        return (SegLoader(train, batch_size, seed=seed),
                SegLoader(test, 250, shuffle=False) if test is not None else None)

    key = {"model": name, "model_kwargs": model_kwargs, "batch_size": batch_size,
           "train": [train.name, len(train), seg_fingerprint(train)],
           "test": [test.name, len(test), seg_fingerprint(test)] if test is not None else None}
    return cached_fit(build, loaders, task=Segmentation(train.num_classes), key=key, name="train_segmenter",
                      seed=seed, cache=cache, fit_kwargs=fit_kwargs)


@torch.no_grad()
def throughput(models: dict[str, nn.Module], size: int = 64, batch_size: int = 32, repeats: int = 5,
               batches: int = 3, warmup: int = 1, in_chans: int = 3) -> pd.DataFrame:
    """Inference images per second of every model of ``{label: model}`` on random ``[batch_size, in_chans, size,
    size]`` inputs, in eval mode, without gradients. In each of ``repeats`` rounds every model runs ``warmup``
    untimed batches then ``batches`` timed ones, the models taking turns (their order rotating each round), so
    a machine that slows down in the middle slows all of them. Returns one row per model and round: ``model``,
    ``repeat``, ``images_per_s``. Compare models by the ratio within a round (:func:`speed_ratio`), never by
    absolute numbers across runs."""
    if not models:
        raise ValueError("throughput needs at least one model: pass {label: model}")
    for k, v in dict(size=size, batch_size=batch_size, repeats=repeats, batches=batches).items():
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    labels = list(models)
    dev = next(models[labels[0]].parameters()).device
    x = torch.randn(batch_size, in_chans, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    states = {k: m.training for k, m in models.items()}
    rows = []
    try:
        for m in models.values():
            m.eval()
        for r in range(repeats):
            shift = r % len(labels)
            for label in labels[shift:] + labels[:shift]:
                m = models[label]
                for _ in range(warmup):
                    m(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                start = time.perf_counter()
                for _ in range(batches):
                    m(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                rows.append({"model": label, "repeat": r,
                             "images_per_s": batches * batch_size / (time.perf_counter() - start)})
    finally:
        for k, m in models.items():
            m.train(states[k])
    return pd.DataFrame(rows)


def speed_ratio(table: pd.DataFrame, fast: str, slow: str) -> dict[str, Any]:
    """``fast``'s throughput over ``slow``'s, per round of a :func:`throughput` table: ``{"ratios": [...],
    "median", "min", "max"}`` (a ratio above 1: ``fast`` processes more images per second)."""
    for label in (fast, slow):
        if label not in set(table["model"]):
            raise ValueError(f"{label!r} is not a model of the table: {sorted(set(table['model']))}")
    wide = table.pivot_table(index="repeat", columns="model", values="images_per_s")
    ratios = (wide[fast] / wide[slow]).tolist()
    s = pd.Series(ratios)
    return {"ratios": ratios, "median": float(s.median()), "min": float(s.min()), "max": float(s.max())}


def erf_of(model: nn.Module, data: SegmentationData, n: int = 32, mass: float = 0.9) -> tuple[torch.Tensor, int]:
    """The effective receptive field ``[H, W]`` of ``model``'s centre output (gradient magnitudes summed over the
    first ``n`` images of ``data``, normalized as the loaders do, and over the classes), normalized to sum to
    1, and the radius of the smallest centred square holding ``mass`` of it."""
    if not isinstance(data, SegmentationData):
        raise TypeError(f"erf_of needs a wb.dense.SegmentationData, got {type(data).__name__}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n is a positive number of images, got {n!r}")
    from ..data.dataset import to_float

    dev = next(model.parameters()).device
    x = to_float(data.images[:n].to(dev), data.mean, data.std)
    erf = effective_receptive_field(model, x).cpu()
    erf = erf / erf.sum()
    return erf, erf_radius(erf, mass)


def constant_miou(data: SegmentationData, label: int = 0) -> float:
    """The mean IoU (as :func:`~workbench.dense.mean_iou` computes it: over the classes present in the truth or
    the prediction) of predicting ``label`` at every pixel: the IoU of ``label`` is its share of the pixels, every
    other class present scores 0."""
    if not isinstance(data, SegmentationData):
        raise TypeError(f"constant_miou needs a wb.dense.SegmentationData, got {type(data).__name__}")
    if not (isinstance(label, int) and 0 <= label < data.num_classes):
        raise ValueError(f"label is a class in 0..{data.num_classes - 1}, got {label!r}")
    counts = torch.bincount(data.masks.flatten().cpu(), minlength=data.num_classes)
    present = (counts > 0).clone()
    present[label] = True
    return float(counts[label].item() / data.masks.numel()) / int(present.sum())
