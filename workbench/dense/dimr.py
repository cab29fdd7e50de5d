"""Multi-resolution diffusion against a single-resolution patch transformer, at equal compute (DiMR).

Liu et al., *Alleviating Distortion in Image Generation via Multi-Resolution
Diffusion Models* (arXiv:2406.09416). A diffusion transformer cuts the noisy image into patches: large patches
are cheap but lose detail (distortion), small ones are dear. DiMR denoises coarse-to-fine: a first network on
large patches whose features condition the next one on finer patches, and **time-dependent layer
normalization** (TD-LN) replaces adaLN's per-block MLPs: the normalization's scale and shift are interpolated
between two learned vectors by a learned function of ``t``. ``wb.create_model("dit_tiny", multires=True)`` is
that idea in miniature (:mod:`workbench.models.restore`).

This module holds what the comparison needs around the model:

* :func:`pad_images` (Fashion-MNIST's 28 px to 32, a multiple of the patches), :func:`dit_macs` and
  :func:`width_for_macs` (equal multiply-adds per forward pass), :func:`train_diffusion` (the ``Denoising``
  task through ``wb.fit``, cached), :func:`generate` (DDIM samples as 8-bit images);
* the scores: :func:`max_probability` and :func:`distorted_fraction` (a sample is *distorted* when a classifier
  trained on the real images gives no class at least ``threshold`` of probability), :func:`patch_boundary_score`
  (how much larger the pixel steps across patch borders are than those inside patches: 1 for images that
  ignore the patch grid), :func:`feature_frechet` (Frechet distance in a classifier's features);
* the mechanism: :func:`denoising_loss_by_t` (the noise-prediction loss at fixed ``t``), :func:`ablate_coarse`
  (the multi-resolution model with its coarse pass cut off), :func:`tdln_weights` (TD-LN's interpolation
  weight ``w(t)`` per layer).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import Denoising, NoiseSchedule, ddim_sample

__all__ = ["pad_images", "dit_macs", "width_for_macs", "train_diffusion", "generate", "max_probability",
           "distorted_fraction", "patch_boundary_score", "feature_frechet", "denoising_loss_by_t",
           "ablate_coarse", "tdln_weights", "tdln_time_change"]


# ------------------------------------------------------------------------------------------ data and cost
def pad_images(dataset, size: int = 32, mean: float = 0.5, std: float = 0.5):
    """``dataset`` (a ``wb.data.ImageDataset``) with its images zero-padded to ``size x size`` (centred; an odd
    margin puts the extra row and column at the bottom and right) and normalization ``(x - mean) / std`` per
    channel (0.5, 0.5: pixels in [-1, 1], the usual range for diffusion). Labels and classes are kept."""
    from ..data import ImageDataset

    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"pad_images takes a wb.data.ImageDataset, got {type(dataset).__name__}")
    n, c, h, w = dataset.images.shape
    if size < max(h, w):
        raise ValueError(f"size {size} is smaller than the images ({h}x{w}): pad_images only pads")
    top, left = (size - h) // 2, (size - w) // 2
    images = F.pad(dataset.images, (left, size - w - left, top, size - h - top))
    return ImageDataset(images, dataset.labels, list(dataset.classes), dataset.name, dataset.split, (mean,) * c,
                        (std,) * c, f"{dataset.source}; zero-padded to {size}x{size}")


def dit_macs(model: nn.Module) -> int:
    """Multiply-adds of one forward pass ``model(x_t, t)`` of one image: ``wb.models.summary``'s count (torch's
    FLOP counter halved, attention's two products included; elementwise work is not counted)."""
    from ..models import summary

    if getattr(model, "img_size", None) is None or getattr(model, "in_chans", None) is None:
        raise ValueError("dit_macs needs a diffusion model with img_size and in_chans (wb.create_model('dit_tiny'))")
    return summary(model).macs


