"""Retina-like fundus images with graded lesions: a stand-in for diabetic retinopathy screening.

Castilla, Martínez, Leguía, Larrabide and Orlando 2022 ("A ResNet is All You Need? Modeling A Strong
Baseline for Detecting Referable Diabetic Retinopathy in Fundus Images", arXiv:2210.03180) train a plain
ResNet-18 on colour fundus photographs pooled from public datasets, with a standard preprocessing and a
calibrated augmentation, and detect *referable* diabetic retinopathy (grade >= 2 of the 0-4 scale). No
fundus photographs can be had here, so this module draws images that keep the task's structure:

* a round field of view on black (its radius and centre vary a little), an orange-red background with
  vignetting, an illumination gradient and a faint choroidal texture;
* an optic disc (bright, left or right: the eye), a darker macula, and a vessel tree growing from the
  disc (thick arcades and thinner side branches);
* **camera differences**: per-image channel gains (colour cast), brightness, gamma, focus blur and noise;
* **lesions whose kind and number set the grade** (a simplified international scale):
  0 none; 1 microaneurysms only; 2 more microaneurysms, haemorrhages and hard exudates; 3 many
  haemorrhages, exudates and cotton-wool spots; 4 as 3 plus new vessels near the disc and, in half the
  cases, a large pre-retinal haemorrhage;
* **distractors** of every grade: dark dust spots of the camera (grey, not red) and bright light reflexes.

Images are drawn at twice the requested side and averaged down (``area``), so a microaneurysm of one
render pixel survives only as a faint tint at the final size: small lesions are hard to see at low
resolution, as they are in downsampled photographs. Referable (grade >= 2) images make up about 25% of a
set by default (:data:`GRADE_PRIOR`).

:func:`local_contrast_normalize` is the common "Graham" preprocessing of fundus images (subtract a
Gaussian-blurred copy, scale up, add mid-grey, keep the inner part of the disc); :func:`preprocess`
applies it to a dataset. :func:`load_fundus_hub` reads a real fundus dataset from the Hugging Face hub on
a connected machine (never at import time).

>>> train = wb.data.load("retina", "train")                 # doctest: +SKIP   referable yes/no, 64x64
>>> graded = make_retina(500, seed=3, label="grade")        # doctest: +SKIP   grades 0-4
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch
import torch.nn.functional as F

from . import register_dataset
from .dataset import ImageDataset
from .sources import DataUnavailableError

__all__ = ["GRADES", "GRADE_PRIOR", "REFERABLE_FROM", "make_retina", "local_contrast_normalize", "preprocess",
           "dataset_stats", "load_fundus_hub", "referable"]

GRADES = ["no DR", "mild", "moderate", "severe", "proliferative"]
GRADE_PRIOR = (0.60, 0.15, 0.15, 0.05, 0.05)  # referable (grade >= 2): 25%
REFERABLE_FROM = 2
RETINA_VERSION = 1
_CHUNK = 64


def _u(shape, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _counts(grades: torch.Tensor, table: dict[int, tuple[int, int]], g: torch.Generator) -> torch.Tensor:
    """A count per image drawn uniformly from ``table[grade] = (lo, hi)`` (inclusive); 0 for grades not in it."""
    lo = torch.tensor([table.get(k, (0, 0))[0] for k in range(5)])[grades]
    hi = torch.tensor([table.get(k, (0, 0))[1] for k in range(5)])[grades]
    return lo + (torch.rand(len(grades), generator=g) * (hi - lo + 1)).floor().long().clamp_max(hi - lo)


def _spots(n: int, count: torch.Tensor, kmax: int, ys: torch.Tensor, xs: torch.Tensor, centre: torch.Tensor,
           radius: torch.Tensor, size: tuple[float, float], px: float, g: torch.Generator, soft: float = 1.0,
           near: torch.Tensor | None = None, spread: float = 0.0) -> torch.Tensor:
    """Coverage ``[n, 1, R, R]`` in [0, 1] (``ys``, ``xs``: the pixels' coordinates ``[R]``) of up to
    ``kmax`` round spots per image (``count`` of them), radius
    ``size`` (render pixels), placed uniformly in the inner 85% of the disc (or around ``near`` within
    ``spread``); ``soft`` widens the edge (pixels)."""
    k = min(int(count.max()) if len(count) else 0, int(kmax))
    if k == 0:
        return torch.zeros(n, 1, len(ys), len(xs))
    if near is None:
        rr = 0.85 * radius[:, None] * torch.sqrt(torch.rand(n, k, generator=g))
        th = _u((n, k), 0, 2 * math.pi, g)
        cy, cx = centre[:, None, 0] + rr * torch.sin(th), centre[:, None, 1] + rr * torch.cos(th)
    else:
        cy = near[:, None, 0] + spread * torch.randn(n, k, generator=g)
        cx = near[:, None, 1] + spread * torch.randn(n, k, generator=g)
    rad = _u((n, k), *size, g) * px
    rad = torch.where(torch.arange(k)[None] < count[:, None], rad, -10.0)         # spots beyond the count: none
    d2 = (ys[None, None, :, None] - cy[..., None, None]) ** 2 + (xs[None, None, None, :] - cx[..., None, None]) ** 2
    cover = ((rad[..., None, None] - d2.sqrt()) / (soft * px) + 0.5).amax(1, keepdim=True)
    return cover.clamp(0, 1)                                                       # [n, 1, R, R]


def _curves(start: torch.Tensor, angle: torch.Tensor, length: torch.Tensor, bend: torch.Tensor, wiggle: float,
            steps: int, g: torch.Generator) -> torch.Tensor:
    """Points ``[n, V, steps, 2]`` (y, x) of curves from ``start`` ``[n, V, 2]``: heading ``angle`` turning by
    ``bend`` per unit length plus a random wiggle."""
    n, v = angle.shape
    ds = (length / steps)[..., None]                                                # [n, V, 1]
    turn = bend[..., None] * ds + wiggle * torch.randn(n, v, steps, generator=g) * ds.sqrt()
    heading = angle[..., None] + turn.cumsum(-1)
    dy, dx = torch.sin(heading) * ds, torch.cos(heading) * ds
    return start[:, :, None] + torch.stack([dy.cumsum(-1), dx.cumsum(-1)], -1)


def _rasterize(points: torch.Tensor, r: int, thick: int) -> torch.Tensor:
    """Mask ``[n, 1, r, r]`` of curve points (normalized coordinates in [-1, 1]) dilated ``thick`` times."""
    n = points.shape[0]
    pix = ((points.reshape(n, -1, 2) + 1) / 2 * (r - 1)).round().long()
    ok = ((pix >= 0) & (pix < r)).all(-1)
    flat = (pix[..., 0].clamp(0, r - 1) * r + pix[..., 1].clamp(0, r - 1))
    m = torch.zeros(n, r * r)
    m.scatter_(1, flat, ok.float())
    m = m.view(n, 1, r, r)
    for _ in range(thick):
        m = F.max_pool2d(m, 3, 1, 1)
    return m


def _draw(grades: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Float images ``[n, 3, size, size]`` in [0, 1] of the given grades."""
    from kornia.filters import gaussian_blur2d

    n, r = len(grades), 2 * size
    px = 2 / r                                                                      # one render pixel, normalized
    lin = torch.linspace(-1, 1, r)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")                                # [R, R] each
    # the field of view
    radius = _u(n, 0.86, 0.96, g)
    centre = _u((n, 2), -0.03, 0.03, g)
    dist = torch.sqrt((yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2)
    disc = ((radius[:, None, None] - dist) / px + 0.5).clamp(0, 1)[:, None]        # [n, 1, R, R]
    rel = (dist / radius[:, None, None])[:, None]
    # background: orange-red, vignetting, illumination gradient, choroidal texture
    base = torch.tensor([0.80, 0.38, 0.17]).view(1, 3, 1, 1) * (1 + _u((n, 3, 1, 1), -0.08, 0.08, g))
    vignette = 1 - _u((n, 1, 1, 1), 0.2, 0.5, g) * rel ** 2
    phi = _u((n, 1, 1, 1), 0, 2 * math.pi, g)
    light = 1 + _u((n, 1, 1, 1), 0, 0.3, g) * (xx * torch.cos(phi) + yy * torch.sin(phi))
    coarse = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    texture = 1 + 0.05 * F.interpolate(coarse, size=(r, r), mode="bicubic", align_corners=False)
    img = base * vignette * light * texture
    # optic disc (left or right eye) and macula
    side = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    od = torch.stack([centre[:, 0] + _u(n, -0.08, 0.08, g), centre[:, 1] + side * 0.45 * radius], 1)
    od_r = 0.12 * radius * _u(n, 0.85, 1.15, g)
    d_od = torch.sqrt((yy[None] - od[:, 0, None, None]) ** 2 + (xx[None] - od[:, 1, None, None]) ** 2)
    od_w = torch.sigmoid((od_r[:, None, None] - d_od) / (0.25 * od_r[:, None, None]))[:, None]
    img = img + od_w * torch.tensor([0.30, 0.35, 0.25]).view(1, 3, 1, 1)
    mac = torch.stack([centre[:, 0], centre[:, 1] - side * 0.05 * radius], 1)
    d_mac = (yy[None] - mac[:, 0, None, None]) ** 2 + (xx[None] - mac[:, 1, None, None]) ** 2
    img = img * (1 - 0.25 * torch.exp(-d_mac / (2 * 0.12 ** 2)))[:, None]
    # vessels: 8 trunks from the disc, 10 branches from points along them
    v = 8
    ang = (torch.arange(v) * 2 * math.pi / v)[None] + _u((n, v), -0.3, 0.3, g)
    trunks = _curves(od[:, None].expand(n, v, 2), ang, _u((n, v), 0.7, 1.3, g) * radius[:, None],
                     _u((n, v), -1.2, 1.2, g), 1.5, 48, g)
    b = 10
    pick = torch.randint(0, v, (n, b), generator=g)
    at = torch.randint(10, 40, (n, b), generator=g)
    starts = trunks[torch.arange(n)[:, None], pick, at]                              # [n, b, 2]
    prev = trunks[torch.arange(n)[:, None], pick, at - 1]
    head = torch.atan2(starts[..., 0] - prev[..., 0], starts[..., 1] - prev[..., 1])
    head = head + torch.where(torch.rand(n, b, generator=g) < 0.5, -1.0, 1.0) * _u((n, b), 0.4, 0.9, g)
    branches = _curves(starts, head, _u((n, b), 0.2, 0.5, g), _u((n, b), -2, 2, g), 2.0, 24, g)
    vessel = torch.maximum(_rasterize(trunks, r, 1), 0.6 * _rasterize(branches, r, 0))
    vessel = gaussian_blur2d(vessel, 3, (0.6, 0.6))
    img = img * (1 - vessel * torch.tensor([0.30, 0.55, 0.55]).view(1, 3, 1, 1))
    # lesions by grade
    strength = _u((n, 1, 1, 1), 0.4, 1.0, g)                                        # how visible this eye's lesions are
    red = strength * torch.tensor([0.45, 0.70, 0.65]).view(1, 3, 1, 1)              # darkening: dark red
    ma = _counts(grades, {1: (1, 5), 2: (3, 10), 3: (5, 15), 4: (5, 15)}, g)
    img = img * (1 - red * _spots(n, ma, 15, lin, lin, centre, radius, (0.8, 1.3), px, g))
    he = _counts(grades, {2: (1, 4), 3: (8, 20), 4: (4, 15)}, g)
    img = img * (1 - red * _spots(n, he, 20, lin, lin, centre, radius, (1.5, 3.5), px, g, soft=1.5))
    ex = _counts(grades, {2: (0, 8), 3: (0, 15), 4: (0, 12)}, g)
    ex_near = mac + 0.25 * radius[:, None] * torch.randn(n, 2, generator=g).clamp(-1.5, 1.5)
    exud = _spots(n, ex, 15, lin, lin, centre, radius, (0.8, 2.0), px, g, near=ex_near, spread=0.12)
    img = img + exud * (torch.tensor([0.95, 0.85, 0.30]).view(1, 3, 1, 1) - img) * 0.8 * strength
    cw = _counts(grades, {3: (1, 4), 4: (0, 3)}, g)
    cws = _spots(n, cw, 4, lin, lin, centre, radius, (3.0, 5.0), px, g, soft=4.0)
    img = img + cws * (torch.tensor([0.92, 0.82, 0.70]).view(1, 3, 1, 1) - img) * 0.45
    nv_on = grades == 4
    nv = _curves(od[:, None].expand(n, 6, 2), _u((n, 6), 0, 2 * math.pi, g), _u((n, 6), 0.08, 0.2, g),
                 _u((n, 6), -3, 3, g), 12.0, 24, g)
    nv_mask = _rasterize(nv, r, 0) * nv_on.view(n, 1, 1, 1)
    img = img * (1 - 0.5 * nv_mask * torch.tensor([0.40, 0.70, 0.70]).view(1, 3, 1, 1))
    pre = (nv_on & (torch.rand(n, generator=g) < 0.5)).long()
    img = img * (1 - 0.8 * red * _spots(n, pre, 1, lin, lin, centre, radius, (6.0, 10.0), px, g, soft=2.0))
    # distractors of every grade: grey dust spots of the camera, bright reflexes
    dust = (torch.rand(n, generator=g) < 0.3).long() * torch.randint(1, 3, (n,), generator=g)
    img = img * (1 - 0.35 * _spots(n, dust, 2, lin, lin, centre, radius, (1.0, 2.5), px, g, soft=1.5))
    refl = (torch.rand(n, generator=g) < 0.3).long() * torch.randint(1, 4, (n,), generator=g)
    img = img + 0.25 * _spots(n, refl, 3, lin, lin, centre, radius, (1.0, 2.5), px, g, soft=2.0)
    # the camera: colour cast, brightness, gamma, focus, noise; black outside the field of view
    img = img * _u((n, 3, 1, 1), 0.8, 1.2, g) * _u((n, 1, 1, 1), 0.65, 1.15, g)
    img = img.clamp(0, 1) ** _u((n, 1, 1, 1), 0.8, 1.25, g)
    sigma = _u(n, 0.3, 1.2, g)[:, None].expand(n, 2).contiguous()
    img = gaussian_blur2d(img, 7, sigma)
    img = F.interpolate(img * disc, size=(size, size), mode="area")
    inside = F.interpolate(disc, size=(size, size), mode="area")
    noise = _u((n, 1, 1, 1), 0.005, 0.025, g) * torch.randn(n, 3, size, size, generator=g)
    return (img + noise * inside).clamp(0, 1)


def _generate(n: int, seed: int, size: int, prior: tuple[float, ...]) -> dict:
    g = torch.Generator().manual_seed(seed)
    grades = torch.multinomial(torch.tensor(prior, dtype=torch.float64), n, replacement=True, generator=g)
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    order = torch.argsort(grades, stable=True)  # chunks of one grade: no lesion planes for grade 0
    for start in range(0, n, _CHUNK):
        idx = order[start:start + _CHUNK]
        images[idx] = (_draw(grades[idx], size, g) * 255).round().to(torch.uint8)
    return {"images": images, "grades": grades}


def _check_prior(prior) -> tuple[float, ...]:
    p = tuple(float(x) for x in prior)
    if len(p) != 5 or min(p) < 0 or abs(sum(p) - 1) > 1e-6:
        raise ValueError(f"prior must be 5 non-negative probabilities of the grades 0-4 summing to 1, got {prior!r}")
    return p


def make_retina(n: int, seed: int = 0, size: int = 64, label: str = "referable",
                prior: Sequence[float] = GRADE_PRIOR, split: str = "train") -> ImageDataset:
    """``n`` generated fundus-like images (uint8 ``[n, 3, size, size]``), deterministic per ``seed``.

    Args:
        n: how many images.
        seed: the draw (the same seed, size and prior always give the same images, whatever ``label``).
        size: side in pixels (drawn at twice that and averaged down); at least 16.
        label: ``"referable"`` (2 classes: grade < 2, grade >= 2) or ``"grade"`` (5 classes, :data:`GRADES`).
        prior: probabilities of the grades 0-4 (default :data:`GRADE_PRIOR`, 25% referable).
        split: the name recorded in the dataset.

    Returns:
        :class:`ImageDataset` named ``retina`` (or ``retina_grades``); cached on disk.

    Raises:
        ValueError: a bad ``n``, ``size``, ``label`` or ``prior``.
    """
    from ..cache import cached

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer of at least 16 pixels, got {size!r}")
    if label not in ("referable", "grade"):
        raise ValueError(f"label must be 'referable' or 'grade', got {label!r}")
    p = _check_prior(prior)
    out = cached(lambda: _generate(n, int(seed), size, p), key={"n": n, "seed": int(seed), "size": size, "prior": p},
                 name="retina", version=RETINA_VERSION)
    grades = out["grades"].long()
    source = f"generated: retina-like fundus images, seed {seed}, grade prior {p}"
    if label == "grade":
        return ImageDataset(out["images"], grades, list(GRADES), "retina_grades", split, *_STATS, source)
    return ImageDataset(out["images"], referable(grades), ["non-referable", "referable"], "retina", split, *_STATS,
                        source)


def referable(grades: torch.Tensor) -> torch.Tensor:
    """Referable diabetic retinopathy: 1 where ``grade >= 2`` (moderate or worse), else 0 (int64)."""
    grades = torch.as_tensor(grades)
    if grades.is_floating_point() or (len(grades) and (int(grades.min()) < 0 or int(grades.max()) > 4)):
        raise ValueError("grades must be integers 0-4")
    return (grades >= REFERABLE_FROM).long()


# per-channel mean and std of the generator's images (dataset_stats of make_retina(2000, seed=0, size=64); at 48
# pixels they are within 0.011)
_STATS = ((0.363, 0.167, 0.076), (0.297, 0.143, 0.069))


def local_contrast_normalize(images: torch.Tensor, sigma: float | None = None, gain: float = 4.0,
                             keep: float = 0.9) -> torch.Tensor:
    """The "Graham" preprocessing of fundus photographs: ``0.5 + gain * (x - blur(x))`` per channel, clipped
    to [0, 1], then black outside ``keep`` times the field of view's radius (the blur's dark rim is cut).

    The field of view (centre and radius) is found per image from the pixels brighter than 4% of full scale.
    Illumination, vignetting and colour cast vary slowly, so the blur holds them and the difference keeps the
    small structures: vessels, lesions.

    Args:
        images: uint8 ``[N, 3, H, W]``.
        sigma: the Gaussian's standard deviation in pixels (default: the field of view's radius / 8, a
            larger share than the radius / 30 used on 512-pixel photographs, since at 64 pixels that would be
            under one pixel).
        gain: how much the local differences are scaled up.
        keep: the fraction of the radius kept.

    Returns:
        uint8 ``[N, 3, H, W]``.
    """
    from kornia.filters import gaussian_blur2d

    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4
            and images.shape[1] == 3):
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor [N, 3, H, W], got {got}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    n, _, h, w = images.shape
    x = images.float() / 255
    fov = (x.amax(1) > 0.04).float()                                                # [N, H, W]
    area = fov.sum((1, 2)).clamp_min(1)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    cy, cx = (fov * yy).sum((1, 2)) / area, (fov * xx).sum((1, 2)) / area
    rad = torch.sqrt(area / math.pi)
    s = float(sigma) if sigma is not None else max(float(rad.mean()) / 8, 0.5)
    if s <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    k = 2 * math.ceil(3 * s) + 1
    blur = gaussian_blur2d(x, (k, k), (s, s), border_type="replicate")
    out = (0.5 + gain * (x - blur)).clamp(0, 1)
    inner = ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2 <= (keep * rad[:, None, None]) ** 2)
    out = out * inner[:, None]
    return (out * 255).round().to(torch.uint8)


