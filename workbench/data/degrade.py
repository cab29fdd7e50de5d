"""Degraded copies of real images for restoration: noise, blur, downsampling, JPEG and heavy rain, as
``(degraded, clean)`` pairs.

Every degradation acts on a whole uint8 batch ``[N, C, H, W]`` on its device and is deterministic for a
seed (each image's draws depend on its position and the seed only). :func:`degrade` applies one by name;
:func:`paired` makes a :class:`PairedImages` of a dataset, and :class:`PairLoader` serves its normalized
``(degraded, clean)`` batches to ``wb.fit`` (with a restoration task, :mod:`wb.dense`).

* ``"gaussian"``: additive white Gaussian noise of std ``sigma`` (pixel levels of 0..255): severity 1..5 is
  sigma 10, 15, 25, 35, 50 (the denoising papers' levels; MIRNet and its predecessors report 15, 25, 50).
* ``"poisson_gaussian"``: signal-dependent shot noise plus read noise, the model of real camera noise
  (Foi et al. 2008): ``y = a * Poisson(x / a) + N(0, b^2)``; severity sets ``(a, b)``.
* ``"blur"``: Gaussian blur of std 0.6 .. 2.0 pixels.
* ``"down2"``, ``"down4"``: bicubic, antialiased downsampling by 2 or 4 (what super-resolution undoes); the
  degraded images are smaller than the clean ones.
* ``"jpeg"``: JPEG at quality 60, 40, 25, 15, 8 (PIL's encoder, per image, on the CPU).
* ``"rain"``: synthetic heavy rain: streaks (thin lines at an angle, density and length per image, motion
  blurred) added to the image, then the veil of heavy rain: the scene mixed with a bright haze
  ``I = J t + A (1 - t)`` (the atmospheric scattering model DPENet and its predecessors use) and a little
  accumulation blur. ``severity=0`` (or density 0) is the identity.

CIFAR-10's 32-pixel images are small for restoration networks; :func:`paired` can upsample the clean images
first (``size=64``: bicubic, said in the dataset's source) so that the networks have pixels to work with.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset, to_float, validate_images
from .loader import TensorLoader

__all__ = ["DEGRADATIONS", "degrade", "PairedImages", "PairLoader", "paired"]

DEGRADATIONS = ("gaussian", "poisson_gaussian", "blur", "down2", "down4", "jpeg", "rain")
_SIGMAS = (10.0, 15.0, 25.0, 35.0, 50.0)
_BLURS = (0.6, 0.9, 1.2, 1.6, 2.0)
_JPEG = (60, 40, 25, 15, 8)
_POISSON = ((0.01, 0.01), (0.02, 0.02), (0.04, 0.03), (0.06, 0.04), (0.1, 0.05))  # (a, b) in [0, 1] units


def _gen(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index) * 7_919 + 17) % (2 ** 63 - 1))


def _per_image_normal(shape, seed: int, offset: int) -> torch.Tensor:
    """Standard normals ``[N, *shape]``, image ``i`` drawn from ``(seed, offset + i)`` alone."""
    return torch.stack([torch.randn(tuple(shape[1:]), generator=_gen(seed, offset + i)) for i in range(shape[0])])


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of float images ``[N, C, H, W]`` with reflected borders."""
    k = _gaussian_kernel(sigma).to(x)
    c, r = x.shape[1], (len(k) - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _rain(x: torch.Tensor, severity: int, seed: int, offset: int) -> torch.Tensor:
    """Streaks, haze and accumulation on float images in [0, 1] (see the module docstring)."""
    n, c, h, w = x.shape
    if severity == 0:
        return x
    density = 0.004 * severity                      # streak seeds per pixel
    out = torch.empty_like(x)
    for i in range(n):
        g = _gen(seed, offset + i)
        angle = (torch.rand(1, generator=g).item() - 0.5) * math.radians(50)   # from vertical
        length = int(3 + 2 * severity + 4 * torch.rand(1, generator=g).item())
        seeds = (torch.rand(1, 1, h, w, generator=g) < density).float() * (0.6 + 0.4 * torch.rand(1, 1, h, w,
                                                                                              generator=g))
        # a line kernel at the angle: motion blur of the seeds into streaks
        size = 2 * length + 1
        yy, xx = torch.meshgrid(torch.arange(size) - length, torch.arange(size) - length, indexing="ij")
        dist = (xx * math.cos(angle) + yy * math.sin(angle)).abs()              # distance from the line
        along = (-xx * math.sin(angle) + yy * math.cos(angle)).abs()
        kern = ((dist <= 0.5) & (along <= length)).float()
        kern = kern / kern.sum().clamp(min=1)
        streaks = F.conv2d(seeds, kern.view(1, 1, size, size).to(x), padding=length).clamp(0, 1) * length * 0.35
        streaks = streaks.clamp(0, 1).to(x.device)
        img = x[i:i + 1] + streaks * (1 - x[i:i + 1]) * 0.9                   # bright, semi-transparent streaks
        t = 1.0 - 0.09 * severity * (0.8 + 0.4 * torch.rand(1, generator=g).item())   # haze transmission
        airlight = 0.75 + 0.2 * torch.rand(1, generator=g).item()
        img = img * t + airlight * (1 - t)
        if severity >= 3:                            # accumulation: rain veiling fine detail
            img = 0.7 * img + 0.3 * _blur(img, 0.4 * severity)
        out[i] = img[0].clamp(0, 1)
    return out


def degrade(images: torch.Tensor, kind: str, severity: int = 3, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """Degrade uint8 images ``[N, C, H, W]`` (see the module docstring); uint8 out (smaller for ``down*``).

    ``offset`` is the position of ``images[0]`` in its dataset: image ``i``'s draws depend on ``seed`` and
    ``offset + i`` only, so a subset gets the same pixels as the whole set.
    """
    validate_images(images)
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")
    if not (isinstance(severity, int) and 0 <= severity <= 5):
        raise ValueError(f"severity is an integer from 0 (none) to 5, got {severity!r}")
    if kind in ("down2", "down4"):
        f = 2 if kind == "down2" else 4
        h, w = images.shape[-2:]
        if h % f or w % f:
            raise ValueError(f"{kind} shrinks each side by {f}, but the images are {h}x{w}: {f} must divide both "
                             f"sides (crop or resize first, e.g. paired(data, {kind!r}, size={f * max(1, h // f)}))")
    if severity == 0 and kind not in ("down2", "down4"):
        return images.clone()
    x = images.float() / 255
    dev = images.device
    if kind == "gaussian":
        noise = _per_image_normal(x.shape, seed, offset).to(dev)
        y = x + noise * _SIGMAS[severity - 1] / 255
    elif kind == "poisson_gaussian":
        a, b = _POISSON[severity - 1]
        g = [_gen(seed, offset + i) for i in range(len(x))]
        shot = torch.stack([torch.poisson(x[i].cpu() / a, generator=g[i]) for i in range(len(x))]).to(dev) * a
        read = torch.stack([torch.randn(x.shape[1:], generator=g[i]) for i in range(len(x))]).to(dev) * b
        y = shot + read
    elif kind == "blur":
        y = _blur(x, _BLURS[severity - 1])
    elif kind in ("down2", "down4"):
        f = 2 if kind == "down2" else 4
        y = F.interpolate(x, scale_factor=1 / f, mode="bicubic", antialias=True, align_corners=False)
    elif kind == "jpeg":
        from PIL import Image
        outs = []
        for img in images.cpu():
            arr = img.permute(1, 2, 0).squeeze(-1).numpy()
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=_JPEG[severity - 1])
            dec = torch.as_tensor(np.array(Image.open(io.BytesIO(buf.getvalue()))))
            outs.append(dec.view(*dec.shape[:2], -1).permute(2, 0, 1))
        return torch.stack(outs).to(dev)
    else:
        y = _rain(x, severity, seed, offset)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass
class PairedImages:
    """``degraded`` and ``clean`` uint8 images (``[N, C, h, w]`` and ``[N, C, H, W]``), with the clean set's
    normalization statistics."""

    degraded: torch.Tensor
    clean: torch.Tensor
    name: str
    split: str = "train"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        validate_images(self.degraded, "degraded")
        validate_images(self.clean, "clean")
        if len(self.degraded) != len(self.clean):
            raise ValueError(f"{len(self.degraded)} degraded against {len(self.clean)} clean images: pairs match one to one")

    def __len__(self) -> int:
        return len(self.clean)

    def to(self, device: torch.device | str) -> "PairedImages":
        return PairedImages(self.degraded.to(device), self.clean.to(device), self.name, self.split, self.mean,
                            self.std, self.source)


def paired(data: ImageDataset, kind: str, severity: int = 3, seed: int = 0, size: int | None = None) -> PairedImages:
    """``(degraded, clean)`` pairs of ``data``'s images; ``size`` upsamples the clean images first (bicubic)."""
    clean = data.images
    note = ""
    if size is not None and size != clean.shape[-1]:
        clean = (F.interpolate(clean.float(), size=(size, size), mode="bicubic", align_corners=False)
                 .round().clamp(0, 255).to(torch.uint8))
        note = f", upsampled to {size}x{size} (bicubic) first"
    return PairedImages(degrade(clean, kind, severity, seed), clean, f"{data.name}/{kind}-{severity}", data.split,
                        data.mean, data.std, f"{data.source}{note}; {kind} at severity {severity} (seed {seed})")


class PairLoader(TensorLoader):
    """Normalized ``(degraded, clean)`` float batches of a :class:`PairedImages` (no augmentation)."""

    data_type, made_by = PairedImages, "wb.data.paired"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dataset
        return to_float(d.degraded[idx], d.mean, d.std), to_float(d.clean[idx], d.mean, d.std)
