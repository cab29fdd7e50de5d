"""Letters of the Aramaic alphabet rendered from fonts: synthetic training data for a scarce script.

Deep Aramaic (Aioanei, Hunziker-Rodewald, Klein and Michels 2023, arXiv:2310.07310) trains a ResNet
only on generated images of the 22 letters of Old Aramaic (250,000 training images made from rendered
letters with texture, lighting, damage and augmentations) and classifies photographs of a real
inscription, the Hadad statue of the 8th century BCE (KAI 214), at 95% accuracy. No inscription
photographs are to be had here, so this module makes both sides:

* **training glyphs**: the 22 letters (aleph .. taw) rendered with PIL from *training fonts*, then, with
  ``augment=True``, the paper's kinds of augmentation, batched in torch: erosion or dilation of the
  strokes, smooth occluding blobs (damage), random affine and perspective warps, a textured background
  under a lighting gradient, blur and pixel noise. With ``augment=False`` each image is the clean render
  (black letter on white, centred), the unaugmented baseline.
* **"real-like" test glyphs**, made differently: *held-out fonts* (whole font families never used in
  training) and another rendering: strokes thickened as a chisel cuts them, chipped by round flakes,
  carved into a stone-textured surface and lit from a random side (shading from the groove's depth),
  then scanned at low resolution (blurred, down to 12-18 pixels and back up) with sensor noise.

So the train/test gap is real, of two kinds (font and making), and ``fonts=`` lets a notebook take
them apart (the real-like rendering of the training fonts isolates the making).

The 22 classes are the letters shared by the Phoenician, Old/Imperial Aramaic and Hebrew square
scripts (the square script *is* the Aramaic script as used from the 3rd century BCE). Fonts come from
Debian packages: ``fonts-noto-core`` (Noto Sans Imperial Aramaic U+10840-10855, Noto Sans Phoenician
U+10900-10915, Noto Sans Samaritan U+0800-0815, Noto Sans/Serif Hebrew U+05D0-05EA) and ``culmus``
(eleven Hebrew families). Install both with ``apt-get install -y fonts-noto-core culmus``; any other
font file covering one of these blocks can be passed by path.

>>> train = wb.data.load("glyphs", "train")            # doctest: +SKIP   augmented, 22 classes
>>> plain = wb.data.load("glyphs_plain", "train")      # doctest: +SKIP   clean renders
>>> test = wb.data.load("glyphs", "test")              # doctest: +SKIP   held-out fonts, real-like
>>> small = make_glyphs("train", n_per_class=50, augment=False, seed=3)   # doctest: +SKIP
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import register_dataset
from .dataset import ImageDataset
from .sources import DataUnavailableError

__all__ = ["LETTERS", "SCRIPTS", "GlyphFont", "FONTS", "TRAIN_FONTS", "TEST_FONTS", "find_font", "render_glyphs",
           "make_glyphs"]

LETTERS = ["aleph", "beth", "gimel", "daleth", "he", "waw", "zayin", "heth", "teth", "yodh", "kaph", "lamedh",
           "mem", "nun", "samekh", "ayin", "pe", "sadhe", "qoph", "resh", "shin", "taw"]

# code points of the 22 letters, aleph .. taw, per Unicode block (Hebrew: the non-final forms)
SCRIPTS: dict[str, tuple[int, ...]] = {
    "hebrew": (0x5D0, 0x5D1, 0x5D2, 0x5D3, 0x5D4, 0x5D5, 0x5D6, 0x5D7, 0x5D8, 0x5D9, 0x5DB, 0x5DC, 0x5DE, 0x5E0,
               0x5E1, 0x5E2, 0x5E4, 0x5E6, 0x5E7, 0x5E8, 0x5E9, 0x5EA),
    "imperial_aramaic": tuple(range(0x10840, 0x10856)),
    "phoenician": tuple(range(0x10900, 0x10916)),
    "samaritan": tuple(range(0x0800, 0x0816)),
}


@dataclass(frozen=True)
class GlyphFont:
    """A font file, the Debian package that ships it, and the Unicode block its letters are taken from."""

    name: str
    file: str
    package: str
    script: str


def _family(package: str, script: str, *files: str) -> list[GlyphFont]:
    return [GlyphFont(f.rsplit(".", 1)[0], f, package, script) for f in files]


_ALL = [
    *_family("fonts-noto-core", "imperial_aramaic", "NotoSansImperialAramaic-Regular.ttf"),
    *_family("fonts-noto-core", "phoenician", "NotoSansPhoenician-Regular.ttf"),
    *_family("fonts-noto-core", "samaritan", "NotoSansSamaritan-Regular.ttf"),
    *_family("fonts-noto-core", "hebrew", "NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf",
             "NotoSerifHebrew-Regular.ttf", "NotoSerifHebrew-Bold.ttf"),
    *_family("culmus", "hebrew", "DavidCLM-Medium.otf", "DavidCLM-Bold.otf", "DavidCLM-MediumItalic.otf",
             "FrankRuehlCLM-Medium.ttf", "FrankRuehlCLM-Bold.ttf", "FrankRuehlCLM-MediumOblique.ttf",
             "HadasimCLM-Regular.ttf", "HadasimCLM-Bold.ttf", "HadasimCLM-RegularOblique.ttf",
             "MiriamCLM-Book.ttf", "MiriamCLM-Bold.ttf", "MiriamMonoCLM-Book.ttf", "MiriamMonoCLM-Bold.ttf",
             "NachlieliCLM-Light.otf", "NachlieliCLM-Bold.otf", "SimpleCLM-Medium.ttf", "SimpleCLM-Bold.ttf",
             "KeterYG-Medium.ttf", "KeterYG-Bold.ttf", "KeterYG-MediumOblique.ttf",
             "ShofarRegular.ttf", "ShofarDemi-Bold.ttf", "StamAshkenazCLM.ttf", "StamSefaradCLM.ttf"),
]
FONTS: dict[str, GlyphFont] = {f.name: f for f in _ALL}

# whole families are held out: the test fonts share no design with the training fonts
_TEST_FAMILIES = ("NotoSerifHebrew", "KeterYG", "Shofar", "Stam")
TEST_FONTS: tuple[str, ...] = tuple(n for n in FONTS if n.startswith(_TEST_FAMILIES))
TRAIN_FONTS: tuple[str, ...] = tuple(n for n in FONTS if n not in TEST_FONTS and FONTS[n].script != "samaritan")

_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts", "/Library/Fonts",
              "~/Library/Fonts")
GLYPHS_VERSION = 1   # bump when the rendering changes: part of the cache key
_MEAN, _STD = (0.55,), (0.25,)


@functools.lru_cache(maxsize=None)
def _font_index(root: str) -> dict[str, Path]:
    """``{file name: path}`` of every font file under ``root`` (read once per process)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        return {}
    return {p.name: p for p in sorted(base.rglob("*")) if p.suffix.lower() in (".ttf", ".otf")}


