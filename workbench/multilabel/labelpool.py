"""Label maps and LabelPooling (Yun et al. 2021, *Re-labeling ImageNet*, arXiv 2101.05022).

A *label map* holds class scores per location, ``[B, C, h, w]``: a strong annotator's final
linear layer applied at every position of its last feature map, before global pooling. A
random crop's training target is the label map pooled over the crop's box (RoI-align), then
a softmax: a crop that shows only the dog gets "dog", not the image's single label "cat".

Boxes are ``(x0, y0, x1, y1)`` in fractions of the image width and height, x to the right
and y downwards, as torchvision's ``roi_align`` orders them (a test pins this down).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_boxes(boxes: torch.Tensor, batch: int) -> torch.Tensor:
    if boxes.ndim != 2 or boxes.shape != (batch, 4):
        raise ValueError(f"boxes must be [batch, 4] = (x0, y0, x1, y1) per image, got {tuple(boxes.shape)} for a "
                         f"batch of {batch}")
    if not torch.isfinite(boxes).all() or (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError("boxes must be finite with x1 > x0 and y1 > y0 (fractions of the image, x then y)")
    return boxes


def _box_grid(boxes: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Sampling grid ``[B, out_h, out_w, 2]`` at the centres of an out_h x out_w split of each box,
    in grid_sample's [-1, 1] coordinates (align_corners=False: -1 and 1 are the image's outer edges)."""
    b = boxes.to(torch.float32)
    ty = (torch.arange(out_h, dtype=torch.float32, device=b.device) + 0.5) / out_h
    tx = (torch.arange(out_w, dtype=torch.float32, device=b.device) + 0.5) / out_w
    x = b[:, 0, None] + (b[:, 2] - b[:, 0])[:, None] * tx  # [B, out_w]
    y = b[:, 1, None] + (b[:, 3] - b[:, 1])[:, None] * ty  # [B, out_h]
    gx = (2 * x - 1)[:, None, :].expand(-1, out_h, -1)
    gy = (2 * y - 1)[:, :, None].expand(-1, -1, out_w)
    return torch.stack([gx, gy], -1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Crop each image to its box and resize to ``size x size`` (``mode``: bilinear, or nearest for
    class maps), in one call for the batch."""
    boxes = _check_boxes(boxes, images.shape[0])
    x = images.float() if not images.is_floating_point() else images
    out = F.grid_sample(x, _box_grid(boxes, size, size), mode=mode, padding_mode="border", align_corners=False)
    return out.round().clamp(0, 255).to(images.dtype) if not images.is_floating_point() else out


def roi_pool_scores(label_map: torch.Tensor, boxes: torch.Tensor, samples: int = 4) -> torch.Tensor:
    """RoI-align to one bin: the mean of ``label_map`` bilinearly sampled on a ``samples x samples``
    grid inside each box. ``[B, C, h, w]`` -> ``[B, C]``."""
    if label_map.ndim != 4:
        raise ValueError(f"label_map must be [batch, classes, h, w], got {tuple(label_map.shape)}")
    boxes = _check_boxes(boxes, label_map.shape[0])
    s = F.grid_sample(label_map.float(), _box_grid(boxes, samples, samples), mode="bilinear",
                      padding_mode="border", align_corners=False)
    return s.mean((2, 3))


def label_pooling(label_map: torch.Tensor, boxes: torch.Tensor, samples: int = 4) -> torch.Tensor:
    """LabelPooling: the soft target ``softmax(RoI-align(label_map, box))`` of each crop, ``[B, C]``."""
    return roi_pool_scores(label_map, boxes, samples).softmax(1)


def sparse_to_dense(values: torch.Tensor, indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A top-k sparse label map (``values``, ``indices`` of shape ``[B, k, h, w]``, as Re-labeling
    ImageNet stores them) to a dense ``[B, num_classes, h, w]`` one; classes outside the top k get
    the lowest stored score of that location (so the softmax still ranks them last)."""
    if values.shape != indices.shape or values.ndim != 4:
        raise ValueError(f"values and indices must both be [batch, k, h, w], got {tuple(values.shape)} and "
                         f"{tuple(indices.shape)}")
    if indices.min() < 0 or indices.max() >= num_classes:
        raise ValueError(f"indices must lie in 0..{num_classes - 1}")
    floor = values.min(1, keepdim=True).values
    dense = floor.expand(-1, num_classes, -1, -1).clone()
    return dense.scatter(1, indices.long(), values)


def topk_sparse(label_map: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k`` best classes per location: ``(values, indices)``, each ``[B, k, h, w]``."""
    v, i = label_map.topk(k, dim=1)
    return v, i


@torch.no_grad()
def label_maps(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """The label map of a classifier ending in global average pooling and a linear layer ``fc``:
    ``fc`` applied at every location of ``layer`` (default: the last block), ``[B, C, h, w]``.
    Averaged over locations it equals the model's logits."""
    from ..guidance import default_layers
    from ..probe import run_with_cache

    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear output layer 'fc' to apply per location")
    layer = layer or default_layers(model)[-1]
    was = model.training
    model.eval()
    try:
        _, cache = run_with_cache(model, x, [layer])
    finally:
        model.train(was)
    feats = cache[layer]
    if feats.ndim != 4 or feats.shape[1] != fc.in_features:
        raise ValueError(f"layer {layer!r} gives {tuple(feats.shape)}; need [batch, {fc.in_features}, h, w] feeding fc")
    return torch.einsum("bchw,kc->bkhw", feats, fc.weight) + fc.bias[None, :, None, None]


def random_boxes(n: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random-resized-crop boxes ``[n, 4]`` (area fraction in ``scale``, aspect in ``ratio``, inside the image)."""
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    logr = torch.log(torch.tensor(ratio))
    r = torch.exp(logr[0] + (logr[1] - logr[0]) * torch.rand(n, generator=generator))
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    x0 = (1 - w) * torch.rand(n, generator=generator)
    y0 = (1 - h) * torch.rand(n, generator=generator)
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)
