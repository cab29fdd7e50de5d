"""How much detail an image holds at each spatial frequency: the radially averaged power spectrum.

Super-resolution by 4x must put back the frequencies the low-resolution input cannot hold (above its Nyquist
frequency, a quarter of the output's). A network trained on the pixel-wise mean squared error predicts the
*average* of the plausible high-resolution images, and an average of textures that disagree in phase is
smooth: its spectrum falls below the real images' at high frequencies. SRGAN's adversarial and feature losses
(Ledig et al., arXiv:1609.04802) push it back up. These functions measure that.

* :func:`power_spectrum`: ``|FFT2(x)|^2 / (H W)^2`` per image, averaged over channels, with frequency zero at
  index ``[0, 0]`` (no shift). Parseval: its sum over frequencies is the image's mean square.
* :func:`radial_power_spectrum`: the power averaged over rings of equal radius ``r = round(sqrt(fy^2 + fx^2))``
  (frequencies in cycles per image, ``r = 0 .. min(H, W) // 2``; the corners beyond are left out). A constant
  image has all its power at ``r = 0``; a unit impulse (and, in expectation, white noise) has a flat spectrum;
  ``cos(2 pi (a y / H + b x / W))`` puts all its power in the ring ``round(sqrt(a^2 + b^2))``.
* :func:`high_frequency_ratio`: the share of an image's power away from frequency zero that lies at radius
  ``>= cutoff``.
* :func:`spectral_distance`: the mean over rings ``r >= r_min`` of ``|log10 P_a(r) - log10 P_b(r)|`` between two
  sets' mean spectra, in decades (1.0: ten times too much or too little power, on average over the rings).
"""
from __future__ import annotations

import torch

__all__ = ["power_spectrum", "radial_power_spectrum", "high_frequency_ratio", "spectral_distance"]


def _check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"{name} must be a tensor [N, C, H, W], got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.shape[-1] < 2 or images.shape[-2] < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels, got {tuple(images.shape[-2:])}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point (e.g. uint8 images / 255), got {images.dtype}")
    return images.double()


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]``: each image's power per frequency, averaged over channels (frequency zero at ``[0, 0]``)."""
    x = _check_images(images)
    h, w = x.shape[-2:]
    return torch.fft.fft2(x).abs().pow(2).mean(1) / (h * w) ** 2


def _rings(h: int, w: int) -> tuple[torch.Tensor, int]:
    fy = torch.fft.fftfreq(h, 1 / h).double()           # integer frequencies, cycles per image
    fx = torch.fft.fftfreq(w, 1 / w).double()
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round().long()   # [H, W]
    return r, min(h, w) // 2


def radial_power_spectrum(images: torch.Tensor, mean: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The radially averaged power spectrum.

    Args:
        images: ``[N, C, H, W]`` floating point (for example in [0, 1]).
        mean: average over the images (``[R]``); ``False`` keeps one spectrum per image (``[N, R]``).

    Returns:
        ``(radii, power)``: ``radii = 0 .. min(H, W) // 2`` (cycles per image) and the power averaged over each
        ring's frequencies (float64).

    Example:
        >>> r, p = radial_power_spectrum(torch.rand(8, 3, 32, 32))   # p[0]: the mean squared; p[1:]: the detail
    """
    p = power_spectrum(images)
    ring, top = _rings(*p.shape[-2:])
    keep = ring <= top
    idx = ring[keep]                                                   # [K]
    vals = p[:, keep]                                                  # [N, K]
    sums = torch.zeros(len(p), top + 1, dtype=p.dtype).index_add_(1, idx, vals)
    counts = torch.bincount(idx, minlength=top + 1).to(p.dtype)
    out = sums / counts
    return torch.arange(top + 1), (out.mean(0) if mean else out)


def high_frequency_ratio(images: torch.Tensor, cutoff: int) -> torch.Tensor:
    """``[N]``: the share of each image's power at radius ``>= cutoff`` among its power at radius ``>= 1`` (total
    power, not ring averages; 0 for an image with no power away from frequency zero)."""
    p = power_spectrum(images)
    ring, top = _rings(*p.shape[-2:])
    if not (isinstance(cutoff, int) and 1 <= cutoff <= top):
        raise ValueError(f"cutoff is a whole radius from 1 to {top} (cycles per image) for {tuple(p.shape[-2:])} "
                         f"images, got {cutoff!r}")
    keep = ring <= top
    high = p[:, keep & (ring >= cutoff)].sum(1)
    ac = p[:, keep & (ring >= 1)].sum(1)
    return torch.where(ac > 0, high / ac.clamp(min=torch.finfo(ac.dtype).tiny), torch.zeros_like(ac))


def spectral_distance(images: torch.Tensor, reference: torch.Tensor, r_min: int = 1) -> float:
    """Mean over the rings ``r >= r_min`` of ``|log10 P(r) - log10 P_ref(r)|`` (decades) between the mean radial
    spectra of two sets of images of the same size (0: the same spectrum)."""
    if images.shape[-2:] != reference.shape[-2:]:
        raise ValueError(f"images and reference must have the same size, got {tuple(images.shape[-2:])} and "
                         f"{tuple(reference.shape[-2:])}")
    _, a = radial_power_spectrum(images)
    _, b = radial_power_spectrum(reference)
    if not (isinstance(r_min, int) and 0 <= r_min < len(a)):
        raise ValueError(f"r_min is a whole radius from 0 to {len(a) - 1}, got {r_min!r}")
    a, b = a[r_min:], b[r_min:]
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("a ring has zero power in one of the sets (constant images?): the log ratio is undefined")
    return float((a.log10() - b.log10()).abs().mean())
