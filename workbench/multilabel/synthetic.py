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

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import TensorLoader
from ..data.synthetic import SHAPES, placed_masks
from ..train.tasks import Task
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

    def to(self, device: torch.device | str) -> MultiObjectData:
        return MultiObjectData(self.images.to(device), self.labels.to(device), self.multi.to(device),
                               self.pixels.to(device), self.classes)


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


class CropLoader(TensorLoader):
    """Random resized crops of a :class:`MultiObjectData` set, batched for ``wb.fit``: each batch is ``(crops
    normalized [B, 3, S, S], single labels [B], crop boxes [B, 4], image indices [B])``. The crops of batch ``b``
    in epoch ``e`` are drawn from ``random_stream(seed, e, b)``, so a resumed run sees the crops it would have."""

    data_type = MultiObjectData
    made_by = "wb.multilabel.synthetic.make_multi_shapes"

    def __init__(self, data: MultiObjectData, batch_size: int = 128, scale: tuple[float, float] = (0.08, 1.0),
                 shuffle: bool = True, device: torch.device | str | None = None, seed: int = 0):
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale is the crop's range of area fractions, 0 < low <= high <= 1, got {scale!r}")
        super().__init__(data, batch_size, shuffle=shuffle, device=device, seed=seed)
        self.scale = (float(scale[0]), float(scale[1]))
        self.augment = "random resized crops"  # set: every batch gets its own random stream

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        d = self.dataset
        boxes = random_boxes(len(idx), self.scale, generator=generator).to(d.images.device)
        return d.normalize(crop_resize(d.images[idx], boxes, d.images.shape[-1])), d.labels[idx], boxes, idx


class CropTargets(Task):
    """Classification of random crops (batches of :class:`CropLoader`) with one of two targets:

    - ``"single"``: the image's single label for every crop (the usual ImageNet recipe);
    - ``"labelpool"``: LabelPooling of the image's label map over the crop box (``maps``: the annotator's
      label maps of every image of the set, ``[N, C, h, w]``, computed once before training, as the paper
      stores them), as a soft target.

    ``train_acc`` counts a crop right when its top class is the image's single label.
    """

    metric_names = ("loss", "acc")

    def __init__(self, target: str = "single", maps: torch.Tensor | None = None):
        if target not in ("single", "labelpool"):
            raise ValueError(f"target must be 'single' or 'labelpool', got {target!r}")
        if target == "labelpool" and (maps is None or maps.ndim != 4):
            raise ValueError("target='labelpool' needs maps=, the annotator's label maps [N, C, h, w] of the training "
                             "images (wb.multilabel.label_maps)")
        self.target, self.maps = target, maps

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        if self.target == "single":
            return F.cross_entropy(outputs, batch[1])
        soft = label_pooling(self.maps[batch[3].to(self.maps.device)].to(outputs.device), batch[2])
        return -(soft * outputs.log_softmax(1)).sum(1).mean()

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[1])
        return {"loss": loss.detach().double() * n, "acc": (outputs.detach().argmax(1) == batch[1]).sum().double()}, n

    def config(self) -> dict[str, Any]:
        from ..cache import fingerprint

        return {"name": self.name, "target": self.target,
                "maps": None if self.maps is None else fingerprint(self.maps)}


@torch.no_grad()
def dataset_label_maps(annotator: nn.Module, data: MultiObjectData, batch_size: int = 512) -> torch.Tensor:
    """The annotator's label maps of every image of ``data``, ``[N, C, h, w]`` (computed once, as the paper
    stores them)."""
    return torch.cat([label_maps(annotator, data.normalize(data.images[i:i + batch_size]))
                      for i in range(0, len(data), batch_size)])


def crop_targets_shown(data: MultiObjectData, boxes: torch.Tensor, maps: torch.Tensor,
                       min_fraction: float = 0.05) -> dict[str, float]:
    """How often each target names what a crop shows, a class counting as shown when it covers at least
    ``min_fraction`` of the crop (the rule of :func:`crop_single_label_noise`): over the crops (one box per image)
    that show any class, the share whose single label is shown (``single``), and the share whose LabelPooling
    target's top class is (``labelpool``)."""
    pix = _crop_pixels(data.pixels, boxes)
    truth = _class_areas(pix, len(data.classes)) >= min_fraction * pix[0].numel()
    counted = truth.any(1)
    rows = torch.arange(len(truth))
    pooled = label_pooling(maps, boxes.to(maps.device)).argmax(1).to(truth.device)
    return {"single": truth[rows, data.labels][counted].float().mean().item(),
            "labelpool": truth[rows, pooled][counted].float().mean().item(), "crops": int(counted.sum())}


def train_crops(model: nn.Module, data: MultiObjectData, target: str, *, epochs: int = 10, batch_size: int = 128,
                lr: float = 0.05, scale: tuple[float, float] = (0.08, 1.0), annotator: nn.Module | None = None,
                seed: int = 0, progress: bool = True) -> dict[str, list[float]]:
    """Train ``model`` with ``wb.fit`` on random resized crops of ``data`` (:class:`CropLoader`) with the target
    ``"single"`` or ``"labelpool"`` (:class:`CropTargets`; the label maps of ``annotator`` computed once).

    As in Re-labeling ImageNet, the annotator is itself a single-label classifier (there a far larger one); its
    label map localizes what it learned. SGD with Nesterov momentum and a one-cycle schedule; returns the
    per-epoch mean loss. ``model`` is trained in place and left in eval mode.
    """
    from ..train import fit

    maps = None
    if target == "labelpool":
        if annotator is None:
            raise ValueError("target='labelpool' needs annotator= (a model whose label maps give the crop targets)")
        maps = dataset_label_maps(annotator, data)
    task = CropTargets(target, maps)  # checks target before any work
    loader = CropLoader(data, batch_size, scale, seed=seed, device=next(model.parameters()).device)
    res = fit(model, loader, task=task, epochs=epochs, lr=lr, optimizer="sgd", momentum=0.9, nesterov=True,
              weight_decay=5e-4, schedule="onecycle", warmup=0.15, seed=seed, progress=progress)
    model.eval()
    return {"loss": res.history["train_loss"].astype(float).tolist()}


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