def width_for_macs(target: int, widths: Iterable[int] | None = None, **model_kwargs: Any) -> tuple[int, int]:
    """The width of ``dit_tiny(**model_kwargs)`` whose :func:`dit_macs` is closest to ``target``, and its
    multiply-adds. ``widths`` default: the even multiples of ``heads`` up to 512."""
    from ..models import create_model

    if not (isinstance(target, int) and target > 0):
        raise ValueError(f"target must be a positive number of multiply-adds, got {target!r}")
    if "width" in model_kwargs:
        raise ValueError("width_for_macs chooses the width itself: leave width= out of the model's arguments")
    heads = int(model_kwargs.get("heads", 4))
    step = heads if heads % 2 == 0 else 2 * heads
    widths = list(widths) if widths is not None else list(range(step, 513, step))
    if not widths:
        raise ValueError("widths is empty")
    best = None
    for w in widths:
        m = dit_macs(create_model("dit_tiny", width=w, **model_kwargs))
        if best is None or abs(m - target) < abs(best[1] - target):
            best = (w, m)
    return best


# ------------------------------------------------------------------------------------------ training, sampling
def train_diffusion(train, test=None, *, model_kwargs: dict | None = None, noise: NoiseSchedule | None = None,
                    seed: int = 0, batch_size: int = 64, cache: bool = True, **fit_kwargs: Any):
    """``wb.create_model("dit_tiny", **model_kwargs)`` from ``seed`` (``in_chans`` and ``img_size`` from the data,
    ``steps`` from the diffusion schedule ``noise``, default ``NoiseSchedule(1000)``; ``schedule=`` is fit's
    learning-rate schedule), trained by ``wb.fit`` with the
    :class:`~workbench.dense.Denoising` task on ``train`` (no augmentation), ``test`` evaluated each epoch.
    Cached on the model, the data's pixels, the schedule, the seed and every fit argument. Returns ``wb.fit``'s
    ``TrainResult`` (from the cache: the model rebuilt with its trained weights, and the history)."""
    from ..data import ImageDataset, Loader
    from ..models import create_model
    from ..train.cached import cached_fit, data_fingerprint

    if not isinstance(train, ImageDataset) or (test is not None and not isinstance(test, ImageDataset)):
        raise TypeError("train_diffusion trains on wb.data.ImageDataset images (train and test)")
    bad = [k for k in ("augment", "batch_size") if k in fit_kwargs]
    if bad:
        raise ValueError(f"train_diffusion sets {', '.join(bad)} itself")
    schedule = noise or NoiseSchedule(1000)
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"noise must be a wb.dense.NoiseSchedule, got {type(schedule).__name__}")
    c, h, w = train.shape
    if h != w:
        raise ValueError(f"dit_tiny takes square images, got {h}x{w}: pad them (wb.dense.pad_images)")
    model_kwargs = {"in_chans": c, "img_size": h, **dict(model_kwargs or {}), "steps": schedule.steps}

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return create_model("dit_tiny", **model_kwargs)

    def loaders():
        return (Loader(train, batch_size, seed=seed, augment=None),
                Loader(test, 500, shuffle=False) if test is not None else None)

    key = {"model_kwargs": model_kwargs, "batch_size": batch_size,
           "train": [train.name, len(train), data_fingerprint(train), list(train.mean), list(train.std)],
           "test": [test.name, len(test), data_fingerprint(test)] if test is not None else None}
    return cached_fit(build, loaders, task=Denoising(schedule), key=key, name="train_diffusion", seed=seed,
                      cache=cache, fit_kwargs=fit_kwargs)


