"""Video clips made from real images: a Fashion-MNIST item moving over a CIFAR-10 photograph.

Each clip has ``frames`` frames of ``size x size`` pixels. The background is one CIFAR-10 image, still; the
item is one Fashion-MNIST garment, tinted with a random colour, laid over it by its own intensity (dark
pixels of the garment let the background through) and moved by one of eight **motions**: to the left, to
the right, up, down, towards the camera (growing), away (shrinking), rotating clockwise and anticlockwise.
Start position, size, angle, speed and tint are drawn per clip from the seed.

Two labels of the same clips:

* ``label="motion"`` (dataset ``"motion"``): the motion class. Every frame of a clip looks like a frame of
  any other motion (positions, sizes and angles are drawn from overlapping ranges), so one frame cannot tell
  the classes apart: temporal order decides.
* ``label="item"`` (dataset ``"motion_items"``): the garment's class; one frame suffices.
* ``label="motion_colour"`` (dataset ``"motion_colours"``): the motion and the garment's colour family (the
  strongest channel of its tint: reddish, greenish, bluish), 24 classes. Appearance (the colour, in any one
  frame) and motion (in the order of frames) are both needed, as in real actions, where what moves and how it
  moves both tell: a stream that sees only motion (optical flow is computed on grey levels) cannot tell the
  colour, and one frame cannot tell the motion. The draws are those of the other labels: the same clips.

A clip is stored as a **filmstrip**: its frames stacked from top to bottom, uint8 ``[3, frames * size,
size]``, so the clips are an ordinary :class:`ImageDataset` (``Loader``, ``fit`` and the plots work
unchanged; a model reads ``frames`` from its own argument and splits the strip, see
:mod:`workbench.models.video`). Never augment a filmstrip with ``crop_flip`` (a crop would shift frames
into each other, a flip reverses left and right): pass ``augment=None``.

What it keeps of real activity recognition: classes that only the order of frames separates, real image
content in every frame, several scales and rotations. What it loses: real motion (articulated bodies,
camera motion, clutter that moves), long clips, many objects, and the appearance cues real actions carry.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .dataset import ImageDataset

__all__ = ["MOTIONS", "COLOUR_FAMILIES", "motion_clips", "filmstrip_frames", "flow_filmstrips"]

MOTIONS = ("left", "right", "up", "down", "towards", "away", "rotate_cw", "rotate_ccw")
COLOUR_FAMILIES = ("reddish", "greenish", "bluish")   # the strongest channel of the garment's tint
LABELS = ("motion", "item", "motion_colour")
_CHUNK = 1000  # clips rendered at once


def filmstrip_frames(images: torch.Tensor, frames: int) -> torch.Tensor:
    """Filmstrips ``[N, C, frames * H, W]`` as frames ``[N, frames, C, H, W]``."""
    n, c, th, w = images.shape
    if th % frames:
        raise ValueError(f"a filmstrip of height {th} does not hold {frames} frames of equal height: pass the "
                         "number of frames the clips were made with")
    return images.reshape(n, c, frames, th // frames, w).transpose(1, 2)


def motion_clips(backgrounds: ImageDataset, items: ImageDataset, n: int, frames: int = 8, seed: int = 0,
                 label: str = "motion", item_size: float = 0.5, split: str = "train",
                 device: torch.device | str | None = None) -> ImageDataset:
    """``n`` clips (see the module docstring) from ``backgrounds`` (3-channel images, e.g. CIFAR-10) and
    ``items`` (1-channel images, e.g. Fashion-MNIST), deterministic for a given ``seed``.

    Args:
        frames: frames per clip (at least 2 for motion to exist).
        label: ``"motion"``, ``"item"`` or ``"motion_colour"``.
        item_size: the garment's side as a fraction of the frame (at the clip's start; "towards" grows it by
            up to 1.6x over the clip, "away" shrinks it to as little as 1 / 1.6).
        device: where the clips are made (default: the backgrounds' device).
    """
    if label not in LABELS:
        raise ValueError(f"label is 'motion' (the motion class), 'item' (the garment's class) or 'motion_colour' "
                         f"(the motion and the garment's colour family), got {label!r}")
    if not (isinstance(frames, int) and frames >= 2):
        raise ValueError(f"frames must be an integer >= 2 (motion needs two frames), got {frames!r}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if backgrounds.images.shape[1] != 3 or items.images.shape[1] != 1:
        raise ValueError("backgrounds must be colour images (CIFAR-10) and items grey images (Fashion-MNIST); got "
                         f"{backgrounds.images.shape[1]} and {items.images.shape[1]} channels")
    if not 0.2 <= item_size <= 0.8:
        raise ValueError(f"item_size is a fraction of the frame in [0.2, 0.8], got {item_size}")
    dev = torch.device(device) if device is not None else backgrounds.images.device
    g = torch.Generator().manual_seed(int(seed))
    size = backgrounds.images.shape[-1]
    bg_idx = torch.randint(len(backgrounds), (n,), generator=g)
    it_idx = torch.randint(len(items), (n,), generator=g)
    motion = torch.randint(len(MOTIONS), (n,), generator=g)
    tint = 0.4 + 0.6 * torch.rand(n, 3, generator=g)                   # a bright random colour per clip
    s0 = item_size * (0.85 + 0.3 * torch.rand(n, generator=g))        # side as a fraction of the frame
    a0 = (torch.rand(n, generator=g) - 0.5) * math.radians(60)        # start angle
    speed = 0.55 + 0.35 * torch.rand(n, generator=g)                   # share of the free path travelled
    c0 = (torch.rand(n, 2, generator=g) - 0.5) * 0.6                   # start centre, normalized [-1, 1] units
    t = torch.linspace(0, 1, frames)                                   # [T]
    # per frame: centre (x, y), side s, angle a; start values everywhere, then the class's motion
    cx = c0[:, :1].expand(n, frames).clone()
    cy = c0[:, 1:].expand(n, frames).clone()
    s = s0[:, None].expand(n, frames).clone()
    a = a0[:, None].expand(n, frames).clone()
    travel = 2 * speed[:, None] * t[None] * (1 - s0[:, None])          # [N, T] across the free width
    for k, name in enumerate(MOTIONS):
        m = motion == k
        if not m.any():
            continue
        start = (1 - s0[m])[:, None] * 0.9                             # begin near the side it leaves from
        if name == "left":
            cx[m] = start - travel[m]
        elif name == "right":
            cx[m] = -start + travel[m]
        elif name == "up":
            cy[m] = start - travel[m]
        elif name == "down":
            cy[m] = -start + travel[m]
        elif name == "towards":
            s[m] = s0[m, None] * (1.6 ** (speed[m, None] * t[None] / 0.9)) / 1.3
        elif name == "away":
            s[m] = s0[m, None] * 1.3 * (1.6 ** (-speed[m, None] * t[None] / 0.9))
        elif name == "rotate_cw":
            a[m] = a0[m, None] + speed[m, None] * t[None] * math.radians(150)
        elif name == "rotate_ccw":
            a[m] = a0[m, None] - speed[m, None] * t[None] * math.radians(150)
    # output pixel p (normalized) -> garment coordinates q = R(-a) (p - c) / s
    cos, sin = torch.cos(a) / s, torch.sin(a) / s                      # [N, T]
    theta = torch.stack([torch.stack([cos, sin, -(cos * cx + sin * cy)], -1),
                         torch.stack([-sin, cos, -(-sin * cx + cos * cy)], -1)], -2)  # [N, T, 2, 3]
    images = torch.empty(n, 3, frames * size, size, dtype=torch.uint8, device=dev)
    for lo in range(0, n, _CHUNK):   # rendered in chunks: the float intermediates of all clips at once weigh GBs
        hi = min(lo + _CHUNK, n)
        m = hi - lo
        item = items.images[it_idx[lo:hi].to(items.images.device)].to(dev).float() / 255   # [m, 1, h, w]
        item = item[:, None].expand(m, frames, *item.shape[1:]).reshape(m * frames, *item.shape[1:])
        grid = F.affine_grid(theta[lo:hi].reshape(m * frames, 2, 3).to(dev), [m * frames, 1, size, size],
                             align_corners=False)
        alpha = F.grid_sample(item, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        alpha = alpha.view(m, frames, 1, size, size)                                   # [m, T, 1, H, W]
        bg = backgrounds.images[bg_idx[lo:hi].to(backgrounds.images.device)].to(dev).float()[:, None] / 255
        clip = bg * (1 - alpha) + tint[lo:hi].to(dev)[:, None, :, None, None] * alpha  # [m, T, 3, H, W]
        strip = clip.transpose(1, 2).reshape(m, 3, frames * size, size)
        images[lo:hi] = (strip * 255).round().clamp(0, 255).to(torch.uint8)
    if label == "motion":
        labels, classes = motion.to(dev), list(MOTIONS)
    elif label == "motion_colour":
        family = tint.argmax(1)                                        # the tint's strongest channel
        labels = (motion * len(COLOUR_FAMILIES) + family).to(dev)
        classes = [f"{m}, {c}" for m in MOTIONS for c in COLOUR_FAMILIES]
    else:
        labels, classes = items.labels[it_idx.to(items.labels.device)].to(dev), list(items.classes)
    name = {"motion": "motion", "item": "motion_items", "motion_colour": "motion_colours"}[label]
    return ImageDataset(images, labels, classes, name, split, backgrounds.mean, backgrounds.std,
                        f"{n} clips of {frames} frames: {items.name} items moving over {backgrounds.name} "
                        f"{backgrounds.split} images (seed {seed})")


def flow_filmstrips(clips: ImageDataset, frames: int, scale: float = 8.0) -> ImageDataset:
    """The clips' dense optical flow as filmstrips of the same layout: frame ``t`` holds the flow from frame
    ``t - 1`` to ``t`` (zero at ``t = 0``) by OpenCV's Farneback method, coded as an image: horizontal flow in the
    red channel, vertical in the green, magnitude in the blue, ``128 + scale * pixels`` (clipped to 0..255).
    The real second stream of two-stream networks, where ``video_net``'s ``stream="diff"`` is the cheap stand-in.
    Needs ``opencv-python`` (``pip install opencv-python-headless``); per frame pair on the CPU."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError("optical flow needs OpenCV: pip install opencv-python-headless (or use video_net's "
                          "stream='diff', frame differences, which needs nothing)") from e
    import numpy as np
    strips = filmstrip_frames(clips.images.cpu(), frames)                   # [N, T, C, H, W]
    grey = (strips.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2).round().to(torch.uint8) \
        if strips.shape[2] == 3 else strips[:, :, 0]
    out = torch.full((strips.shape[0], frames, 3, *strips.shape[-2:]), 128, dtype=torch.uint8)
    for i in range(strips.shape[0]):
        g = grey[i].numpy()
        for t in range(1, frames):
            flow = cv2.calcOpticalFlowFarneback(g[t - 1], g[t], None, 0.5, 2, 9, 3, 5, 1.1, 0)   # [H, W, 2]
            mag = np.sqrt((flow ** 2).sum(-1, keepdims=True))
            coded = np.concatenate([128 + scale * flow, 128 + scale * mag], -1)
            out[i, t] = torch.from_numpy(np.clip(coded, 0, 255).round().astype(np.uint8)).permute(2, 0, 1)
    images = out.transpose(1, 2).reshape(strips.shape[0], 3, frames * strips.shape[-2], strips.shape[-1])
    return ImageDataset(images.to(clips.images.device), clips.labels, list(clips.classes), f"{clips.name}/flow",
                        clips.split, (0.5, 0.5, 0.5), (0.1, 0.1, 0.1), f"{clips.source}; Farneback optical flow")