def _font_dirs() -> list[str]:
    extra = os.environ.get("WORKBENCH_FONT_DIR")
    return ([extra] if extra else []) + list(_FONT_DIRS)


def find_font(font: str | Path | GlyphFont) -> Path:
    """The installed file of a font of :data:`FONTS` (by name), of a :class:`GlyphFont`, or a font file path.

    Searched in ``WORKBENCH_FONT_DIR`` (if set), then the system and user font folders.

    Raises:
        ValueError: an unknown font name (the message lists the known ones).
        DataUnavailableError: the font is not installed; the message names the Debian package.
    """
    f = _as_font(font)
    if Path(f.file).is_absolute() and Path(f.file).is_file():
        return Path(f.file)
    for _ in range(2):
        for root in _font_dirs():
            path = _font_index(root).get(f.file)
            if path is not None:
                return path
        _font_index.cache_clear()   # installed since the last look? read the folders once more
    raise DataUnavailableError(
        f"font {f.name!r} ({f.file}) is not installed: on Debian or Ubuntu run `sudo apt-get install -y {f.package}`, "
        f"or put {f.file} into a folder named by WORKBENCH_FONT_DIR")


def _as_font(font: str | Path | GlyphFont) -> GlyphFont:
    if isinstance(font, GlyphFont):
        if font.script not in SCRIPTS:
            raise ValueError(f"font {font.name!r} has script {font.script!r}; valid scripts: {', '.join(SCRIPTS)}")
        return font
    if isinstance(font, str) and font in FONTS:
        return FONTS[font]
    path = Path(font)
    if path.suffix.lower() in (".ttf", ".otf"):
        if not path.is_file():
            raise DataUnavailableError(f"font file {path} does not exist")
        script = next((s for s in SCRIPTS if not _missing_letters(path, s)), None)
        if script is None:
            raise ValueError(f"font file {path} covers none of the 22-letter blocks ({', '.join(SCRIPTS)}); "
                             "pass a font with Hebrew, Imperial Aramaic, Phoenician or Samaritan letters")
        return GlyphFont(path.stem, str(path), "(a local file)", script)
    raise ValueError(f"unknown font {font!r}; pass a path to a .ttf/.otf file, a GlyphFont, or one of: "
                     f"{', '.join(FONTS)}")


