"""Common corruptions (CIFAR-10-C) and appearance shifts, applied to whole uint8 batches as tensor ops.

Hendrycks & Dietterich, *Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations*, ICLR 2019, https://arxiv.org/abs/1903.12261. CIFAR-10-C corrupts the CIFAR-10 test
set with 15 corruptions in four families (figure 1) plus four held-out ones, each at five severities.
The severity constants here are the CIFAR ones of the paper's repository (hendrycks/robustness,
``ImageNet-C/create_c/make_cifar_c.py``), not the ImageNet ones of the ``imagecorruptions`` package.

>>> y = corrupt(images, "fog", 3, seed=0)           # uint8 [N, C, H, W] in, uint8 out, any device
>>> wb.load("cifar10", "test", corruption="fog", severity=3)   # the same as a dataset

Families (the paper's, with the held-out four placed where they belong):

* noise: gaussian_noise, shot_noise, impulse_noise, speckle_noise
* blur: defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur
* weather: snow, fog, brightness (frost is left out: it pastes crops of six photographs of frost
  that ship inside the reference package; spatter is left out: its liquid layer needs Canny edges,
  a distance transform and histogram equalization, none of them a batched tensor op)
* digital: contrast, elastic_transform, pixelate, jpeg_compression, saturate

One-channel images (Fashion-MNIST) take every corruption but ``saturate`` (hue and saturation are
undefined for grey); ``brightness`` adds to the grey value, ``snow`` brightens with the grey value
itself, ``jpeg_compression`` codes one luma plane.

Randomness. Every random number is a 32-bit integer hash of (seed, image index, corruption,
stream, element), a counter-based generator in int64 tensor ops (a two-round xorshift-multiply hash
from C. Wellons' hash-prospector), so image ``i`` gets the same random bits in any batch and on any
device: ``corrupt(x, ...)[idx]`` equals ``corrupt(x[idx], ..., index=idx)``. Normals come from
Box-Muller on 24-bit uniforms (tails cut at 5.9 sigma); Poisson counts are exact: inversion below a
mean of 10, Hormann's transformed rejection (PTRS, 1993) above.

Output. As in the reference, the float result in [0, 1] becomes ``uint8(255 y)`` by truncation
(with a 1e-4 level guard against float error), so the mean level matches CIFAR-10-C; severity 0
returns the input unchanged.

Agreement with the references (tests/unit/test_data_corruptions.py). "numpy" is our per-image
re-implementation of make_cifar_c.py's formula with scipy / OpenCV 5 / scikit-image / PIL at the
CIFAR constants, fed the same random draws; "imagecorruptions" is the PyPI package (1.1.2) run at its
own ImageNet constants on 32x32 images against our op at those constants. "Exact" means every value
equals the reference's truncated float, except where that float lies within 1e-3 of an integer:
float error of either side decides the truncation there (the reference's float64 often lands a hair
below a level the formula hits exactly, e.g. brightness + 0.2 = + 51 levels; our float32 sums are
good to about 1e-4 level). That touches <= 0.3% of values in most corruptions, up to 5%
(brightness), 8% (saturate) and 9% (defocus blur at severity 4, flat regions at 1e-4 below a level),
and 15% for saturate at ImageNet's 20x.

==================  ===================================  ======================================
corruption          compared with                        agreement
==================  ===================================  ======================================
gaussian_noise      numpy (same normals);                exact; output mean within 0.5 level,
                    imagecorruptions                     std within 3%
shot_noise          imagecorruptions; scipy's pmf        output histograms within TV 0.03;
                                                         sampler within TV 0.01 of the pmf
impulse_noise       imagecorruptions                     salt and pepper shares within 0.6
                                                         points, other values untouched
speckle_noise       numpy; imagecorruptions              exact; mean and std as gaussian_noise
gaussian_blur       numpy (skimage gaussian)             exact (imagecorruptions 1.1.2 fails on
                                                         scikit-image >= 0.19: ``multichannel``)
glass_blur          numpy (same draws)                   within 1 level, <= 3% of values (a flip
                                                         of the uint8 rounding between the two
                                                         blurs). The reference's "swap" of RGB
                                                         pixels assigns numpy views, so it copies
                                                         one pixel onto the other; so do we
defocus_blur        numpy; imagecorruptions              exact
motion_blur         imagecorruptions' numpy port of      bit-exact (same angle). CIFAR-10-C ran
                    ImageMagick's MotionBlurImage        ImageMagick itself (Wand), not
                                                         installable here: same kernel and
                                                         offsets, 8-bit output, rounded
zoom_blur           numpy (scipy zoom)                   exact; imagecorruptions differs by
                                                         design (top-left crop, CIFAR: centre)
snow                numpy (same draws; motion blur as    exact
                    above)
fog                 numpy (same fractal draws)           exact (imagecorruptions 1.1.2 fails on
                                                         numpy >= 2: ``np.float_``)
brightness          numpy (skimage HSV); imagecorr.      exact
contrast            numpy; imagecorruptions              exact
saturate            numpy (skimage HSV); imagecorr.      exact
pixelate            numpy (PIL BOX down, BOX up)         bit-exact (Pillow's fixed-point box
                                                         filter); imagecorruptions upsamples
                                                         with NEAREST
jpeg_compression    PIL (libjpeg-turbo); imagecorr.      bit-exact at every quality and size
                                                         (libjpeg's colour conversion, 4:2:0
                                                         padding and subsampling, integer
                                                         "islow" DCT, fancy upsampling)
elastic_transform   numpy (OpenCV warpAffine, scipy      exact with OpenCV 5 (float sampling
                    map_coordinates)                     positions; OpenCV <= 4, which made
                                                         CIFAR-10-C, rounds them to 1/32 pixel)
==================  ===================================  ======================================

Appearance shifts (registered as datasets in :mod:`wb.data`): :func:`style_shift` (colour and
style of CIFAR-10), :func:`invert` and :func:`texture_overlay` (Fashion-MNIST).
"""
from __future__ import annotations

