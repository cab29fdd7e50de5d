"""Heavy rain removal and detail restoration (issue 25, DPENet's notebook: paper 56).

DPENet (Wen, Gao, Zhang, Zhang & Chen, *From heavy rain removal to detail restoration: A faster and better
network*, Pattern Recognition 2024, arXiv:2205.03553) removes rain in a first stage and restores the texture the
removal smoothed away in a second. Whether a second stage helps *detail* is a question about where in the image
the quality is gained, so this module scores SSIM by region:

* :func:`ssim_map`: SSIM at every pixel ``[N, H, W]`` (the mean over channels of torchmetrics' full SSIM image,
  Gaussian window 11, std 1.5, reflected borders): its mean over the pixels is exactly ``wb.dense.ssim``, which
  returns only the per-image mean.
* :func:`edge_mask`: the edges and textures of an image: pixels whose gradient magnitude (central differences
  of the grey image, the mean of the channels) lies above the image's own ``quantile`` of magnitudes.
* :func:`region_ssim`: the SSIM map averaged over the edge/texture pixels of the *clean* image and over its flat
  pixels (gradient magnitude at or below another quantile), beside the whole image's SSIM.
* :func:`region_scores`: a model's restored test images scored by PSNR, SSIM, edge SSIM and flat SSIM.
* :func:`multiply_adds`: multiply-adds of one forward pass (a cost that a busy machine cannot change).
* :func:`seconds_per_image`: inference time per image of several models, measured in one process, interleaved
  and the fastest of ``repeats`` kept (compare them by their ratio, never by an absolute threshold).
"""
from __future__ import annotations

import time
from typing import Mapping

import torch
from torch import nn

from ..data.degrade import PairedImages
from .compare import restore
from .metrics import psnr

__all__ = ["ssim_map", "edge_mask", "region_ssim", "region_scores", "multiply_adds", "seconds_per_image"]


def _check_pair(restored: torch.Tensor, clean: torch.Tensor) -> None:
    if not (isinstance(restored, torch.Tensor) and isinstance(clean, torch.Tensor)):
        raise TypeError("restored and clean are float tensors [N, C, H, W] in [0, 1]")
    if restored.shape != clean.shape or restored.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W] of the same shape, got {tuple(restored.shape)} and "
                         f"{tuple(clean.shape)}")
    if min(clean.shape[-2:]) < 6:
        raise ValueError(f"SSIM's 11x11 window needs images of at least 6x6 pixels, got {tuple(clean.shape[-2:])}")