def _missing_letters(path: Path, script: str) -> list[str]:
    """Letters the font draws as its "missing glyph" box (or not at all)."""
    from PIL import ImageFont

    pil = ImageFont.truetype(str(path), size=48)
    notdef = _mask_bytes(pil, chr(0x10FFFD))  # a private-use code point no font maps: the .notdef glyph
    out = []
    for letter, cp in zip(LETTERS, SCRIPTS[script]):
        m = _mask_bytes(pil, chr(cp))
        if m is None or m == notdef:
            out.append(f"{letter} (U+{cp:04X})")
    return out


def _mask_bytes(pil, ch: str):
    mask = pil.getmask(ch)
    return None if mask.getbbox() is None else (mask.size, bytes(mask))


@functools.lru_cache(maxsize=64)
def _font_masks(font: GlyphFont, resolution: int) -> torch.Tensor:
    """The 22 letters of ``font`` as ink masks ``[22, R, R]`` in [0, 1]: one scale per font (the letters
    keep their relative sizes, so yodh stays small), each letter centred on its bounding box."""
    from PIL import Image, ImageDraw, ImageFont

    path = find_font(font)
    missing = _missing_letters(path, font.script)
    if missing:
        raise ValueError(f"font {font.name!r} ({path}) has no glyph for {', '.join(missing)} of the "
                         f"{font.script} block; choose a font that covers it")
    pil = ImageFont.truetype(str(path), size=4 * resolution)
    crops = []
    for cp in SCRIPTS[font.script]:
        left, top, right, bottom = pil.getbbox(chr(cp))
        im = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(im).text((4 - left, 4 - top), chr(cp), font=pil, fill=255)
        crops.append(im.crop(im.getbbox()))
    scale = 0.75 * resolution / max(max(c.size) for c in crops)
    out = torch.zeros(len(crops), resolution, resolution)
    for i, c in enumerate(crops):
        w, h = max(1, round(c.width * scale)), max(1, round(c.height * scale))
        small = torch.from_numpy(np.asarray(c.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32) / 255)
        top, left = (resolution - h) // 2, (resolution - w) // 2
        out[i, top:top + h, left:left + w] = small.clamp(0, 1)
    return out


def _require(fonts: Sequence[GlyphFont]) -> list[Path]:
    """The files of ``fonts``; one message naming every package to install when some are missing."""
    paths, missing = [], []
    for f in fonts:
        try:
            paths.append(find_font(f))
        except DataUnavailableError:
            missing.append(f)
    if missing:
        pkgs = sorted({f.package for f in missing})
        raise DataUnavailableError(
            f"{len(missing)} font(s) not installed ({', '.join(f.file for f in missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}): on Debian or Ubuntu run "
            f"`sudo apt-get install -y {' '.join(pkgs)}`, or put the files into a folder named by WORKBENCH_FONT_DIR")
    return paths


def _masks(fonts: Sequence[GlyphFont], resolution: int) -> torch.Tensor:
    _require(fonts)
    return torch.stack([_font_masks(f, resolution) for f in fonts])  # [F, 22, R, R]


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer of at least 8 pixels, got {size!r}")