import math
import zlib
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .dataset import validate_images

__all__ = ["corrupt", "list_corruptions", "FAMILIES", "SEVERITIES", "style_shift", "invert", "texture_overlay"]

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}

# make_cifar_c.py's constants, severities 1..5 (zoom: np.arange(1, stop, 0.01) as the reference
# builds them, 7, 12, 16, 21 and 26 factors; elastic: fractions of the image side, IMSIZE there)
SEVERITIES: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),                       # std
    "shot_noise": (500, 250, 100, 75, 50),                                  # photons at full scale
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),                        # share of flipped values
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),                        # relative std
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),                             # sigma
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, delta, passes
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),         # radius, alias sigma
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),                       # radius, sigma
    "zoom_blur": tuple(tuple(float(z) for z in np.arange(1, end, 0.01)) for end in (1.06, 1.11, 1.16, 1.21, 1.26)),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),           # strength, wibble decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),                              # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),                                # factor about the mean
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),      # S -> a S + b
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),                              # size factor
    "jpeg_compression": (80, 65, 58, 50, 40),                               # quality
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                          (0.1, 0.03, 0.03)),                               # alpha, sigma, affine (x side)
}
_GREY_OK = tuple(n for n in SEVERITIES if n != "saturate")
_EPS = 1e-4
_CHUNK = 512  # images per pass: bounds the memory of the hashes


# ------------------------------------------------------------------ counter-based random numbers
_M32 = 0xFFFFFFFF


def _mix32(x):
    """A bijective 32-bit hash (Wellons' hash-prospector, ``[16 21f0aaad 15 735a2d97 15]``) on python ints
    or int64 tensors; both multipliers are below 2**31, so no product overflows int64."""
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


