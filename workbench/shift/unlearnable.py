"""Unlearnable training data: CUDA's class-wise random convolutions, and the controls it is measured against.

**CUDA** (Sadasivan, Soltanolkotabi and Feizi 2023, "CUDA: Convolution-based Unlearnable Datasets",
arXiv:2303.04278) blurs every training image of class ``y`` with a filter ``H_y`` drawn from a private
key, ``x' = H_y * x``: a network then learns the filter-label shortcut instead of the image content,
and a model trained on the CUDA set scores near chance on clean test images. Each filter is ``k x k``
per channel with entries drawn uniformly from ``[0, p_b]`` ("blur parameter"), except one entry at a
random position set to 1, so ``p_b = 0`` is a random one-pixel shift and larger ``p_b`` a stronger
blur; the filtered image is rescaled so that its brightest value is the top of the range. We follow
the authors' reference code (github.com/vinusankars/Convolution-based-Unlearnability) for these
details, including its CIFAR-10 defaults ``k = 3``, ``p_b = 0.3`` and one filter shared by the three
colour channels (``share_channels=True``); the paper reports, for a ResNet-18 on ImageNet-100, 8.96%
clean test accuracy after training on CUDA data against 80.66% after clean training (abstract).

**Controls**: :func:`equal_energy_noise` adds random noise (one pattern per image, or one per class) with
exactly the per-image L2 energy of a given perturbation, to ask whether the perturbation's size alone
explains the effect; :func:`error_minimizing_noise` makes the additive unlearnable examples of Huang et al.
2021 ("Unlearnable Examples: Making Personal Data Unexploitable", arXiv:2101.04898):
``min_theta min_{||delta||_inf <= eps} L(f_theta(x + delta), y)``, solved by alternating a few model
steps (``wb.fit``) with PGD steps that *lower* the loss; the authors' code (github.com/HanxunH/
Unlearnable-Examples) uses ``eps = 8/255``, 10 model steps per round, 20 PGD steps of ``0.8/255`` for
sample-wise noise, and stops at 1% training error on the perturbed set (10% for class-wise noise).
:func:`perturbation_size` reports L2, L_inf and PSNR in pixel units.

>>> train = wb.data.load("cifar10", "train")                                    # doctest: +SKIP
>>> filters = cuda_filters(10, channels=3, size=3, blur=0.3, seed=0)           # the private key
>>> poisoned = make_unlearnable(train, filters)                                 # doctest: +SKIP
>>> control = equal_energy_noise(train, like=poisoned, seed=0)                  # doctest: +SKIP
>>> perturbation_size(train, poisoned)                                          # doctest: +SKIP
{'l2': ..., 'linf': ..., 'linf_max': ..., 'psnr': ..., 'n': 50000}
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset

__all__ = ["cuda_filters", "apply_filters", "make_unlearnable", "perturbation_size", "equal_energy_noise",
           "noise_like", "error_minimizing_noise"]

NORMALIZE = ("max", "sum", "none")
NOISE_MODES = ("classwise", "samplewise")
_CHUNK = 4096


def cuda_filters(num_classes: int, channels: int = 3, size: int = 3, blur: float = 0.3, seed: int = 0,
                 share_channels: bool = True) -> torch.Tensor:
    """The private key of CUDA: one ``size x size`` filter per class and channel.

    Entries are uniform in ``[0, blur]``, one entry per filter at a random position is 1.

    Args:
        num_classes, channels: the dataset's.
        size: filter side ``k`` (3 for CIFAR-10 in the paper).
        blur: the blur parameter ``p_b`` (0.3 for CIFAR-10); 0 gives one-hot filters (a shift).
        seed: the key: equal seeds give equal filters.
        share_channels: one filter for all channels of a class (the reference code), else one per channel.

    Returns:
        float32 ``[num_classes, channels, size, size]``.
    """
    for name, v in (("num_classes", num_classes), ("channels", channels), ("size", size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not blur >= 0:
        raise ValueError(f"blur (the blur parameter p_b) must be >= 0, got {blur}")
    g = torch.Generator().manual_seed(int(seed))
    c = 1 if share_channels else channels
    w = torch.rand(num_classes, c, size * size, generator=g) * blur
    peak = torch.randint(size * size, (num_classes, c, 1), generator=g)
    w.scatter_(2, peak, 1.0)
    return w.view(num_classes, c, size, size).expand(num_classes, channels, size, size).contiguous()


def _check_filters(images: torch.Tensor, filters: torch.Tensor, num_classes: int) -> None:
    if not isinstance(filters, torch.Tensor) or filters.ndim != 4:
        raise ValueError(f"filters must be a tensor [classes, channels, k, k] (see cuda_filters), got "
                         f"{tuple(filters.shape) if isinstance(filters, torch.Tensor) else type(filters).__name__}")
    k, kw = filters.shape[-2:]
    h, w = images.shape[-2:]
    if k > h or kw > w:
        raise ValueError(f"the filters are {k}x{kw} but the images only {h}x{w}: a filter may not be larger "
                         f"than the image; use size <= {min(h, w)}")
    if filters.shape[1] != images.shape[1]:
        raise ValueError(f"the filters have {filters.shape[1]} channels but the images {images.shape[1]}; "
                         f"make them with cuda_filters(..., channels={images.shape[1]})")
    if filters.shape[0] < num_classes:
        raise ValueError(f"{filters.shape[0]} filters for {num_classes} classes: make one per class "
                         f"(cuda_filters({num_classes}, ...))")


def apply_filters(images: torch.Tensor, labels: torch.Tensor, filters: torch.Tensor,
                  normalize: str = "max") -> torch.Tensor:
    """Convolve each uint8 image ``[N, C, H, W]`` with its class's filter, channel by channel.

    Zero padding keeps the size. ``normalize``: ``"max"`` rescales each filtered image so that its
    maximum is 255 (the reference code), ``"sum"`` divides each filter by its sum (keeps the mean
    brightness), ``"none"`` leaves the values; then round and clamp to 0..255.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"unknown normalize {normalize!r}; choose one of {', '.join(NORMALIZE)}")
    _check_filters(images, filters, int(labels.max()) + 1 if len(labels) else 0)
    out = torch.empty_like(images)
    w_all = filters.to(images.device, torch.float32)
    c, (kh, kw) = images.shape[1], filters.shape[-2:]
    pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)           # zero padding that keeps the size
    for y in labels.unique().tolist():
        idx = (labels == y).nonzero().flatten()
        w = w_all[y]
        if normalize == "sum":
            w = w / w.sum((1, 2), keepdim=True).clamp_min(1e-12)
        for part in idx.split(_CHUNK):
            x = F.conv2d(F.pad(images[part].float(), pad), w[:, None], groups=c)
            if normalize == "max":
                x = x * (255 / x.amax((1, 2, 3), keepdim=True).clamp_min(1e-12))
            out[part] = x.round().clamp(0, 255).to(torch.uint8)
    return out