def render_glyphs(fonts: Sequence[str | Path | GlyphFont] = TRAIN_FONTS, size: int = 32) -> torch.Tensor:
    """Clean renders: uint8 ``[len(fonts), 22, 1, size, size]``, a black letter on white, centred (the
    images ``make_glyphs(..., augment=False)`` draws from)."""
    _check_size(size)
    fs = [_as_font(f) for f in fonts]
    m = _masks(fs, 2 * size)
    ink = F.interpolate(m.flatten(0, 1)[:, None], size=(size, size), mode="area")
    return _to_uint8(1 - ink).view(len(fs), len(LETTERS), 1, size, size)


# -- batched image operations -------------------------------------------------------------------------

def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _morph(m: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Dilate (steps > 0) or erode (steps < 0) each mask by |steps| 3x3 max-filters."""
    out = m.clone()
    for k in steps.unique().tolist():
        sel = steps == k
        x = m[sel]
        for _ in range(abs(int(k))):
            x = F.max_pool2d(x, 3, 1, 1) if k > 0 else -F.max_pool2d(-x, 3, 1, 1)
        out[sel] = x
    return out


def _smooth_noise(n: int, cells: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random fields ``[n, 1, size, size]`` in [-1, 1]: uniform noise on a cells x cells grid,
    upsampled bicubically."""
    coarse = torch.rand(n, 1, cells, cells, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _u(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _warp(m: torch.Tensor, g: torch.Generator, rot: float, scale: tuple[float, float], shear: float, shift: float,
          corners: float) -> torch.Tensor:
    """A random homography per image: rotation (degrees), scale, shear, shift and corner jitter (as
    fractions of the side); ``corners > 0`` makes it a perspective warp."""
    from kornia.geometry.transform import get_perspective_transform, warp_perspective

    n, r = len(m), m.shape[-1]
    th = torch.deg2rad(_u(n, -rot, rot, g))
    s, sh = _u(n, *scale, g), _u(n, -shear, shear, g)
    a = torch.stack([torch.stack([torch.cos(th), -torch.sin(th)], -1),
                     torch.stack([torch.sin(th), torch.cos(th)], -1)], -2)            # [n, 2, 2]
    a = s[:, None, None] * a @ torch.stack([torch.ones(n), sh, torch.zeros(n), torch.ones(n)], -1).view(n, 2, 2)
    src = torch.tensor([[0.0, 0.0], [r - 1, 0.0], [r - 1, r - 1], [0.0, r - 1]]).expand(n, 4, 2)
    c = (r - 1) / 2
    t = (torch.rand(n, 1, 2, generator=g) * 2 - 1) * shift * r
    jitter = (torch.rand(n, 4, 2, generator=g) * 2 - 1) * corners * r
    dst = c + (src - c) @ a.transpose(1, 2) + t + jitter
    return warp_perspective(m, get_perspective_transform(src, dst), (r, r), align_corners=True)


def _augmented(m: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """The training augmentations on ink masks ``[n, 1, R, R]``; float images ``[n, 1, size, size]``."""
    from kornia.filters import gaussian_blur2d

    n, r = len(m), m.shape[-1]
    px = r / 64  # lengths below are given at a 64-pixel rendering
    m = _morph(m, torch.randint(-1, 3, (n,), generator=g))                        # erosion .. dilation
    damaged = torch.rand(n, 1, 1, 1, generator=g) < 0.6                             # occluding blobs
    thr = _u(n, 0.45, 0.95, g).view(n, 1, 1, 1)
    m = torch.where(damaged, m * (_smooth_noise(n, 6, r, g) < thr), m)
    m = _warp(m, g, rot=15, scale=(0.8, 1.1), shear=0.2, shift=0.08, corners=0.06)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    phi = _u(n, 0, 2 * math.pi, g).view(n, 1, 1, 1)
    light = 1 + _u(n, 0, 0.5, g).view(n, 1, 1, 1) * (xx * torch.cos(phi) + yy * torch.sin(phi)) / 2
    grain = (0.5 * _smooth_noise(n, 4, r, g) + 0.3 * _smooth_noise(n, 12, r, g)
             + 0.2 * (torch.rand(n, 1, r, r, generator=g) * 2 - 1))
    texture = 1 + _u(n, 0, 0.3, g).view(n, 1, 1, 1) * grain
    bg, contrast = _u(n, 0.45, 1.0, g).view(n, 1, 1, 1), _u(n, 0.4, 0.95, g).view(n, 1, 1, 1)
    img = bg * light * texture * (1 - contrast * m)
    sigma = _u(n, 0.05, 1.6, g)[:, None].expand(n, 2) * px
    img = gaussian_blur2d(img, 2 * math.ceil(3 * float(sigma.max())) + 1, sigma)
    img = F.interpolate(img, size=(size, size), mode="area")
    return img + _u(n, 0, 0.06, g).view(n, 1, 1, 1) * torch.randn(img.shape, generator=g)


def _real_like(m: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """The test set's making: chiselled (thickened) strokes, chips, carved into lit stone, scanned low-res."""
    from kornia.filters import gaussian_blur2d, spatial_gradient

    n, r = len(m), m.shape[-1]
    px = r / 64
    m = _morph(m, torch.randint(1, 3, (n,), generator=g))                          # the chisel's width
    m = _warp(m, g, rot=8, scale=(0.85, 1.0), shear=0.0, shift=0.05, corners=0.0)
    yy, xx = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32),
                            indexing="ij")
    for _ in range(3):                                                              # round flakes chipped off
        cy, cx = (_u(n, 0.2, 0.8, g) * r).view(n, 1, 1, 1), (_u(n, 0.2, 0.8, g) * r).view(n, 1, 1, 1)
        rad = (_u(n, 2, 6, g) * px).view(n, 1, 1, 1)
        hit = (torch.rand(n, 1, 1, 1, generator=g) < 0.5) & ((yy - cy) ** 2 + (xx - cx) ** 2 < rad ** 2)
        m = m * ~hit
    depth = gaussian_blur2d(m, 2 * math.ceil(4.5 * px) + 1, (1.5 * px, 1.5 * px))
    grad = spatial_gradient(depth, normalized=False)[:, 0] / 8 * (6 * 64 / r)      # [n, 2, R, R] per pixel
    normal = torch.cat([grad[:, :1], grad[:, 1:], torch.ones_like(depth)], 1)        # surface -depth: n = (dx, dy, 1)
    normal = normal / normal.norm(dim=1, keepdim=True)
    az, el = _u(n, 0, 2 * math.pi, g), torch.deg2rad(_u(n, 30, 60, g))
    light = torch.stack([torch.cos(az) * torch.cos(el), torch.sin(az) * torch.cos(el), torch.sin(el)], 1)
    lam = (normal * light.view(n, 3, 1, 1)).sum(1, keepdim=True).clamp_min(0)
    shade = (0.35 + 0.65 * lam) / (0.35 + 0.65 * torch.sin(el)).view(n, 1, 1, 1)
    speckle = gaussian_blur2d(torch.rand(n, 1, r, r, generator=g) * 2 - 1, 5, (0.7 * px, 0.7 * px))
    stone = _u(n, 0.5, 0.8, g).view(n, 1, 1, 1) * (1 + 0.5 * speckle + 0.1 * _smooth_noise(n, 3, r, g))
    img = stone * (1 - 0.3 * depth) * shade
    img = gaussian_blur2d(img, 2 * math.ceil(3 * px) + 1, (px, px))
    low = torch.randint(12, 19, (n,), generator=g)
    out = torch.empty(n, 1, size, size)
    for k in low.unique().tolist():                                                 # the scan's resolution
        sel = low == k
        small = F.interpolate(img[sel], size=(k, k), mode="area")
        out[sel] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return out + 0.02 * torch.randn(out.shape, generator=g)


# -- datasets -----------------------------------------------------------------------------------------

def _generate(fonts: list[GlyphFont], n_per_class: int, render: str, seed: int, size: int) -> dict:
    masks = _masks(fonts, 2 * size)                                                # [F, 22, R, R]
    g = torch.Generator().manual_seed(seed)
    n, nf, nc = n_per_class * len(LETTERS), len(fonts), len(LETTERS)
    idx = torch.arange(n)
    labels, font_of = idx % nc, (idx // nc) % nf                                     # balanced classes and fonts
    order = torch.randperm(n, generator=g)
    labels, font_of = labels[order], font_of[order]
    images = torch.empty(n, 1, size, size, dtype=torch.uint8)
    for start in range(0, n, 1024):
        sl = slice(start, start + 1024)
        m = masks[font_of[sl], labels[sl]][:, None]                                  # [b, 1, R, R]
        if render == "clean":
            x = 1 - F.interpolate(m, size=(size, size), mode="area")
        elif render == "augmented":
            x = _augmented(m, size, g)
        else:
            x = _real_like(m, size, g)
        images[sl] = _to_uint8(x)
    return {"images": images, "labels": labels, "fonts": font_of}


def make_glyphs(split: str = "train", n_per_class: int | None = None, augment: bool = True,
                fonts: Sequence[str | Path | GlyphFont] | None = None, seed: int | None = None,
                size: int = 32) -> ImageDataset:
    """Generated letter images, 22 balanced classes, 1 channel.

    Args:
        split: ``"train"`` (default fonts :data:`TRAIN_FONTS`, rendered with the augmentations or clean)
            or ``"test"`` (default fonts :data:`TEST_FONTS`, always the real-like making).
        n_per_class: images per letter (default 400 for train, 100 for test).
        augment: the training augmentations (True) or clean renders (False); for ``split="train"`` only.
        fonts: names of :data:`FONTS`, :class:`GlyphFont` objects or font file paths, replacing the
            split's default fonts (the real-like making of the training fonts isolates the rendering gap).
        seed: the images drawn (default 0 for train, 1 for test).
        size: side in pixels.

    Returns:
        :class:`ImageDataset` named ``glyphs`` (augmented) or ``glyphs_plain`` (clean), its ``source``
        naming the fonts and the rendering. Cached on disk (:func:`workbench.cached`).

    Raises:
        ValueError: an unknown split, font, or a bad size / count.
        DataUnavailableError: a font is not installed (the message names the apt package).
    """
    from ..cache import cached

    if split not in ("train", "test"):
        raise ValueError(f"glyphs has splits train, test, not {split!r}")
    if split == "test" and not augment:
        raise ValueError("augment= chooses the training rendering; the test split is always made real-like "
                         "(for clean renders of the test fonts use make_glyphs('train', augment=False, "
                         "fonts=TEST_FONTS))")
    _check_size(size)
    n_per_class = (400 if split == "train" else 100) if n_per_class is None else n_per_class
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    seed = (0 if split == "train" else 1) if seed is None else int(seed)
    fs = [_as_font(f) for f in (fonts if fonts is not None else (TRAIN_FONTS if split == "train" else TEST_FONTS))]
    if not fs:
        raise ValueError("fonts is empty; pass at least one font")
    render = "real" if split == "test" else ("augmented" if augment else "clean")
    paths = _require(fs)
    key = {"fonts": [[f.name, f.script, p.stat().st_size] for f, p in zip(fs, paths)], "n": n_per_class,
           "render": render, "seed": seed, "size": size}
    out = cached(lambda: _generate(fs, n_per_class, render, seed, size), key=key, name="glyphs",
                 version=GLYPHS_VERSION)
    name = "glyphs" if render != "clean" else "glyphs_plain"
    making = {"clean": "clean renders", "augmented": "augmented renders", "real": "real-like (carved, worn, scanned)"}
    source = f"generated: {making[render]} of fonts {', '.join(f.name for f in fs)}"
    return ImageDataset(out["images"], out["labels"].long(), list(LETTERS), name, split, _MEAN, _STD, source)


@register_dataset("glyphs")
def _glyphs(split: str) -> ImageDataset:
    return make_glyphs(split, augment=True)


@register_dataset("glyphs_plain")
def _glyphs_plain(split: str) -> ImageDataset:
    return make_glyphs(split, augment=split != "train")