def generate(model: nn.Module, schedule: NoiseSchedule, n: int, *, mean: Iterable[float], std: Iterable[float],
             steps: int = 50, seed: int = 0, batch_size: int = 250) -> torch.Tensor:
    """``n`` DDIM samples (``steps`` steps, ``eta = 0``) of ``model`` as uint8 images ``[n, C, H, W]``: the
    samples are in the normalized space of the training data, mapped back with its ``mean`` and ``std``, then
    rounded and clipped to 0..255. The starting noise is a pure function of ``seed``: two models sampled with
    one seed start from the same ``x_T``."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    c, s = model.in_chans, model.img_size
    mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    if mean.numel() != c or std.numel() != c:
        raise ValueError(f"mean and std need {c} values (one per channel), got {mean.numel()} and {std.numel()}")
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, c, s, s, generator=g)
    was = model.training
    model.eval()
    try:
        out = [ddim_sample(model, schedule, (len(x), c, s, s), steps=steps, device=dev, x_T=x).cpu()
               for x in x_T.split(batch_size)]
    finally:
        model.train(was)
    x = torch.cat(out) * std + mean
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------------------ scores
@torch.no_grad()
def max_probability(classifier: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's largest softmax probability ``[N]`` for each of the normalized images ``[N, C, H, W]``."""
    if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point()):
        raise ValueError("images must be normalized float images [N, C, H, W] (dataset.normalize(uint8 images))")
    was = classifier.training
    classifier.eval()
    try:
        dev = next(classifier.parameters()).device
        return torch.cat([classifier(images[i:i + batch_size].to(dev)).float().softmax(-1).amax(-1).cpu()
                          for i in range(0, len(images), batch_size)])
    finally:
        classifier.train(was)