class _Rng:
    """Random numbers for a batch: image ``i``'s numbers depend only on (seed, index[i], name, stream).

    Element ``j`` of image ``i`` is ``mix(mix(j) ^ key_i)``: ``key_i`` is a bijective hash of the index
    (distinct images, distinct keys) and ``mix(j)`` a bijective hash of the counter (distinct
    elements of an image, distinct numbers)."""

    def __init__(self, seed: int, index: Tensor, name: str):
        self.index = index  # int64 [N], on the images' device
        self.key = _mix32(_mix32(seed & _M32) ^ zlib.crc32(name.encode()) ^ _mix32((seed >> 32) & _M32))

    def keys(self, stream: int) -> Tensor:
        """One 32-bit key per image for ``stream``."""
        return _mix32(self.index ^ _mix32(self.key ^ _mix32(stream + 0x51ED27)))

    @staticmethod
    def unit(keys: Tensor, mixed: Tensor) -> Tensor:
        """Uniform float32 in (0, 1) (24 bits) for the hashed counters ``mixed`` under ``keys`` (broadcast)."""
        h = _mix32(mixed ^ keys)
        return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216)

    def uniform(self, stream: int, *shape: int) -> Tensor:
        """``[N, *shape]`` uniforms in (0, 1)."""
        j = _mix32(torch.arange(math.prod(shape), device=self.index.device))
        return self.unit(self.keys(stream)[:, None], j[None]).view(len(self.index), *shape)

    def normal(self, stream: int, *shape: int) -> Tensor:
        """``[N, *shape]`` standard normals (Box-Muller, both the cosine and the sine half)."""
        count = math.prod(shape)
        u = self.uniform(stream, 2, (count + 1) // 2)
        r, t = torch.sqrt(-2 * torch.log(u[:, 0])), 2 * math.pi * u[:, 1]
        return torch.cat([r * torch.cos(t), r * torch.sin(t)], 1)[:, :count].reshape(len(self.index), *shape)


def _ptrs(m: Tensor, U: Tensor, V: Tensor) -> tuple[Tensor, Tensor]:
    """One try of Hormann's PTRS for means ``m >= 10`` (flat float32): candidates and whether accepted."""
    b = 0.931 + 2.53 * m.sqrt()
    a = -0.059 + 0.02483 * b
    us = 0.5 - U.abs()
    k = torch.floor((2 * a / us + b) * U + m + 0.43)
    ok = (us >= 0.07) & (V <= 0.9277 - 3.6224 / (b - 2))  # the squeeze: accepts most, no logarithms
    hard = torch.nonzero(~ok & (k >= 0) & ~((us < 0.013) & (V > us))).squeeze(1)
    if len(hard):  # the exact test, in float64
        mh, kh, bh, ah, uh = (t[hard].double() for t in (m, k, b, a, us))
        lhs = V[hard].double().log() + (1.1239 + 1.1328 / (bh - 3.4)).log() - (ah / (uh * uh) + bh).log()
        ok[hard] = lhs <= -mh + kh * mh.log() - torch.lgamma(kh + 1)
    return k, ok


def _poisson(lam: Tensor, rng: _Rng, stream: int) -> Tensor:
    """Exact Poisson draws of the rates ``lam [N, ...]``: inversion below 10, PTRS above (Hormann 1993,
    *The transformed rejection method for generating Poisson random variables*, the method numpy uses)."""
    shape = lam.shape
    lam = lam.reshape(len(lam), -1).float()
    mixed = _mix32(torch.arange(lam.shape[1], device=lam.device))  # the hashed counters, once

    def draw(s: int, rows: Tensor | None = None, cols: Tensor | None = None) -> Tensor:
        if rows is None:
            return _Rng.unit(rng.keys(s)[:, None], mixed[None]).flatten()
        return _Rng.unit(rng.keys(s)[rows], mixed[cols])

    big = (lam >= 10).flatten()
    k, ok = _ptrs(lam.flatten().clamp_min(10), draw(stream + 1) - 0.5, draw(stream + 2))  # all at once
    ok &= big
    out = torch.where(ok, k, torch.zeros_like(k)).view_as(lam)
    rows, cols = torch.nonzero((big & ~ok).view_as(lam), as_tuple=True)
    for r in range(1, 8):  # the rejected ones again (a try accepts at least 89%)
        if not len(rows):
            break
        U, V = draw(stream + 1 + 2 * r, rows, cols) - 0.5, draw(stream + 2 + 2 * r, rows, cols)
        k, ok = _ptrs(lam[rows, cols], U, V)
        out[rows[ok], cols[ok]] = k[ok]
        rows, cols = rows[~ok], cols[~ok]
    if len(rows):  # about 1 value in 1e8: the normal approximation
        m, z = lam[rows, cols], draw(stream + 99, rows, cols)
        out[rows, cols] = (m + m.sqrt() * math.sqrt(2) * torch.erfinv(2 * z - 1)).round().clamp_min(0)
    rows, cols = torch.nonzero(lam < 10, as_tuple=True)
    if len(rows):  # inversion: the smallest k whose cumulative probability reaches u
        m, u = lam[rows, cols].double(), draw(stream, rows, cols).double()
        p = torch.exp(-m)
        cdf, k = p.clone(), torch.zeros_like(m)
        for j in range(1, 41):  # P(k > 40 | mean < 10) < 1e-12
            above = u > cdf
            if j % 8 == 0 and not bool(above.any()):
                break
            k += above.double()
            p = p * m / j
            cdf = cdf + p
        out[rows, cols] = k.float()
    return out.view(shape)


# ------------------------------------------------------------------ filtering helpers
def _border(i: Tensor, n: int, mode: str) -> Tensor:
    """Map indices outside ``0..n-1`` back inside: ``nearest`` (aaa|abcd), ``reflect101`` (dcb|abcd,
    OpenCV's default), ``symmetric`` (cba|abcd, scipy's ``reflect``)."""
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        if n == 1:
            return torch.zeros_like(i)
        i = i.remainder(2 * (n - 1))
        return torch.where(i >= n, 2 * (n - 1) - i, i)
    i = i.remainder(2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _filter2d(x: Tensor, kernel: np.ndarray, mode: str) -> Tensor:
    """Correlate every channel of ``x [N, C, H, W]`` with a centred odd ``kernel [kh, kw]``: a weighted sum
    of shifted copies (deterministic on every device; kernels here have at most 25 taps)."""
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    H, W = x.shape[-2:]
    dev = x.device
    iy = _border(torch.arange(-ry, H + ry, device=dev), H, mode)
    ix = _border(torch.arange(-rx, W + rx, device=dev), W, mode)
    xp = x.index_select(-2, iy).index_select(-1, ix)
    out = torch.zeros_like(x)
    for a in range(kh):
        for b in range(kw):
            if kernel[a, b] != 0:
                out.add_(xp[..., a:a + H, b:b + W], alpha=float(kernel[a, b]))
    return out


def _gauss1d(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel: radius ``int(truncate sigma + 0.5)``, normalized."""
    if sigma <= 0:
        return np.ones(1)
    r = int(truncate * sigma + 0.5)
    w = np.exp(-0.5 / sigma ** 2 * np.arange(-r, r + 1) ** 2)
    return w / w.sum()


def _gaussian(x: Tensor, sigma: float, truncate: float = 4.0, mode: str = "nearest") -> Tensor:
    """skimage.filters.gaussian over H and W (scipy's gaussian_filter: rows, then columns)."""
    k = _gauss1d(sigma, truncate)
    return _filter2d(_filter2d(x, k[:, None], mode), k[None, :], mode)


def _gather(x: Tensor, iy: Tensor, ix: Tensor) -> Tensor:
    """``x[n, c, iy[n, h, w], ix[n, h, w]]`` for index maps ``[N, H, W]``."""
    N, C, H, W = x.shape
    flat = (iy * W + ix).view(N, 1, -1).expand(N, C, -1)
    return x.reshape(N, C, H * W).gather(2, flat).view(N, C, *iy.shape[1:])


def _bilinear(x: Tensor, ys: Tensor, xs: Tensor, mode: str) -> Tensor:
    """Sample ``x [N, C, H, W]`` at float positions ``ys, xs [N, H', W']`` (float64), linear, with a border."""
    H, W = x.shape[-2:]
    y0, x0 = ys.floor(), xs.floor()
    fy, fx = (ys - y0).float()[:, None], (xs - x0).float()[:, None]
    y0, x0 = y0.long(), x0.long()
    ya, yb = _border(y0, H, mode), _border(y0 + 1, H, mode)
    xa, xb = _border(x0, W, mode), _border(x0 + 1, W, mode)
    top = _gather(x, ya, xa) * (1 - fx) + _gather(x, ya, xb) * fx
    bottom = _gather(x, yb, xa) * (1 - fx) + _gather(x, yb, xb) * fx
    return top * (1 - fy) + bottom * fy


def _zoom_matrix(n: int, z: float) -> np.ndarray:
    """make_cifar_c's clipped zoom along one axis as a matrix ``[n, n]``: the central ``ceil(n / z)``
    pixels resized by scipy.ndimage.zoom (order 1) to ``round(ceil(n / z) z)`` and the centre ``n`` kept."""
    ch = int(np.ceil(n / z))
    top = (n - ch) // 2
    size = int(round(ch * z))
    trim = (size - n) // 2
    m = np.zeros((n, n))
    for o in range(n):
        c = (o + trim) * (ch - 1) / (size - 1) if size > 1 else 0.0
        f = int(np.floor(c))
        t = c - f
        m[o, top + f] += 1 - t
        if t > 0:
            m[o, top + f + 1] += t
    return m


def _taps(u: Tensor, m: np.ndarray, dim: int) -> Tensor:
    """``m @ u`` along ``dim`` for a matrix ``[n_out, n_in]`` with a few nonzeros per row, as gathers and
    adds: exact for integers, and untouched by reduced-precision (TF32) matmul settings for floats."""
    taps = int((m != 0).sum(1).max())
    idx = np.argsort(m == 0, axis=1, kind="stable")[:, :taps]  # each row's nonzero columns first
    shape = [1] * u.ndim
    shape[dim] = len(m)
    acc = torch.zeros((), dtype=u.dtype, device=u.device)
    for t in range(taps):
        w = torch.as_tensor(np.take_along_axis(m, idx[:, t:t + 1], 1)[:, 0], dtype=u.dtype, device=u.device)
        acc = acc + u.index_select(dim, torch.as_tensor(idx[:, t], device=u.device)) * w.view(shape)
    return acc


def _zoom(x: Tensor, z: float) -> Tensor:
    """The clipped zoom of every image as two matrix products; in float64 when float32 products may take
    TF32 or bfloat16 shortcuts (``torch.set_float32_matmul_precision`` other than "highest")."""
    H, W = x.shape[-2:]
    dt = x.dtype if torch.get_float32_matmul_precision() == "highest" else torch.float64
    mh = torch.as_tensor(_zoom_matrix(H, z), dtype=dt, device=x.device)
    mw = torch.as_tensor(_zoom_matrix(W, z), dtype=dt, device=x.device)
    return (mh @ x.to(dt) @ mw.T).to(x.dtype)


def _motion(x: Tensor, radius: int, sigma: float, angle: Tensor) -> Tensor:
    """ImageMagick's MotionBlurImage as imagecorruptions ports it: a one-sided Gaussian of width
    ``2 radius + 1`` along the direction ``angle`` (degrees, one per image), edges replicated, taps
    from the first one that leaves the image on dropped."""
    N, C, H, W = x.shape
    width = 2 * radius + 1
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2)) / (math.sqrt(2 * math.pi) * sigma)
    k = k / k.sum()
    a = torch.deg2rad(angle.double())
    py, px = width * torch.sin(a), width * torch.cos(a)
    hyp = torch.hypot(py, px)
    i = torch.arange(width, device=x.device, dtype=torch.float64)
    dy = -torch.ceil(i * py[:, None] / hyp[:, None] - 0.5).long()  # [N, width]
    dx = -torch.ceil(i * px[:, None] / hyp[:, None] - 0.5).long()
    inside = torch.cumprod(((dy.abs() < H) & (dx.abs() < W)).long(), 1).float()
    ar_h = torch.arange(H, device=x.device)
    ar_w = torch.arange(W, device=x.device)
    out = torch.zeros_like(x)
    for t in range(width):
        iy = (ar_h[None, :, None] - dy[:, t, None, None]).clamp(0, H - 1).expand(N, H, W)
        ix = (ar_w[None, None, :] - dx[:, t, None, None]).clamp(0, W - 1).expand(N, H, W)
        out += (float(k[t]) * inside[:, t]).view(N, 1, 1, 1) * _gather(x, iy, ix)
    return out


def _trunc8(y: Tensor) -> Tensor:
    """``np.uint8(255 y)`` for y in [0, 1], as floats in [0, 1]."""
    return torch.floor(y.clamp(0, 1) * 255 + _EPS) / 255


def _quantize(y: Tensor) -> Tensor:
    """Float images in [0, 1] (clipped) to uint8 as the reference does: ``uint8(255 y)`` truncates."""
    return torch.floor(y.clamp(0, 1) * 255 + _EPS).to(torch.uint8)


def _grey(x: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


# ------------------------------------------------------------------ the corruptions (x: float [N, C, H, W] in [0, 1])
def _gaussian_noise(x, c, rng):
    return x + c * rng.normal(0, *x.shape[1:])


def _shot_noise(x, c, rng):
    return _poisson(x * c, rng, 0) / c


def _impulse_noise(x, c, rng):
    u = rng.uniform(0, *x.shape[1:])  # skimage's s&p: a share c of values flipped, half to 0, half to 1
    return torch.where(u < c / 2, torch.zeros_like(x), torch.where(u < c, torch.ones_like(x), x))


def _speckle_noise(x, c, rng):
    return x + x * c * rng.normal(0, *x.shape[1:])


def _gaussian_blur(x, sigma, rng):
    return _gaussian(x, sigma)


def _glass_blur(x, p, rng):
    sigma, delta, passes = p
    if delta != 1:
        raise NotImplementedError("glass_blur shifts by one pixel at every CIFAR-10-C severity")
    x = _trunc8(_gaussian(x, sigma))
    N, C, H, W = x.shape
    # make_cifar_c visits h = H-1 .. 2 and w = W-1 .. 2 in descending order and moves pixel
    # (h + dy, w + dx), dx, dy in {-1, 0}, onto (h, w); the source is always visited later, so each
    # pass reads the previous pass's image only: one gather per pass
    off = (rng.uniform(0, passes, H - 2, W - 2, 2) * 2).floor().long() - 1  # [N, passes, h, w, (dx, dy)]
    for k in range(passes):
        o = off[:, k].flip(1, 2)  # index 0 is h = H-1: flip to ascending h, w = 2 .. H-1
        iy = torch.arange(H, device=x.device).view(1, H, 1).repeat(N, 1, W)
        ix = torch.arange(W, device=x.device).view(1, 1, W).repeat(N, H, 1)
        iy[:, 2:, 2:] += o[..., 1]
        ix[:, 2:, 2:] += o[..., 0]
        x = _gather(x, iy, ix)
    return _gaussian(x, sigma)


def _disk(radius: float, alias: float) -> np.ndarray:
    """make_cifar_c's defocus kernel: a normalized disk on a 17x17 grid (wider beyond radius 8), blurred
    by a 3x3 (5x5) Gaussian of ``alias`` sigma with OpenCV's reflect-101 border, zero rim removed."""
    grid = np.arange(-8, 9) if radius <= 8 else np.arange(-int(radius), int(radius) + 1)
    ks = 3 if radius <= 8 else 5
    X, Y = np.meshgrid(grid, grid)
    d = (X ** 2 + Y ** 2 <= radius ** 2).astype(np.float32)
    d /= d.sum()
    g = np.exp(-(np.arange(ks) - ks // 2) ** 2 / (2 * alias ** 2))
    g /= g.sum()
    t = torch.as_tensor(d, dtype=torch.float64)[None, None]
    k = _filter2d(_filter2d(t, g[:, None], "reflect101"), g[None, :], "reflect101")[0, 0].numpy()
    r = int(np.abs(np.argwhere(k != 0) - len(grid) // 2).max())
    c = len(grid) // 2
    return k[c - r:c + r + 1, c - r:c + r + 1].astype(np.float32)


def _defocus_blur(x, p, rng):
    return _filter2d(x, _disk(*p), "reflect101")


def _motion_blur(x, p, rng):
    radius, sigma = p
    angle = rng.uniform(0) * 90 - 45
    return torch.round(_motion(x, radius, sigma, angle) * 255) / 255  # ImageMagick writes 8 bits, rounded


def _zoom_blur(x, zs, rng):
    out = torch.zeros_like(x)
    for z in zs:
        out += _zoom(x, z)
    return (x + out) / (len(zs) + 1)


def _snow(x, p, rng):
    loc, scale, z, thr, radius, sigma, keep = p
    N, C, H, W = x.shape
    layer = _zoom(loc + scale * rng.normal(0, 1, H, W), z)
    layer = _trunc8(torch.where(layer < thr, torch.zeros_like(layer), layer))
    angle = rng.uniform(1) * 90 - 135
    layer = torch.round(_motion(layer, radius, sigma, angle) * 255) / 255
    x = keep * x + (1 - keep) * torch.maximum(x, _grey(x) * 1.5 + 0.5)
    return x + layer + layer.flip(-2, -1)


def _plasma(rng: _Rng, size: int, decay: float) -> Tensor:
    """Diamond-square height maps ``[N, size, size]`` in [0, 1] (make_cifar_c's plasma_fractal, batched):
    level by level, squares then diamonds, each new point the mean of its neighbours plus
    ``w * U(-w, w)``, ``w`` starting at 100 and divided by ``decay`` per level."""
    m = torch.zeros(len(rng.index), size, size, dtype=torch.float64, device=rng.index.device)
    step, wibble, s = size, 100.0, 0

    def wibbled(a: Tensor) -> Tensor:
        nonlocal s
        u = rng.uniform(s, *a.shape[1:]).double()
        s += 1
        return a / 4 + wibble * (-wibble + 2 * wibble * u)

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + corner.roll(-1, 1)
        sq = sq + sq.roll(-1, 2)
        m[:, half::step, half::step] = wibbled(sq)
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled((dr + dr.roll(1, 1)) + (ul + ul.roll(-1, 2)))
        m[:, half::step, 0::step] = wibbled((dr + dr.roll(1, 2)) + (ul + ul.roll(-1, 1)))
        step //= 2
        wibble /= decay
    m = m - m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def _fog(x, p, rng):
    strength, decay = p
    H, W = x.shape[-2:]
    size = 1 << (max(H, W) - 1).bit_length()
    fog = _plasma(rng, size, decay)[:, None, :H, :W].float()
    top = x.amax((1, 2, 3), keepdim=True)
    return (x + strength * fog) * top / (top + strength)


def _brightness(x, c, rng):
    if x.shape[1] == 1:
        return x + c
    v = x.amax(1, keepdim=True)  # HSV value; hue and saturation kept: every channel scales with v
    v2 = (v + c).clamp(max=1)
    return torch.where(v > 0, x * v2 / v.clamp_min(1e-12), v2.expand_as(x))


def _contrast(x, c, rng):
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) * c + mean


def _saturate(x, p, rng):
    a, b = p
    v = x.amax(1, keepdim=True)
    s = torch.where(v > 0, (v - x.amin(1, keepdim=True)) / v.clamp_min(1e-12), torch.zeros_like(v))
    s2 = (s * a + b).clamp(0, 1)
    # hue and value kept: v - channel is proportional to s; a grey pixel has hue 0 (red) in skimage
    grey = torch.cat([v, v * (1 - s2), v * (1 - s2)], 1)
    return torch.where(s > 0, v - (v - x) * s2 / s.clamp_min(1e-12), grey)


def _pil_box(n_in: int, n_out: int) -> np.ndarray:
    """PIL's BOX resampling along one axis as an integer matrix ``[n_out, n_in]`` of 22-bit fixed-point
    weights (Pillow's Resample.c: taps whose centres fall in the box, normalized, rounded)."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 0.5 * fscale
    m = np.zeros((n_out, n_in), dtype=np.int64)
    for o in range(n_out):
        centre = (o + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        t = (np.arange(lo, hi) - centre + 0.5) / fscale
        w = ((t > -0.5) & (t <= 0.5)).astype(np.float64)
        if w.sum():
            m[o, lo:hi] = (0.5 + w / w.sum() * (1 << 22)).astype(np.int64)
    return m


def _pil_resize_axis(u: Tensor, n_out: int, dim: int) -> Tensor:
    """One PIL pass on integer samples along ``dim``, exact fixed point (the sums stay below
    255 (2**22 + taps) + 2**21 < 2**31, so int32 holds them)."""
    return ((_taps(u, _pil_box(u.shape[dim], n_out), dim) + (1 << 21)) >> 22).clamp(0, 255)


def _pixelate(x, c, rng):
    H, W = x.shape[-2:]
    u = torch.round(x * 255).int()
    for h, w in ((int(H * c), int(W * c)), (H, W)):  # PIL: width pass, then height pass, 8 bits between
        u = _pil_resize_axis(_pil_resize_axis(u, w, 3), h, 2)
    return u.float() / 255


# JPEG (ITU T.81 annex K tables, IJG quality scaling, libjpeg-turbo's colour conversion, 4:2:0
# subsampling with its alternating rounding bias and its "fancy" triangular upsampling)
_QY = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
_QC = np.full((8, 8), 99)
_QC[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
def _qtable(base: np.ndarray, quality: int) -> np.ndarray:
    """IJG quality scaling (jcparam.c): 5000 / q below 50, 200 - 2 q above, in percent; baseline clamp."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def _fix(v: float) -> int:
    return int(v * 65536 + 0.5)


# libjpeg's "islow" integer DCT (jfdctint.c / jidctint.c: Loeffler, Ligtenberg & Moschytz's butterflies
# in 13-bit fixed point, 2 extra bits between the passes), the method PIL's encoder and decoder use
_C = {"0.298631336": 2446, "0.390180644": 3196, "0.541196100": 4433, "0.765366865": 6270, "0.899976223": 7373,
      "1.175875602": 9633, "1.501321110": 12299, "1.847759065": 15137, "1.961570560": 16069,
      "2.053119869": 16819, "2.562915447": 20995, "3.072711026": 25172}


def _descale(x: Tensor, n: int) -> Tensor:
    return (x + (1 << (n - 1))) >> n


def _odd(t0: Tensor, t1: Tensor, t2: Tensor, t3: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The shared odd part: inputs (d7, d5, d3, d1)-like terms, outputs the four rotated sums."""
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * _C["1.175875602"]
    z1, z2 = z1 * -_C["0.899976223"], z2 * -_C["2.562915447"]
    z3, z4 = z3 * -_C["1.961570560"] + z5, z4 * -_C["0.390180644"] + z5
    return (t0 * _C["0.298631336"] + z1 + z3, t1 * _C["2.053119869"] + z2 + z4,
            t2 * _C["3.072711026"] + z2 + z3, t3 * _C["1.501321110"] + z1 + z4)


def _fdct_1d(d: Tensor, first: bool) -> Tensor:
    """One pass of jpeg_fdct_islow along the last axis (int64); the first pass keeps 2 extra bits."""
    d = [d[..., i] for i in range(8)]
    t0, t7, t1, t6 = d[0] + d[7], d[0] - d[7], d[1] + d[6], d[1] - d[6]
    t2, t5, t3, t4 = d[2] + d[5], d[2] - d[5], d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    sh = 13 - 2 if first else 13 + 2
    out = [None] * 8
    out[0] = (t10 + t11) << 2 if first else _descale(t10 + t11, 2)
    out[4] = (t10 - t11) << 2 if first else _descale(t10 - t11, 2)
    z1 = (t12 + t13) * _C["0.541196100"]
    out[2] = _descale(z1 + t13 * _C["0.765366865"], sh)
    out[6] = _descale(z1 - t12 * _C["1.847759065"], sh)
    o7, o5, o3, o1 = _odd(t4, t5, t6, t7)
    out[7], out[5], out[3], out[1] = (_descale(v, sh) for v in (o7, o5, o3, o1))
    return torch.stack(out, -1)


def _idct_1d(d: Tensor, first: bool) -> Tensor:
    """One pass of jpeg_idct_islow along the last axis (int64)."""
    z1 = (d[..., 2] + d[..., 6]) * _C["0.541196100"]
    t2, t3 = z1 - d[..., 6] * _C["1.847759065"], z1 + d[..., 2] * _C["0.765366865"]
    t0, t1 = (d[..., 0] + d[..., 4]) << 13, (d[..., 0] - d[..., 4]) << 13
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = _odd(d[..., 7], d[..., 5], d[..., 3], d[..., 1])
    sh = 13 - 2 if first else 13 + 2 + 3
    return torch.stack([_descale(v, sh) for v in (t10 + o3, t11 + o2, t12 + o1, t13 + o0,
                                                  t13 - o0, t12 - o1, t11 - o2, t10 - o3)], -1)


def _jpeg_plane(p: Tensor, q: np.ndarray) -> Tensor:
    """Code and decode one plane ``[N, h, w]`` (multiples of 8) of integer samples as libjpeg does: islow
    forward DCT (scaled by 8), quantize ``(|c| + 4q) // 8q`` with the sign, dequantize, islow inverse DCT,
    + 128, clamp."""
    N, h, w = p.shape
    qt = torch.as_tensor(q, dtype=torch.int64, device=p.device)
    blocks = (p - 128).view(N, h // 8, 8, w // 8, 8).transpose(2, 3)  # [N, bh, bw, row, col]
    coef = _fdct_1d(_fdct_1d(blocks, True).transpose(-1, -2), False).transpose(-1, -2)
    coef = coef.sign() * ((coef.abs() + 4 * qt) // (8 * qt))
    back = _idct_1d(_idct_1d((coef * qt).transpose(-1, -2), True).transpose(-1, -2), False)
    return (back + 128).clamp(0, 255).transpose(2, 3).reshape(N, h, w)


def _jpeg_compression(x, quality, rng):
    """Baseline JPEG as PIL writes and reads it (libjpeg-turbo): YCbCr, chroma 4:2:0, islow DCT."""
    N, C, H, W = x.shape
    dev = x.device
    u = torch.round(x * 255).long()
    qy, qc = _qtable(_QY, quality), _qtable(_QC, quality)

    def pad(t: Tensor, dim: int, m: int) -> Tensor:  # repeat the last row (column) up to a multiple of m
        n = t.shape[dim]
        return t.index_select(dim, torch.arange(n + -n % m, device=dev).clamp(max=n - 1))

    if C == 1:
        return _jpeg_plane(pad(pad(u[:, 0], 1, 8), 2, 8), qy)[:, None, :H, :W].float() / 255
    # libjpeg pads columns to twice the chroma blocks before subsampling, rows to even, and the
    # subsampled chroma rows to whole blocks
    u = pad(pad(u, 3, 16), 2, 2)
    r, g, b = u[:, 0], u[:, 1], u[:, 2]
    half, off = 1 << 15, 128 << 16
    y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + half) >> 16
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + off + half - 1) >> 16
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + off + half - 1) >> 16
    h2, w2 = y.shape[1] // 2, y.shape[2] // 2
    bias = (torch.arange(w2, device=dev) % 2 + 1).view(1, 1, w2)

    def down(c: Tensor) -> Tensor:  # 2x2 sums plus the bias 1, 2, 1, 2, ... then >> 2
        return pad((c.view(N, h2, 2, w2, 2).sum((2, 4)) + bias) >> 2, 1, 8)

    def up(c: Tensor) -> Tensor:  # the real chroma samples only; 3/4, 1/4 per axis, edges repeated
        c = c[:, :(H + 1) // 2, :(W + 1) // 2]
        h, w = c.shape[1:]
        above = c[:, torch.arange(-1, h - 1, device=dev).clamp(min=0)]
        below = c[:, torch.arange(1, h + 1, device=dev).clamp(max=h - 1)]
        rows = torch.stack([3 * c + above, 3 * c + below], 2).reshape(N, 2 * h, w)
        left = rows[..., torch.arange(-1, w - 1, device=dev).clamp(min=0)]
        right = rows[..., torch.arange(1, w + 1, device=dev).clamp(max=w - 1)]
        out = torch.stack([(3 * rows + left + 8) >> 4, (3 * rows + right + 7) >> 4], 3).reshape(N, 2 * h, 2 * w)
        return out[:, :H, :W] - 128

    y = _jpeg_plane(pad(y, 1, 8), qy)[:, :H, :W]
    cb, cr = up(_jpeg_plane(down(cb), qc)), up(_jpeg_plane(down(cr), qc))
    r = y + ((_fix(1.402) * cr + half) >> 16)
    g = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + half) >> 16)
    b = y + ((_fix(1.772) * cb + half) >> 16)
    return torch.stack([r, g, b], 1).clamp(0, 255).float() / 255


def _elastic_transform(x, p, rng):
    N, C, H, W = x.shape
    alpha, sigma, spread = (f * H for f in p)  # make_cifar_c: IMSIZE * fraction
    dev = x.device
    # a random affine map moving three points of a central square (OpenCV's getAffineTransform and
    # warpAffine with bilinear sampling and reflect-101 border)
    c, s = H // 2, min(H, W) // 3
    src = torch.tensor([[c + s, c + s], [c + s, c - s], [c - s, c - s]], dtype=torch.float64, device=dev)
    dst = (src.float() + (-spread + 2 * spread * rng.uniform(0, 3, 2).double()).float()).double()  # float32 points
    A = torch.cat([src, torch.ones(3, 1, dtype=torch.float64, device=dev)], 1)
    M = torch.linalg.solve(A, dst).transpose(1, 2)  # [N, 2, 3]: dst = M [x, y, 1]
    lin = torch.linalg.inv(M[:, :, :2])
    shift = -(lin @ M[:, :, 2:])
    gy, gx = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float64),
                            torch.arange(W, device=dev, dtype=torch.float64), indexing="ij")
    sx = lin[:, 0, 0, None, None] * gx + lin[:, 0, 1, None, None] * gy + shift[:, 0, 0, None, None]
    sy = lin[:, 1, 0, None, None] * gx + lin[:, 1, 1, None, None] * gy + shift[:, 1, 0, None, None]
    x = _bilinear(x, sy, sx, "reflect101")
    # then a smooth random displacement field (scipy's map_coordinates, order 1, mode "reflect")
    u = -1 + 2 * rng.uniform(1, 2, H, W).double()  # dx's field, then dy's
    field = (_gaussian(u, sigma, truncate=3, mode="symmetric") * alpha).float().double()
    dx, dy = field[:, 0], field[:, 1]
    return _bilinear(x, gy + dy, gx + dx, "symmetric")


_OPS: dict[str, Callable[[Tensor, object, _Rng], Tensor]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise, "gaussian_blur": _gaussian_blur, "glass_blur": _glass_blur,
    "defocus_blur": _defocus_blur, "motion_blur": _motion_blur, "zoom_blur": _zoom_blur, "snow": _snow,
    "fog": _fog, "brightness": _brightness, "contrast": _contrast, "saturate": _saturate, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression, "elastic_transform": _elastic_transform,
}


# ------------------------------------------------------------------ public API
def list_corruptions(family: str | None = None, channels: int = 3) -> list[str]:
    """Names of the corruptions, in the paper's order (figure 1, then the held-out ones).

    Args:
        family: ``"noise"``, ``"blur"``, ``"weather"`` or ``"digital"``; None lists all.
        channels: 3, or 1 for grey images (all but ``saturate``).
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown corruption family {family!r}; valid families: {', '.join(FAMILIES)}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    names = [n for f, ns in FAMILIES.items() if family in (None, f) for n in ns]
    return [n for n in names if channels == 3 or n in _GREY_OK]


def _index(index, n: int, device: torch.device) -> Tensor:
    if index is None:
        return torch.arange(n, device=device)
    idx = torch.as_tensor(index, device=device)
    if idx.dtype in (torch.float16, torch.float32, torch.float64, torch.bool) or idx.shape != (n,):
        raise ValueError(f"index must hold one integer per image ({n}), got {idx.dtype} of shape {tuple(idx.shape)}")
    if n and (int(idx.min()) < 0 or int(idx.max()) > _M32):
        raise ValueError("index values must lie in 0 .. 2**32 - 1 (they are the images' positions in their dataset)")
    return idx.long()


def _check(name: str, severity: int, channels: int) -> None:
    if name not in _OPS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(list_corruptions())}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an integer 0..5 (0 leaves the images unchanged), got {severity!r}")
    if channels == 1 and name not in _GREY_OK:
        raise ValueError(f"{name} needs 3-channel images (hue and saturation are undefined for grey); the "
                         f"corruptions for 1-channel images are: {', '.join(list_corruptions(channels=1))}")


def corrupt(images: Tensor, name: str, severity: int, seed: int = 0, index: Sequence[int] | Tensor | None = None
            ) -> Tensor:
    """Apply a CIFAR-10-C corruption to a batch, on the images' device.

    Args:
        images: uint8 ``[N, C, H, W]``, C = 1 or 3.
        name: one of :func:`list_corruptions`.
        severity: 0 (the images unchanged) to 5, with the CIFAR-10-C constants (:data:`SEVERITIES`).
        seed: the random draws (noise, angles, fractals) of image ``i`` are a function of
            ``(seed, index[i])`` alone.
        index: each image's position in its dataset (default ``0..N-1``); pass the positions of a
            subset to get the same pixels as corrupting the whole set.

    Returns:
        uint8 ``[N, C, H, W]``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), a severity outside 0..5, or
            ``saturate`` on grey images. TypeError: images not uint8.

    Example:
        >>> fogged = corrupt(wb.load("cifar10", "test").images, "fog", 3)
    """
    validate_images(images)
    _check(name, severity, images.shape[1])
    idx = _index(index, len(images), images.device)
    if severity == 0:
        return images.clone()
    p = SEVERITIES[name][severity - 1]
    out = torch.empty_like(images)
    for a in range(0, len(images), _CHUNK):
        x = images[a:a + _CHUNK].float() / 255
        out[a:a + _CHUNK] = _quantize(_OPS[name](x, p, _Rng(seed, idx[a:a + _CHUNK], name)))
    return out


# ------------------------------------------------------------------ appearance shifts (for the shifted datasets)
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)


def _grating(rng: _Rng, stream: int, H: int, W: int, period: tuple[float, float]) -> Tensor:
    """One oriented sinusoid per image ``[N, 1, H, W]`` in [-1, 1]: period, orientation and phase random."""
    u = rng.uniform(stream, 3)
    per = period[0] + (period[1] - period[0]) * u[:, 0]
    ang, phase = math.pi * u[:, 1], 2 * math.pi * u[:, 2]
    gy = torch.arange(H, device=u.device, dtype=torch.float32).view(1, H, 1)
    gx = torch.arange(W, device=u.device, dtype=torch.float32).view(1, 1, W)
    t = (gx * torch.cos(ang).view(-1, 1, 1) + gy * torch.sin(ang).view(-1, 1, 1)) / per.view(-1, 1, 1)
    return torch.cos(2 * math.pi * t + phase.view(-1, 1, 1))[:, None]


def _checked(images: Tensor, index, channels: tuple[int, ...]) -> Tensor:
    validate_images(images)
    if images.shape[1] not in channels:
        raise ValueError(f"this shift takes {' or '.join(map(str, channels))}-channel images, got {images.shape[1]}")
    return _index(index, len(images), images.device)


def style_shift(images: Tensor, seed: int = 0, index: Sequence[int] | Tensor | None = None) -> Tensor:
    """A fixed colour-and-style change of colour images, content (edges, shapes, layout) intact.

    Per image, with draws that depend on ``(seed, index)`` only: the hue rotated by an angle in
    [90, 270] degrees (a rotation of the chroma plane of YIQ, luma kept), a gamma in [0.5, 2]
    (log-uniform), the contrast scaled by a factor in [0.6, 1] about the image mean, and an oriented
    sinusoidal grating of period 4-8 pixels and amplitude 0.06 added to every channel (a texture).
    Grey pixels stay grey. Used by the ``cifar10_shifted`` dataset (IBN-Net's appearance shift,
    Pan et al. 2018, arXiv:1807.09441).
    """
    idx = _checked(images, index, (3,))
    out = torch.empty_like(images)
    for a in range(0, len(images), _CHUNK):
        rng = _Rng(seed, idx[a:a + _CHUNK], "style_shift")
        x = images[a:a + _CHUNK].float() / 255
        u = rng.uniform(0, 3)
        theta = math.pi / 2 + math.pi * u[:, 0].double()
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(len(x), 3, 3, dtype=torch.float64, device=x.device)
        rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
        yiq = _YIQ.to(x.device)
        m = (torch.linalg.inv(yiq) @ rot @ yiq).float()  # [n, 3, 3]: rotate the chroma plane, keep luma
        x = (m @ x.flatten(2)).view_as(x).clamp(0, 1)
        x = x ** torch.exp(math.log(2) * (2 * u[:, 1] - 1)).view(-1, 1, 1, 1)
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * (0.6 + 0.4 * u[:, 2]).view(-1, 1, 1, 1) + mean
        x = x + 0.06 * _grating(rng, 1, *x.shape[-2:], (4.0, 8.0))
        out[a:a + _CHUNK] = torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    return out


def invert(images: Tensor) -> Tensor:
    """``255 - images``: dark garments on a light ground for Fashion-MNIST (``fashion_mnist_inverted``)."""
    validate_images(images)
    return 255 - images


def texture_overlay(images: Tensor, seed: int = 0, index: Sequence[int] | Tensor | None = None,
                    strength: float = 0.6) -> Tensor:
    """A textured background behind bright objects on a dark ground (``fashion_mnist_textured``).

    Per image, a plaid texture (the mean of two sinusoidal gratings of period 3-7 pixels at random
    orientations) scaled to 0 .. 255 ``strength`` is laid under the image: ``max(image, texture)``.
    The dark background takes the texture; object pixels brighter than 255 ``strength`` are unchanged.
    """
    idx = _checked(images, index, (1, 3))
    if not 0 < strength <= 1:
        raise ValueError(f"strength must lie in (0, 1], got {strength}")
    out = torch.empty_like(images)
    H, W = images.shape[-2:]
    for a in range(0, len(images), _CHUNK):
        rng = _Rng(seed, idx[a:a + _CHUNK], "texture_overlay")
        t = (2 + _grating(rng, 0, H, W, (3.0, 7.0)) + _grating(rng, 1, H, W, (3.0, 7.0))) / 4
        t = torch.round(t * strength * 255).to(torch.uint8)
        out[a:a + _CHUNK] = torch.maximum(images[a:a + _CHUNK], t)
    return out