def dataset_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units."""
    x = images.float() / 255
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).clamp_min(1e-3).tolist())


def preprocess(ds: ImageDataset, sigma: float | None = None, gain: float = 4.0, keep: float = 0.9,
               stats: tuple | None = None) -> ImageDataset:
    """``ds`` with :func:`local_contrast_normalize` applied and its normalization statistics replaced by
    ``stats`` (default: measured on the preprocessed images; pass the training set's to a test set)."""
    images = local_contrast_normalize(ds.images, sigma=sigma, gain=gain, keep=keep)
    mean, std = stats if stats is not None else dataset_stats(images)
    return ImageDataset(images, ds.labels, list(ds.classes), f"{ds.name}+lcn", ds.split, mean, std,
                        f"{ds.source}; local contrast normalization (sigma={sigma}, gain={gain}, keep={keep})")


def load_fundus_hub(repo: str, split: str = "train", size: int = 64, image_column: str = "image",
                    grade_column: str = "label", limit: int | None = None) -> ImageDataset:
    """A real fundus dataset from the Hugging Face hub, as referable / non-referable images of ``size`` pixels.

    Each photograph is cropped to the bounding box of its field of view (pixels brighter than 4% of full
    scale), padded to a square and resized; its grade (0-4, international scale) becomes referable =
    grade >= 2. Only on a connected machine: nothing is fetched at import time, and offline the call stops
    with a :class:`DataUnavailableError` that says what to do.

    Args:
        repo: the hub name of a dataset with an image column and a 0-4 grade column.
        split, image_column, grade_column: where the images and grades are.
        size: side of the resized images.
        limit: read only the first ``limit`` rows.
    """
    from ..cache import cached

    if not isinstance(repo, str) or "/" not in repo:
        raise ValueError(f"repo must be a hub dataset name 'owner/name', got {repo!r}")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DataUnavailableError(f"cannot fetch {repo} from the Hugging Face hub: HF_HUB_OFFLINE=1 (or "
                                   "HF_DATASETS_OFFLINE=1) is set; on a connected machine unset it and run again")
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataUnavailableError("loading from the hub needs the `datasets` package: pip install datasets") from None

    def fetch() -> dict:
        try:
            ds = load_dataset(repo, split=split if limit is None else f"{split}[:{int(limit)}]")
        except Exception as e:  # offline, unknown name, gated
            raise DataUnavailableError(f"could not load {repo} (split {split!r}) from the hub: {type(e).__name__}: "
                                       f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
        for col in (image_column, grade_column):
            if col not in ds.column_names:
                raise ValueError(f"{repo} has columns {', '.join(ds.column_names)}; pass image_column= and "
                                 f"grade_column= naming the image and the 0-4 grade")
        imgs, grades = [], []
        for row in ds:
            imgs.append(_crop_resize(row[image_column], size))
            grades.append(int(row[grade_column]))
        return {"images": torch.stack(imgs), "grades": torch.tensor(grades)}

    out = cached(fetch, key={"repo": repo, "split": split, "size": size, "limit": limit,
                             "columns": [image_column, grade_column]}, name="fundus_hub")
    return ImageDataset(out["images"], referable(out["grades"]), ["non-referable", "referable"], repo, split,
                        *dataset_stats(out["images"]), f"hub {repo}, cropped to the field of view, {size}px")


def _crop_resize(pil_image, size: int) -> torch.Tensor:
    import numpy as np

    x = torch.from_numpy(np.asarray(pil_image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    mask = x.amax(0) > 10
    if mask.any():
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        x = x[:, int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]
    h, w = x.shape[1:]
    side = max(h, w)
    x = F.pad(x, ((side - w) // 2, side - w - (side - w) // 2, (side - h) // 2, side - h - (side - h) // 2))
    small = F.interpolate(x[None].float(), size=(size, size), mode="area")[0]
    return small.round().clamp(0, 255).to(torch.uint8)


_SIZES = {"train": (6000, 0), "test": (3000, 1)}


@register_dataset("retina")
def _retina(split: str) -> ImageDataset:
    if split not in _SIZES:
        raise ValueError(f"retina has splits train, test, not {split!r}")
    n, seed = _SIZES[split]
    return make_retina(n, seed=seed, split=split)
