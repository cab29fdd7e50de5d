"""Random views of a whole batch at once, on the device where the batch lives.

Self-supervised objectives compare two views of every image. ``make_views`` makes one view of a
batch of *normalized* float images (what :class:`~workbench.data.Loader` serves) as a pure function
of a seed, so a run resumed mid-epoch sees exactly the views an uninterrupted run would:

* ``"crop_flip"``: the CIFAR shift-crop (zero padding) and horizontal flip of ``wb.data``;
* ``"simclr"``: SimCLR's recipe at CIFAR size (Chen et al. 2020, arXiv 2002.05709, appendix A and
  B.9): random resized crop (scale 0.2-1, aspect 3/4-4/3) back to the input size, flip, colour
  jitter with probability 0.8 (brightness, contrast, saturation ``0.8 s``, hue ``0.2 s`` for a
  strength ``s``, 0.5 on CIFAR) and grayscale with probability 0.2; no blur at 32x32, as the paper;
* ``"simclr_blur"``: the same plus Gaussian blur with probability 0.5 (the ImageNet recipe).

The photometric steps are kornia's batched tensor augmentations (PACKAGES.md); they act on
``[0, 1]`` images, so a view is un-normalized with the dataset's ``mean`` and ``std``, augmented and
normalized again.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from ..data import random_crop_flip, random_stream

__all__ = ["VIEW_RECIPES", "make_views"]

VIEW_RECIPES = ("crop_flip", "simclr", "simclr_blur")


@lru_cache(maxsize=16)
def _pipeline(recipe: str, size: tuple[int, int], strength: float):
    import kornia.augmentation as K  # imported on first use: kornia costs a second at import

    s = strength
    steps = [K.RandomResizedCrop(size, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)),
             K.RandomHorizontalFlip(),
             K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
             K.RandomGrayscale(p=0.2)]
    if recipe == "simclr_blur":
        k = max(3, (size[0] // 10) | 1)  # about a tenth of the image, odd (the paper's rule)
        steps.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5))
    return K.AugmentationSequential(*steps)


def make_views(x: torch.Tensor, mean, std, seed: int, recipe: str = "simclr", strength: float = 0.5,
               padding: int = 4) -> torch.Tensor:
    """One random view of every image of a normalized float batch ``[B, C, H, W]``.

    Args:
        x: normalized images (``(x / 255 - mean) / std``).
        mean, std: the dataset's per-channel statistics in ``[0, 1]`` units (``data.mean``, ``data.std``).
        seed: every draw is a function of it (derive it from the run's seed, the step and the view
            with :func:`workbench.data.random_stream` or any integer rule).
        recipe: one of :data:`VIEW_RECIPES`.
        strength: colour jitter's ``s`` (SimCLR: 1.0 on ImageNet, 0.5 on CIFAR).
        padding: the ``"crop_flip"`` shift in pixels.
    """
    if recipe not in VIEW_RECIPES:
        raise ValueError(f"unknown view recipe {recipe!r}; choose one of {', '.join(VIEW_RECIPES)}")
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        raise ValueError(f"make_views takes normalized float images [B, C, H, W], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if recipe == "crop_flip":
        return random_crop_flip(x, random_stream(seed), padding=padding)
    c = x.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need {c} values (one per channel), got {len(mean)} and {len(std)}")
    if not 0 <= strength <= 2:
        raise ValueError(f"strength is colour jitter's s, in [0, 2] (SimCLR uses 0.5 on CIFAR), got {strength}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    sd = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    img = (x.contiguous() * sd + m).clamp(0, 1)
    if c == 1:  # colour steps need RGB: jitter the gray channel as a gray RGB image and keep one channel
        img = img.expand(-1, 3, -1, -1)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # kornia draws from the global generator: fork it, seed it
        torch.manual_seed(int(seed) % (2 ** 63 - 1))
        out = _pipeline(recipe, tuple(x.shape[-2:]), float(strength))(img)
    if c == 1:
        out = out.mean(1, keepdim=True)
    return (out - m) / sd