def ssim_map(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """SSIM at every pixel ``[N, H, W]`` (images ``[N, C, H, W]`` in [0, 1]; averaged over channels); its mean over
    ``H, W`` is ``wb.dense.ssim(restored, clean)``."""
    from torchmetrics.functional.image import structural_similarity_index_measure
    _check_pair(restored, clean)
    _, full = structural_similarity_index_measure(restored.float(), clean.float(), data_range=1.0,
                                                  reduction="none", return_full_image=True)
    return full.mean(1)                                                                   # [N, H, W]


def _grad_magnitude(images: torch.Tensor) -> torch.Tensor:
    grey = images.float().mean(1)                                                         # [N, H, W]
    gy, gx = torch.gradient(grey, dim=(1, 2))
    return torch.sqrt(gx ** 2 + gy ** 2)


def _check_quantile(q: float, name: str = "quantile") -> float:
    if not (isinstance(q, (int, float)) and 0 <= q < 1):
        raise ValueError(f"{name} is a share in [0, 1), e.g. 0.75 for the top quarter of gradients, got {q!r}")
    return float(q)


def edge_mask(images: torch.Tensor, quantile: float = 0.75) -> torch.Tensor:
    """Edges and textures of ``images`` ``[N, C, H, W]``: a bool mask ``[N, H, W]``, true where the gradient
    magnitude of the grey image (channel mean; ``torch.gradient``'s central differences, one-sided at the
    borders) is strictly above that image's ``quantile`` of its ``H * W`` magnitudes (``torch.quantile``,
    linear interpolation). ``quantile=0.75`` marks about the top quarter of pixels; a flat image has none."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a tensor [N, C, H, W], got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if min(images.shape[-2:]) < 2:
        raise ValueError(f"a gradient needs at least 2x2 pixels, got {tuple(images.shape[-2:])}")
    q = _check_quantile(quantile)
    mag = _grad_magnitude(images)
    level = torch.quantile(mag.flatten(1), q, dim=1)                                      # [N]
    return mag > level[:, None, None]


def region_ssim(restored: torch.Tensor, clean: torch.Tensor, edge_quantile: float = 0.75,
                flat_quantile: float = 0.25) -> dict[str, torch.Tensor]:
    """Per-image SSIM ``[N]`` over the whole image (``"all"``), over the edge/texture pixels of ``clean``
    (``"edges"``: gradient magnitude above its ``edge_quantile``) and over its flat pixels (``"flat"``: at or
    below its ``flat_quantile``). An image without such pixels (a uniform one has no edges) gets NaN there.

    With ``edge_quantile == flat_quantile`` the two regions split every image, and their pixel-weighted mean is
    the whole image's SSIM."""
    e, f = _check_quantile(edge_quantile, "edge_quantile"), _check_quantile(flat_quantile, "flat_quantile")
    if f > e:
        raise ValueError(f"flat_quantile ({f}) must not exceed edge_quantile ({e}): flat pixels are the low gradients")
    smap = ssim_map(restored, clean).double()                                             # [N, H, W]
    mag = _grad_magnitude(clean)
    levels = torch.quantile(mag.flatten(1), torch.tensor([f, e], dtype=mag.dtype), dim=1)  # [2, N]
    edges = mag > levels[1][:, None, None]
    flat = mag <= levels[0][:, None, None]

    def mean_over(mask: torch.Tensor) -> torch.Tensor:
        n = mask.sum((1, 2))
        s = (smap * mask).sum((1, 2))
        return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan"))).float()

    return {"all": smap.mean((1, 2)).float(), "edges": mean_over(edges), "flat": mean_over(flat)}


def region_scores(model: nn.Module | None, pairs: PairedImages, edge_quantile: float = 0.75,
                  flat_quantile: float = 0.25, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per-image ``psnr`` (dB), ``ssim``, ``ssim_edges`` and ``ssim_flat`` ``[N]`` of ``model``'s restored images
    (clamped to [0, 1], see ``wb.dense.restore``) against the clean ones; ``model=None`` scores the degraded
    images themselves."""
    if not isinstance(pairs, PairedImages):
        raise TypeError(f"region_scores needs wb.data.paired(...) pairs, got {type(pairs).__name__}")
    clean = pairs.clean.float().cpu() / 255
    out = pairs.degraded.float().cpu() / 255 if model is None else restore(model, pairs, batch_size)
    if out.shape != clean.shape:
        raise ValueError(f"restored {tuple(out.shape)} against clean {tuple(clean.shape)}: the shapes must match")
    r = region_ssim(out, clean, edge_quantile, flat_quantile)
    return {"psnr": psnr(out, clean), "ssim": r["all"], "ssim_edges": r["edges"], "ssim_flat": r["flat"]}


def multiply_adds(model: nn.Module, shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-adds of one forward pass on a zero input of ``shape`` (torch's FLOP counter halved)."""
    from torch.utils.flop_counter import FlopCounterMode
    if len(shape) != 4 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape is a batch shape (N, C, H, W), got {shape!r}")
    dev = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(*shape, device=dev))
    return counter.get_total_flops() // 2


@torch.no_grad()
def seconds_per_image(models: Mapping[str, nn.Module], images: torch.Tensor, repeats: int = 3,
                      batch_size: int = 100) -> dict[str, float]:
    """Inference seconds per image of each model on ``images`` (float ``[N, C, H, W]``, already normalized), in
    eval mode on its device. The models take turns within each repeat (a slow spell of a busy machine falls on
    all of them) and each keeps its fastest repeat; one untimed warm-up batch each first."""
    if not models:
        raise ValueError("models is a non-empty {name: model} mapping")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats is a positive integer, got {repeats!r}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError("images is a non-empty float tensor [N, C, H, W]")
    best = {k: float("inf") for k in models}
    modes = {k: m.training for k, m in models.items()}
    try:
        for k, m in models.items():
            m.eval()
            m(images[:batch_size].to(next(m.parameters()).device))                        # warm-up
        for _ in range(repeats):
            for k, m in models.items():
                dev = next(m.parameters()).device
                start = time.perf_counter()
                for i in range(0, len(images), batch_size):
                    m(images[i:i + batch_size].to(dev))
                best[k] = min(best[k], (time.perf_counter() - start) / len(images))
    finally:
        for k, m in models.items():
            m.train(modes[k])
    return best
