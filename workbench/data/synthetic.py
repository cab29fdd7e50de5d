"""Procedurally generated image datasets: no download, exact same pixels for a seed.

``shapes``: ten classes of simple shapes (disk, square, triangle, plus, ring,
diamond, horizontal bar, vertical bar, X, two dots) at a random position, size and
small rotation, in a random light colour on a random dark background with pixel noise,
32x32 RGB. Small ResNets learn it to high accuracy in seconds, so tests and smoke
runs can show learning without real data.
"""
from __future__ import annotations

import math

import torch

SHAPES = ["disk", "square", "triangle", "plus", "ring", "diamond", "hbar", "vbar", "x", "two_dots"]


def _masks(label: torch.Tensor, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean shape masks ``[N, H, W]`` for shape indices ``label`` in local coordinates (u, v)."""
    d = torch.sqrt(u ** 2 + v ** 2)
    au, av = u.abs(), v.abs()
    tri = (v > -0.5 * r) & (v < r - 1.7 * au)
    dots = (torch.sqrt((u - 0.5 * r) ** 2 + v ** 2) < 0.35 * r) | (torch.sqrt((u + 0.5 * r) ** 2 + v ** 2) < 0.35 * r)
    all_masks = torch.stack([
        d < r,
        (au < 0.8 * r) & (av < 0.8 * r),
        tri,
        ((au < r / 3) & (av < r)) | ((av < r / 3) & (au < r)),
        (d < r) & (d > 0.55 * r),
        (au + av) < r,
        (av < r / 4) & (au < r),
        (au < r / 4) & (av < r),
        (((u - v).abs() < r / 3) | ((u + v).abs() < r / 3)) & (au < 0.8 * r) & (av < 0.8 * r),
        dots,
    ], 1)  # [N, 10, H, W]
    return all_masks[torch.arange(len(label)), label]


def placed_masks(label: torch.Tensor, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, spread: float,
                 r_min: float, r_span: float) -> torch.Tensor:
    """Masks ``[N, H, W]`` of shapes ``label`` at a random centre (within ``spread`` of the middle),
    radius (``r_min`` + up to ``r_span``) and small rotation, on the grid ``x``, ``y`` in [-1, 1]."""
    m = len(label)
    cx, cy = (torch.rand(2, m, 1, 1, generator=g) - 0.5) * spread
    r = r_min + r_span * torch.rand(m, 1, 1, generator=g)
    th = (torch.rand(m, 1, 1, generator=g) - 0.5) * (math.pi / 6)
    dx, dy = x - cx, y - cy
    u = torch.cos(th) * dx + torch.sin(th) * dy
    v = -torch.sin(th) * dx + torch.cos(th) * dy
    return _masks(label, u, v, r)


def make_shapes(n: int, seed: int = 0, size: int = 32, noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``[n, 3, size, size]`` uint8 and labels ``[n]`` int64, balanced over the classes."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(SHAPES)
    labels = labels[torch.randperm(n, generator=g)]
    coords = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")  # [H, W]
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, 2048):
        lab = labels[start:start + 2048]
        m = len(lab)
        mask = placed_masks(lab, x, y, g, spread=0.7, r_min=0.35, r_span=0.3).unsqueeze(1).float()  # [m, 1, H, W]
        # random colours, but the shape is always the brighter part: a dark background and a light shape
        bg = 0.45 * torch.rand(m, 3, 1, 1, generator=g)
        fg = 0.55 + 0.45 * torch.rand(m, 3, 1, 1, generator=g)
        img = bg * (1 - mask) + fg * mask + noise * torch.randn(m, 3, size, size, generator=g)
        images[start:start + m] = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


def spiral(n: int = 1000, turns: float = 2.0, seed: int | None = None, noise: float = 0.0) -> torch.Tensor:
    """``n`` points along an Archimedean spiral in the plane, centred at the origin: a 2-D manifold
    (a curve) to push through layers, as in figure 1 of the MobileNetV2 paper. Points run from the
    centre outwards at radius ``t`` and angle ``2 pi turns t`` for ``t`` in [0, 1]; ``noise`` adds
    Gaussian jitter of that size (seeded by ``seed``). Returns ``[n, 2]`` float32."""
    if n < 2 or turns <= 0 or noise < 0:
        raise ValueError(f"spiral needs n >= 2, turns > 0 and noise >= 0, got n={n}, turns={turns}, noise={noise}")
    t = torch.linspace(0, 1, n)
    pts = torch.stack([t * torch.cos(2 * math.pi * turns * t), t * torch.sin(2 * math.pi * turns * t)], dim=1)
    if noise:
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        pts = pts + noise * torch.randn(pts.shape, generator=g)
    return pts - pts.mean(dim=0)
