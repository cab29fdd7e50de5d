"""A generated multi-object image dataset with full multi-label and per-pixel ground truth, and
the crop-label experiment of Re-labeling ImageNet run end to end on it.

Each image holds one to ``max_objects`` shapes of different classes (the ten classes of the
``shapes`` dataset) at random places, sizes and colours; later shapes cover earlier ones. The
*single* label, like ImageNet's, is the class with the largest visible area; the *multi*
label is every class with at least ``min_pixels`` visible pixels; ``pixels`` holds the class
of every pixel (-1 for background). A random crop of such an image often misses the object
its single label names: exactly the noise LabelPooling removes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.synthetic import SHAPES, placed_masks
from .labelpool import crop_resize, label_maps, label_pooling, random_boxes


@dataclass
class MultiObjectData:
    images: torch.Tensor   # uint8 [N, 3, S, S]
    labels: torch.Tensor   # int64 [N], the single (largest visible) class
    multi: torch.Tensor    # bool [N, C], every visible class
    pixels: torch.Tensor   # int8 [N, S, S], class per pixel, -1 = background
    classes: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - 0.5) / 0.25


def make_multi_shapes(n: int, seed: int = 0, size: int = 32, max_objects: int = 3, min_pixels: int = 12,
                      noise: float = 0.06) -> MultiObjectData:
    """``n`` generated images; the same ``seed`` gives the same pixels."""
    if n < 1 or max_objects < 1 or max_objects > len(SHAPES):
        raise ValueError(f"need n >= 1 and 1 <= max_objects <= {len(SHAPES)}, got n={n}, max_objects={max_objects}")
    g = torch.Generator().manual_seed(seed)
    coords = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    count = torch.randint(1, max_objects + 1, (n,), generator=g)
    classes = torch.stack([torch.randperm(len(SHAPES), generator=g)[:max_objects] for _ in range(n)])  # distinct
    pixels = torch.full((n, size, size), -1, dtype=torch.int8)
    img = 0.4 * torch.rand(n, 3, 1, 1, generator=g) * torch.ones(n, 3, size, size)
    for j in range(max_objects):
        present = count > j
        lab = classes[:, j]
        mask = placed_masks(lab, x, y, g, spread=1.3, r_min=0.22, r_span=0.22) & present[:, None, None]
        fg = 0.5 + 0.5 * torch.rand(n, 3, 1, 1, generator=g)
        img = torch.where(mask[:, None], fg.expand(-1, -1, size, size), img)
        pixels = torch.where(mask, lab[:, None, None].to(torch.int8), pixels)
    img = img + noise * torch.randn(n, 3, size, size, generator=g)
    area = _class_areas(pixels, len(SHAPES))
    multi = area >= min_pixels
    labels = area.argmax(1)
    multi[torch.arange(n), labels] = True
    return MultiObjectData((img.clamp(0, 1) * 255).round().to(torch.uint8), labels, multi, pixels, list(SHAPES))


def _class_areas(pixels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Visible pixels per class ``[N, C]`` of class maps ``[N, H, W]`` (-1 = background)."""
    p = pixels.long()
    return (F.one_hot(p.clamp_min(0), num_classes) * (p >= 0)[..., None]).sum((1, 2))


def _crop_pixels(pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Class maps cropped to ``boxes`` and resized to their size by nearest neighbour (long)."""
    return crop_resize(pixels[:, None].float(), boxes, pixels.shape[-1], mode="nearest")[:, 0].long()


def crop_single_label_noise(data: MultiObjectData, boxes: torch.Tensor, min_fraction: float = 0.05) -> torch.Tensor:
    """Per crop: True when the crop shows less than ``min_fraction`` of its pixels of the image's
    single-label class, that is, when the single label is a wrong target for that crop."""
    pix = _crop_pixels(data.pixels, boxes)
    shows = (pix == data.labels[:, None, None]).float().mean((1, 2))
    return shows < min_fraction


def train_crops(model: nn.Module, data: MultiObjectData, target: str, *, epochs: int = 10, batch_size: int = 128,
                lr: float = 0.05, scale: tuple[float, float] = (0.08, 1.0), annotator: nn.Module | None = None,
                seed: int = 0, progress: bool = True) -> dict[str, list[float]]:
    """Train ``model`` on random resized crops of ``data`` with one of two targets:

    - ``"single"``: the image's single label for every crop (the usual ImageNet recipe);
    - ``"labelpool"``: LabelPooling of ``annotator``'s label map over the crop box.

    As in Re-labeling ImageNet, the annotator is itself a single-label classifier (there a
    far larger one); its label map localizes what it learned. SGD with Nesterov momentum and
    a one-cycle schedule; returns the per-epoch mean loss.
    """
    from tqdm.auto import tqdm

    if target not in ("single", "labelpool"):
        raise ValueError(f"target must be 'single' or 'labelpool', got {target!r}")
    if target == "labelpool" and annotator is None:
        raise ValueError("target='labelpool' needs annotator= (a model whose label maps give the crop targets)")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n, size = len(data), data.images.shape[-1]
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    maps = None
    if target == "labelpool":
        maps = torch.cat([label_maps(annotator, data.normalize(data.images[i:i + 512]))
                          for i in range(0, n, 512)])
    model.train()
    history = {"loss": []}
    bar = tqdm(total=steps, desc=f"train ({target})", disable=not progress, leave=False)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            boxes = random_boxes(len(idx), scale, generator=g)
            x = data.normalize(crop_resize(data.images[idx], boxes, size))
            logits = model(x)
            if target == "single":
                loss = F.cross_entropy(logits, data.labels[idx])
            else:
                soft = label_pooling(maps[idx], boxes)
                loss = -(soft * logits.log_softmax(1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            bar.update(1)
        history["loss"].append(total / n)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def evaluate_multilabel(model: nn.Module, data: MultiObjectData, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy of ``model`` on whole images against the single label and against the
    full label set (a hit when the top class is any visible object)."""
    was = model.training
    model.eval()
    preds = torch.cat([model(data.normalize(data.images[i:i + batch_size])).argmax(1)
                       for i in range(0, len(data), batch_size)])
    model.train(was)
    single = (preds == data.labels).float().mean().item()
    multi = data.multi[torch.arange(len(data)), preds].float().mean().item()
    return {"single_label_acc": single, "multi_label_acc": multi}


@torch.no_grad()
def evaluate_crops(model: nn.Module, data: MultiObjectData, boxes: torch.Tensor, min_pixels: int = 12,
                   batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy on crops of ``data`` (one box per image), where a crop's truth is every class
    with at least ``min_pixels`` visible in it (after resizing to the image size); crops showing
    only background are left out. Also the share of counted crops whose single label is not in
    the crop's truth."""
    size = data.images.shape[-1]
    was = model.training
    model.eval()
    hits, single_ok, counted = [], [], []
    for i in range(0, len(data), batch_size):
        b = boxes[i:i + batch_size]
        x = data.normalize(crop_resize(data.images[i:i + batch_size], b, size))
        truth = _class_areas(_crop_pixels(data.pixels[i:i + batch_size], b), len(data.classes)) >= min_pixels
        pred = model(x).argmax(1)
        rows = torch.arange(len(pred))
        hits.append(truth[rows, pred])
        single_ok.append(truth[rows, data.labels[i:i + batch_size]])
        counted.append(truth.any(1))
    model.train(was)
    hits, single_ok, counted = torch.cat(hits), torch.cat(single_ok), torch.cat(counted)
    return {"crop_acc": hits[counted].float().mean().item(),
            "single_label_wrong": 1 - single_ok[counted].float().mean().item(), "crops": int(counted.sum())}