def distorted_fraction(max_prob: torch.Tensor, threshold: float = 0.5) -> float:
    """The share of samples whose classifier confidence ``max_prob`` is below ``threshold``: images a classifier
    trained on the real data cannot place in any class (a garment with the wrong parts, a broken shape)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold is a probability in (0, 1], got {threshold}")
    if max_prob.ndim != 1 or not len(max_prob):
        raise ValueError(f"max_prob must be a non-empty vector [N], got shape {tuple(max_prob.shape)}")
    return float((max_prob < threshold).float().mean())


def patch_boundary_score(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Per image ``[N]``: the mean absolute step between neighbouring pixels across a patch border (a
    ``patch x patch`` grid from the top-left corner), over the mean step between neighbours inside a patch,
    horizontal and vertical steps pooled. 1 when the image ignores the grid; above 1 for blocky, patch-aligned
    artefacts. (A constant image, with no steps at all, scores 1.)"""
    if not (isinstance(images, torch.Tensor) and images.ndim == 4):
        raise ValueError(f"images must be [N, C, H, W], got {tuple(getattr(images, 'shape', ()))}")
    h, w = images.shape[-2:]
    if patch < 2 or h % patch or w % patch or h == patch and w == patch:
        raise ValueError(f"patch must be at least 2, divide the image ({h}x{w}) and leave two patches at least")
    x = images.float()
    dx, dy = (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()
    bx = (torch.arange(1, w) % patch == 0)  # step between column j-1 and j crosses a border when j % patch == 0
    by = (torch.arange(1, h) % patch == 0)
    border = dx[..., bx].flatten(1).sum(1) + dy[..., by, :].flatten(1).sum(1)
    inside = dx[..., ~bx].flatten(1).sum(1) + dy[..., ~by, :].flatten(1).sum(1)
    c = images.shape[1]
    n_border = c * (h * int(bx.sum()) + w * int(by.sum()))
    n_inside = c * (h * int((~bx).sum()) + w * int((~by).sum()))
    eps = 1e-12
    return ((border / n_border) + eps) / ((inside / n_inside) + eps)


def feature_frechet(classifier: nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between two sets of normalized images in a workbench classifier's penultimate features
    (``wb.dense.classifier_features``). Not FID: FID uses an Inception network trained on ImageNet."""
    from .metrics import classifier_features, frechet_distance

    return frechet_distance(classifier_features(classifier, a), classifier_features(classifier, b))


# ------------------------------------------------------------------------------------------ mechanism
@torch.no_grad()
def denoising_loss_by_t(model: Callable, images: torch.Tensor, schedule: NoiseSchedule, ts: Iterable[int],
                        seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """The noise-prediction loss ``mean ||noise - model(x_t, t)||^2`` at each fixed ``t`` in ``ts`` (one value per
    ``t``, ``[len(ts)]``), on the normalized images ``[N, C, H, W]`` with noise drawn from ``seed`` (the same noise
    for every ``t`` and every model)."""
    ts = [int(t) for t in ts]
    if not ts or min(ts) < 1 or max(ts) > schedule.steps:
        raise ValueError(f"ts must be timesteps in 1..{schedule.steps}, got {ts}")
    if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point()):
        raise ValueError("images must be normalized float images [N, C, H, W]")
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    was = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        dev = next(model.parameters()).device if isinstance(model, nn.Module) else images.device
        out = []
        for t in ts:
            total = 0.0
            for i in range(0, len(images), batch_size):
                x0, e = images[i:i + batch_size].to(dev), noise[i:i + batch_size].to(dev)
                tt = torch.full((len(x0),), t, dtype=torch.long, device=dev)
                total += float((model(schedule.q_sample(x0, tt, e), tt) - e).double().pow(2).sum())
            out.append(total / images.numel())
        return torch.tensor(out, dtype=torch.float64)
    finally:
        if isinstance(model, nn.Module) and was is not None:
            model.train(was)


@contextlib.contextmanager
def ablate_coarse(model: nn.Module):
    """Within the block, the multi-resolution model's coarse pass contributes nothing: its last coarse block's
    output is replaced by zeros, so the upsampled coarse tokens added to the fine ones are zero (the fine
    transformer runs alone, on its own patches)."""
    if not getattr(model, "multires", False) or not hasattr(model, "coarse"):
        raise ValueError("ablate_coarse needs a multi-resolution model: wb.create_model('dit_tiny', multires=True)")
    handle = model.coarse[-1].register_forward_hook(lambda mod, args, out: torch.zeros_like(out))
    try:
        yield model
    finally:
        handle.remove()


@torch.no_grad()
def tdln_weights(model: nn.Module, ts: Iterable[int]) -> tuple[list[str], torch.Tensor]:
    """TD-LN's interpolation weight ``w(t) = sigmoid(a t / T + b)`` of every time-dependent layer norm of
    ``model`` at each ``t``: the layers' names and a ``[layers, len(ts)]`` tensor. ``w = 1`` takes the first
    learned (scale, shift), ``w = 0`` the second; a weight that does not move with ``t`` is a plain layer norm."""
    ts = torch.tensor([float(t) for t in ts], dtype=torch.float64)
    names, rows = [], []
    for name, m in model.named_modules():
        if all(hasattr(m, k) for k in ("gamma", "beta", "a", "b", "steps")) and isinstance(m.a, nn.Parameter):
            names.append(name)
            rows.append(torch.sigmoid(float(m.a) * ts / m.steps + float(m.b)))
    if not rows:
        raise ValueError("the model has no time-dependent layer norm (TD-LN): use dit_tiny(multires=True)")
    return names, torch.stack(rows)


def tdln_time_change(model: nn.Module, t0: int, t1: int) -> tuple[list[str], torch.Tensor]:
    """How much every time-dependent layer norm of ``model`` changes between timesteps ``t0`` and ``t1``: per
    layer, the mean over features of ``|gamma(t1) - gamma(t0)| + |beta(t1) - beta(t0)|``, where
    ``gamma(t) = w(t) gamma_0 + (1 - w(t)) gamma_1`` (and ``beta`` alike), i.e.
    ``|w(t1) - w(t0)| * mean(|gamma_0 - gamma_1| + |beta_0 - beta_1|)``. Zero for a block that is blind to the
    timestep (its two vectors equal, as at initialization, or its weight flat in ``t``)."""
    names, w = tdln_weights(model, [t0, t1])
    mods = dict(model.named_modules())
    rows = []
    for name, (w0, w1) in zip(names, w.tolist()):
        m = mods[name]
        apart = ((m.gamma[0] - m.gamma[1]).abs() + (m.beta[0] - m.beta[1]).abs()).detach().double().mean()
        rows.append(abs(w1 - w0) * float(apart))
    return names, torch.tensor(rows, dtype=torch.float64)

