"""Comparing restoration networks at an equal budget (issue 25, MIRNet's notebook).

* the single-resolution control for MIRNet's multi-scale block is the registered model ``residual_denoiser``
  (:mod:`workbench.models.restore`): a plain residual network in the DnCNN spirit (Zhang et al., *Beyond a
  Gaussian Denoiser*, arXiv:1608.03981: residual learning, the network predicts the correction to the noisy
  image), residual blocks at full resolution throughout, without batch normalization. The workbench's
  ``srresnet`` upsamples by 2 or 4 and cannot restore at scale 1.
* :func:`width_for_parameters`: the width that gives a registry model a target parameter count (to compare
  architectures at equal parameters).
* :func:`mixed_pairs`: ``(noisy, clean)`` pairs whose images are spread over several noise levels (a blind
  denoiser's training set); image ``i`` gets ``severities[i % k]`` and exactly the noise
  ``wb.data.paired(data, kind, severities[i % k])`` gives it.
* :func:`restore`, :func:`restoration_scores`: a model's restored images in [0, 1] (clamped, as they would be
  saved) and their per-image PSNR and SSIM against the clean ones.
* :func:`skff_weights`: what MIRNet's selective kernel feature fusion chooses: for every SKFF module, the
  softmax weights across its streams, averaged over images and channels (for MIRNet's streams: full, half
  and quarter resolution).
* :func:`train_restorer`: ``wb.train_model`` for restoration: build a registry model from a seed, train it
  with ``wb.fit`` and the :class:`~workbench.dense.Restoration` task on pairs, cached on everything that
  changes the result.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..cache import fingerprint
from ..data.dataset import ImageDataset, to_float
from ..data.degrade import PairedImages, PairLoader, paired
from ..models._registry import create_model
from .metrics import psnr, ssim

__all__ = ["width_for_parameters", "mixed_pairs", "restore",
           "restoration_scores", "skff_weights", "pairs_fingerprint", "train_restorer"]


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def width_for_parameters(name: str, target: int, widths: Iterable[int] = range(2, 257), **model_kwargs
                         ) -> tuple[int, int]:
    """The ``width`` (of ``widths``) whose ``create_model(name, width=..., **model_kwargs)`` has the parameter
    count closest to ``target`` (the smaller width on a tie); returns ``(width, count)``.

    >>> width_for_parameters("residual_denoiser", 3 * 8 * 9 + 8 + 8 * 3 * 9 + 3, blocks=0)
    (8, 443)
    """
    if not (isinstance(target, int) and target >= 1):
        raise ValueError(f"target is a positive number of parameters, got {target!r}")
    if "width" in model_kwargs:
        raise ValueError("width is what width_for_parameters chooses: leave it out of the model's arguments")
    widths = sorted(set(int(w) for w in widths))
    if not widths or widths[0] < 1:
        raise ValueError(f"widths must be positive integers, got {widths[:5]}")
    best: tuple[int, int] | None = None
    for w in widths:
        n = _count(create_model(name, width=w, **model_kwargs))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (w, n)
        if n > target:  # counts grow with the width: nothing further can be closer
            break
    return best


def mixed_pairs(data: ImageDataset, severities: Sequence[int], kind: str = "gaussian", seed: int = 0,
                size: int | None = None) -> PairedImages:
    """Pairs of ``data``'s images, image ``i`` degraded at ``severities[i % len(severities)]`` with the very
    pixels ``wb.data.paired(data, kind, that severity, seed, size)`` gives it (a blind model's training set)."""
    severities = list(severities)
    if not severities:
        raise ValueError("severities is a non-empty list of levels (1..5), e.g. [2, 3, 5] for sigma 15, 25, 50")
    levels = {s: paired(data, kind, s, seed, size) for s in dict.fromkeys(severities)}
    first = next(iter(levels.values()))
    pick = torch.tensor([severities[i % len(severities)] for i in range(len(data))], device=first.degraded.device)
    degraded = first.degraded.clone()
    for s, p in levels.items():
        rows = pick == s
        degraded[rows] = p.degraded[rows]
    names = "+".join(str(s) for s in severities)
    note = first.source.rsplit(";", 1)[0]
    return PairedImages(degraded, first.clean, f"{data.name}/{kind}-{names}", data.split, data.mean, data.std,
                        f"{note}; {kind} at severities {names} in turn (seed {seed})")


@torch.no_grad()
def restore(model: nn.Module, pairs: PairedImages, batch_size: int = 250, device: torch.device | str | None = None
            ) -> torch.Tensor:
    """The model's outputs for ``pairs.degraded`` as float images in [0, 1] ``[N, C, H, W]`` (on the CPU),
    clamped as a saved image would be. ``device`` defaults to the model's."""
    if not isinstance(pairs, PairedImages):
        raise TypeError(f"restore needs wb.data.paired(...) pairs, got {type(pairs).__name__}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    mean = torch.tensor(pairs.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(pairs.std, device=dev).view(1, -1, 1, 1)
    was = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, len(pairs), batch_size):
            x = to_float(pairs.degraded[i:i + batch_size].to(dev), pairs.mean, pairs.std)
            outs.append((model(x).float() * std + mean).clamp(0, 1).cpu())
    finally:
        model.train(was)
    return torch.cat(outs)


def restoration_scores(model: nn.Module | None, pairs: PairedImages, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per-image ``psnr`` (dB) and ``ssim`` ``[N]`` of the restored images against the clean ones;
    ``model=None`` scores the degraded images themselves (the input's quality)."""
    clean = pairs.clean.float().cpu() / 255
    out = pairs.degraded.float().cpu() / 255 if model is None else restore(model, pairs, batch_size)
    if out.shape != clean.shape:
        raise ValueError(f"restored {tuple(out.shape)} against clean {tuple(clean.shape)}: the shapes must match")
    return {"psnr": psnr(out, clean), "ssim": ssim(out, clean)}


@torch.no_grad()
def skff_weights(model: nn.Module, pairs: PairedImages, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """``{SKFF module name: weights [n]}``: the selection weights each SKFF module of ``model`` gives its ``n``
    streams (softmax across the streams, as its forward computes them), averaged over channels and over every
    degraded image of ``pairs``; each vector sums to 1."""
    from ..models.restore import SKFF

    fusions = {name: m for name, m in model.named_modules() if isinstance(m, SKFF)}
    if not fusions:
        raise ValueError(f"{type(model).__name__} has no SKFF module (selective kernel feature fusion): use a "
                         "mirnet_tiny")
    sums: dict[str, torch.Tensor] = {}
    count = {"n": 0}

    def hook(name):
        def fn(module, inputs, output):
            streams = inputs[0]
            z = module.squeeze(torch.nn.functional.adaptive_avg_pool2d(sum(streams), 1))   # [B, C/r, 1, 1]
            w = torch.softmax(torch.stack([s(z) for s in module.select], 0), 0)           # [n, B, C, 1, 1]
            sums[name] = sums.get(name, 0) + w.double().mean((2, 3, 4)).sum(1).cpu()       # [n]
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in fusions.items()]
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        for i in range(0, len(pairs), batch_size):
            x = to_float(pairs.degraded[i:i + batch_size].to(dev), pairs.mean, pairs.std)
            model(x)
            count["n"] += len(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {name: (v / count["n"]).float() for name, v in sums.items()}


def pairs_fingerprint(pairs: PairedImages) -> str:
    """A short hash of the pairs' pixels (for cache keys)."""
    return fingerprint(pairs.degraded, pairs.clean)


def train_restorer(name: str, train: PairedImages, test: PairedImages | None = None, *,
                   model_kwargs: dict | None = None, seed: int = 0, loss: str = "l1", batch_size: int = 32,
                   cache: bool = True, **fit_kwargs: Any):
    """``create_model(name, **model_kwargs)`` from ``seed``, trained by ``wb.fit`` on ``train`` pairs with the
    ``Restoration(loss)`` task (``test`` evaluated each epoch); cached on the model, the pairs' pixels, the seed
    and every fit argument. Returns ``wb.fit``'s ``TrainResult`` (from the cache: the model rebuilt with its
    trained weights, and the history)."""
    from ..train.cached import cached_fit
    from .tasks import Restoration

    if not isinstance(train, PairedImages) or (test is not None and not isinstance(test, PairedImages)):
        raise TypeError("train_restorer trains on wb.data.paired(...) pairs (PairedImages) for train and test")
    model_kwargs = dict(model_kwargs or {})

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return create_model(name, **model_kwargs)

    def loaders():
        return (PairLoader(train, batch_size, seed=seed),
                PairLoader(test, 250, shuffle=False) if test is not None else None)

    key = {"model": name, "model_kwargs": model_kwargs, "batch_size": batch_size,
           "train": [train.name, len(train), pairs_fingerprint(train)],
           "test": [test.name, len(test), pairs_fingerprint(test)] if test is not None else None}
    return cached_fit(build, loaders, task=Restoration(loss), key=key, name="train_restorer", seed=seed, cache=cache,
                      fit_kwargs=fit_kwargs)