def make_unlearnable(dataset: ImageDataset, filters: torch.Tensor, fraction: float = 1.0, seed: int = 0,
                     normalize: str = "max") -> ImageDataset:
    """The CUDA copy of a training set: each image filtered with its class's filter.

    Args:
        dataset: uint8 images and labels (on any device; the work happens there).
        filters: :func:`cuda_filters` output ``[classes, channels, k, k]``.
        fraction: the share of images poisoned (a random subset chosen by ``seed``; the rest stay clean).
        normalize: see :func:`apply_filters`.

    Returns:
        A new :class:`ImageDataset` named ``"<name>_cuda"``, same labels, classes and statistics.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    _check_filters(dataset.images, filters, dataset.num_classes)
    images = dataset.images.clone()
    n = len(dataset)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:round(fraction * n)]
    chosen = chosen.sort().values.to(images.device)
    if len(chosen):
        images[chosen] = apply_filters(dataset.images[chosen], dataset.labels[chosen], filters, normalize)
    k = filters.shape[-1]
    return ImageDataset(images, dataset.labels.clone(), list(dataset.classes), f"{dataset.name}_cuda", dataset.split,
                        dataset.mean, dataset.std,
                        f"{dataset.source}; CUDA {k}x{k} class-wise filters on {fraction:.0%} (arXiv:2303.04278)")


def _pixels(data: ImageDataset | torch.Tensor) -> torch.Tensor:
    return data.images if isinstance(data, ImageDataset) else data


def perturbation_size(clean: ImageDataset | torch.Tensor, poisoned: ImageDataset | torch.Tensor) -> dict[str, float]:
    """How far ``poisoned`` is from ``clean``, in pixel units (0..255).

    Returns:
        ``l2``: mean over images of ``||poisoned - clean||_2`` (over all C*H*W values); ``linf``: mean
        over images of the largest absolute change; ``linf_max``: the largest over all; ``psnr``:
        ``10 log10(255^2 / MSE)`` with the MSE over every value of every image (dB; inf when equal); ``n``.
    """
    a, b = _pixels(clean), _pixels(poisoned)
    if a.shape != b.shape:
        raise ValueError(f"clean and poisoned images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    l2, linf, sq = [], [], 0.0
    for s in range(0, len(a), _CHUNK):
        d = b[s:s + _CHUNK].double() - a[s:s + _CHUNK].double()
        l2.append(d.flatten(1).norm(dim=1))
        linf.append(d.flatten(1).abs().amax(dim=1))
        sq += float((d ** 2).sum())
    l2, linf = torch.cat(l2), torch.cat(linf)
    mse = sq / a.numel()
    return {"l2": float(l2.mean()), "linf": float(linf.mean()), "linf_max": float(linf.max()),
            "psnr": math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse), "n": len(a)}


def noise_like(images: torch.Tensor, labels: torch.Tensor, energy: torch.Tensor, mode: str = "samplewise",
               seed: int = 0, num_classes: int | None = None) -> torch.Tensor:
    """Random perturbations with a given L2 energy per image, after clipping to the pixel range.

    Each image gets ``p = clip(x + s d, 0, 255) - x`` for a Gaussian direction ``d`` of unit norm (one
    per class for ``"classwise"``, one per image for ``"samplewise"``) and the scale ``s >= 0`` with
    ``||p|| = energy[i]``, solved exactly: pixel ``j`` saturates at ``t_j = cap_j / |d_j|``, so
    ``||p(s)||^2 = sum_{t_j <= s} cap_j^2 + s^2 sum_{t_j > s} d_j^2`` is piecewise quadratic between
    the sorted ``t_j``. Where clipping makes ``energy[i]`` unreachable, the image gets the largest
    reachable perturbation.

    Returns:
        float64 ``[N, C, H, W]`` perturbations in pixel units.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(NOISE_MODES)}")
    energy = torch.as_tensor(energy, dtype=torch.float64).cpu()
    if energy.shape != (len(images),) or bool((energy < 0).any()):
        raise ValueError(f"energy must hold one non-negative value per image ({len(images)}), got shape "
                         f"{tuple(energy.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    k = (int(labels.max()) + 1 if len(labels) else 0) if num_classes is None else num_classes
    patterns = torch.randn(k, *images.shape[1:], generator=g, dtype=torch.float64) if mode == "classwise" else None
    out = torch.empty(images.shape, dtype=torch.float64)
    for s in range(0, len(images), 1024):
        x = images[s:s + 1024].cpu().double().flatten(1)                                  # [n, D]
        d = (patterns[labels[s:s + 1024].cpu()].flatten(1) if patterns is not None
             else torch.randn(x.shape, generator=g, dtype=torch.float64))
        d = d / d.norm(dim=1, keepdim=True)
        cap = torch.where(d > 0, 255 - x, torch.where(d < 0, x, 0.0))                    # room before clipping
        t, order = torch.where(d != 0, cap / d.abs(), torch.full_like(x, math.inf)).sort(dim=1)
        cap2, d2 = cap.gather(1, order) ** 2, d.gather(1, order) ** 2
        before = cap2.cumsum(1) - cap2                                                    # saturated below t_i
        after = d2.flip(1).cumsum(1).flip(1)                                              # still linear at t_i
        at_t = before + cap2 + torch.where(torch.isinf(t), 0.0, t ** 2 * (after - d2))    # ||p(t_i)||^2
        e2 = energy[s:s + 1024, None] ** 2
        i = torch.searchsorted(at_t.contiguous(), e2).clamp_max(x.shape[1] - 1)           # first t_i reaching e
        scale = ((e2 - before.gather(1, i)).clamp_min(0) / after.gather(1, i).clamp_min(1e-300)).sqrt()
        top = t.masked_fill(torch.isinf(t), 0).amax(1, keepdim=True)
        scale = torch.where(at_t[:, -1:] < e2, top, scale)                                # unreachable: saturate
        out[s:s + 1024] = ((x + scale * d).clamp(0, 255) - x).view(-1, *images.shape[1:])
    return out


def equal_energy_noise(dataset: ImageDataset, like: ImageDataset, seed: int = 0,
                       mode: str = "samplewise") -> ImageDataset:
    """Random-noise control with the same per-image L2 perturbation energy as ``like`` (a poisoned copy
    of ``dataset``, such as :func:`make_unlearnable`'s), within rounding to uint8 (at most
    ``0.5 sqrt(C H W)`` per image).

    ``mode``: ``"samplewise"`` (fresh noise per image: the control for "is it only the perturbation's
    size") or ``"classwise"`` (one fixed pattern per class, scaled per image). Mind the scale: CUDA's
    blur moves every edge, so its L2 energy is large (PSNR about 19 dB on CIFAR-10 with the defaults);
    Gaussian noise of that energy is strong noise, and a class-wise pattern of it is itself a label
    shortcut (a model fits it perfectly and fails on clean images). Returns an :class:`ImageDataset`
    named ``"<name>_noise_<mode>"``.
    """
    if like.images.shape != dataset.images.shape:
        raise ValueError(f"like has images {tuple(like.images.shape)} but dataset {tuple(dataset.images.shape)}: "
                         "pass the poisoned copy of this very dataset")
    if not torch.equal(like.labels.cpu(), dataset.labels.cpu()):
        raise ValueError("like has other labels than dataset: pass the poisoned copy of this very dataset")
    energy = torch.cat([(like.images[s:s + _CHUNK].double() - dataset.images[s:s + _CHUNK].double())
                        .flatten(1).norm(dim=1).cpu() for s in range(0, len(dataset), _CHUNK)])
    delta = noise_like(dataset.images, dataset.labels, energy, mode, seed, dataset.num_classes)
    images = (dataset.images.cpu().double() + delta).round().clamp(0, 255).to(torch.uint8).to(dataset.images.device)
    return ImageDataset(images, dataset.labels.clone(), list(dataset.classes), f"{dataset.name}_noise_{mode}",
                        dataset.split, dataset.mean, dataset.std,
                        f"{dataset.source}; {mode} random noise of equal L2 energy to {like.name}")


def _normalizer(dataset: ImageDataset, device: torch.device):
    m = torch.tensor(dataset.mean, device=device).view(1, -1, 1, 1) * 255
    s = torch.tensor(dataset.std, device=device).view(1, -1, 1, 1) * 255
    return lambda x: (x - m) / s


def _bounded(clean: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """uint8 ``clean + delta``, rounded, clamped to 0..255 and to ``[clean - eps, clean + eps]``."""
    x = clean.float()
    lo, hi = (x - eps).ceil().clamp_min(0), (x + eps).floor().clamp_max(255)
    return torch.minimum(torch.maximum((x + delta).round(), lo), hi).to(torch.uint8)


def error_minimizing_noise(dataset: ImageDataset, model: nn.Module | None = None, *, epsilon: float = 8.0,
                           mode: str = "samplewise", rounds: int = 10, model_steps: int = 10, pgd_steps: int = 20,
                           step_size: float | None = None, stop_acc: float = 0.99, batch_size: int = 128,
                           lr: float = 0.1, seed: int = 0, device: torch.device | str | None = None) -> ImageDataset:
    """Error-minimizing (unlearnable-examples) noise of Huang et al. 2021 (arXiv:2101.04898), small scale.

    Each round: ``model_steps`` SGD steps of ``model`` on the currently perturbed images (``wb.fit``, no
    augmentation), then ``pgd_steps`` signed-gradient steps of ``step_size`` (default ``epsilon / 10``)
    over the whole set that *lower* the model's loss, projected onto ``||delta||_inf <= epsilon``. Stops
    after ``rounds`` rounds or once ``stop_acc`` of the perturbed images are classified correctly.
    Budget: ``rounds * (model_steps * batch_size + pgd_steps * N)`` forward-backward passes.

    Args:
        dataset: the clean training set (uint8).
        model: the surrogate, trained in place (default: a fresh ``resnet8`` for the dataset's shape).
        epsilon: the L_inf bound in pixel units (8 is the paper's 8/255).
        mode: ``"samplewise"`` (one delta per image) or ``"classwise"`` (one per class; the PGD step uses
            the gradient summed over the class's images).
        seed: data order of the model steps.

    Returns:
        :class:`ImageDataset` ``"<name>_em_<mode>"`` with ``|poisoned - clean| <= epsilon`` everywhere.
    """
    from .. import config
    from ..train import fit

    if mode not in NOISE_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(NOISE_MODES)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon (pixel units, 8 = 8/255) must be positive, got {epsilon}")
    for name, v in (("rounds", rounds), ("model_steps", model_steps), ("pgd_steps", pgd_steps)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    dev = torch.device(device) if device is not None else config.device()
    if model is None:
        from ..models import create_model
        model = create_model("resnet8", num_classes=dataset.num_classes, in_chans=dataset.images.shape[1])
    model.to(dev)
    alpha = epsilon / 10 if step_size is None else step_size
    clean, labels = dataset.images.to(dev), dataset.labels.to(dev)
    n = len(dataset)
    delta = torch.zeros((dataset.num_classes, *clean.shape[1:]) if mode == "classwise" else clean.shape, device=dev)
    full = (lambda idx: delta[labels[idx]]) if mode == "classwise" else (lambda idx: delta[idx])
    norm = _normalizer(dataset, dev)

    def poisoned() -> ImageDataset:
        imgs = torch.cat([_bounded(clean[i], full(i), epsilon) for i in torch.arange(n, device=dev).split(_CHUNK)])
        return ImageDataset(imgs, labels, list(dataset.classes), f"{dataset.name}_em_{mode}", dataset.split,
                            dataset.mean, dataset.std,
                            f"{dataset.source}; {mode} error-minimizing noise, eps {epsilon}/255 (arXiv:2101.04898)")

    for r in range(rounds):
        fit(model, poisoned(), epochs=1, max_steps=model_steps, batch_size=batch_size, lr=lr, schedule="constant",
            augment=None, progress=False, seed=seed + r, device=dev)
        model.eval()
        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            for _ in range(pgd_steps):
                grad = torch.zeros_like(delta) if mode == "classwise" else None
                correct = 0
                for idx in torch.arange(n, device=dev).split(batch_size):
                    d = full(idx).clone().requires_grad_(True)
                    x = (clean[idx].float() + d).clamp(0, 255)
                    logits = model(norm(x))
                    F.cross_entropy(logits, labels[idx], reduction="sum").backward()
                    correct += int((logits.argmax(1) == labels[idx]).sum())
                    if mode == "classwise":
                        grad.index_add_(0, labels[idx], d.grad)
                    else:
                        delta[idx] = _project(clean[idx], delta[idx] - alpha * d.grad.sign(), epsilon)
                if mode == "classwise":
                    delta = (delta - alpha * grad.sign()).clamp(-epsilon, epsilon)
        finally:
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)
            model.train()
        if correct / n >= stop_acc:   # the accuracy under the last step's noise
            break
    return poisoned()


def _project(clean: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    x = clean.float()
    return ((x + delta.clamp(-eps, eps)).clamp(0, 255) - x).detach()
