"""Image-quality metrics and the effective receptive field.

* :func:`psnr` and :func:`ssim`: per image, on images in [0, 1] (``data_range = 1``), from torchmetrics (a
  maintained implementation: SSIM with its Gaussian window of std 1.5, as Wang et al. 2004). The PSNR of an
  image with itself is infinite.
* :func:`effective_receptive_field`: the gradient of one output position (a channel's centre, summed over
  channels) with respect to the input, as an ``[H, W]`` map of magnitudes (Luo, Li, Urtasun & Zemel 2016,
  arXiv:1701.04128): where the output really looks, beside where it could (the theoretical field).
  :func:`erf_radius` reads a radius off the map: the smallest square around the centre holding a given share
  of the gradient's magnitude.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two sets of features,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. FID is this on Inception-v3 features; no Inception
  weights can be downloaded here, so the workbench computes it on the penultimate features of a classifier it
  trained itself (:func:`classifier_features`) and calls it what it is, a classifier-feature Fréchet distance,
  not FID.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["psnr", "ssim", "effective_receptive_field", "erf_radius", "frechet_distance", "classifier_features"]


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W] of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image ``[N]`` (images in [0, 1]): ``10 log10(1 / MSE)``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio
    _check(restored, clean)
    return peak_signal_noise_ratio(restored.float(), clean.float(), data_range=1.0, dim=(1, 2, 3),
                                   reduction="none")


def ssim(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image ``[N]`` (images in [0, 1], Gaussian window 11, std 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure
    _check(restored, clean)
    return structural_similarity_index_measure(restored.float(), clean.float(), data_range=1.0, reduction="none")


def effective_receptive_field(model: nn.Module | Callable, x: torch.Tensor,
                              position: tuple[int, int] | None = None) -> torch.Tensor:
    """``|d out[:, :, i, j].sum() / d x|`` summed over the batch and channels: an ``[H, W]`` map.

    Args:
        model: maps ``[N, C, H, W]`` to a dense output ``[N, K, h, w]``.
        x: inputs (e.g. a batch of real images, or noise as Luo et al. use); gradients flow to a copy.
        position: the output position ``(i, j)``; default its centre.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a batch [N, C, H, W], got {tuple(x.shape)}")
    was = getattr(model, "training", None)
    if was is not None:
        model.eval()
    try:
        inp = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(inp)
            if out.ndim != 4:
                raise ValueError(f"the model must return a dense map [N, K, h, w], got {tuple(out.shape)}")
            i, j = position if position is not None else (out.shape[2] // 2, out.shape[3] // 2)
            grad, = torch.autograd.grad(out[:, :, i, j].sum(), inp)
    finally:
        if was is not None:
            model.train(was)
    return grad.abs().sum((0, 1))


def erf_radius(erf: torch.Tensor, mass: float = 0.9, centre: tuple[int, int] | None = None) -> int:
    """The half-side ``r`` of the smallest square of side ``2 r + 1`` around ``centre`` (default the map's middle,
    where a same-size output's centre position reads) holding ``mass`` of the map's total (0: one pixel)."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass is a share in (0, 1], got {mass}")
    h, w = erf.shape
    total = float(erf.sum())
    if total == 0:
        raise ValueError("the map is zero everywhere: the output does not depend on the input")
    cy, cx = centre if centre is not None else (h // 2, w // 2)
    for r in range(max(h, w)):
        inside = erf[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1].sum()
        if float(inside) >= (mass - 1e-6) * total:  # float32 sums differ in their last digits
            return r
    return max(h, w)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a [N, D]`` and ``b [M, D]`` (float64)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D] with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each set needs at least 2 feature vectors for a covariance")
    a, b = a.double(), b.double()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    # tr((S1 S2)^(1/2)) from the eigenvalues of S1^(1/2) S2 S1^(1/2), symmetric and positive semi-definite
    w, v = torch.linalg.eigh(s1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    middle = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * middle)


@torch.no_grad()
def classifier_features(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Penultimate features ``[N, F]`` of a workbench classifier with ``forward_features`` (e.g. a trained
    ``resnet20``) for normalized images."""
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no forward_features: use a CIFAR ResNet of wb.models")
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        return torch.cat([model.forward_features(images[i:i + batch_size].to(dev)).cpu()
                          for i in range(0, len(images), batch_size)])
    finally:
        model.train(was)
