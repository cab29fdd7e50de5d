"""Region tools of open-vocabulary detection: box IoU, non-maximum suppression, RoIAlign.

torchvision's ``ops.roi_align`` and ``ops.nms`` are what a detector would use, but torchvision's wheels do not
load their operators beside the CPU build of torch used here (``operator torchvision::nms does not exist``),
so these are written out, small, and tested against hand-computed cases. Where torchvision imports (a user's
GPU machine), :func:`nms` and :func:`roi_align` use its kernels (``prefer_torchvision=True``).

Boxes are ``(x0, y0, x1, y1)`` in pixels, ``x1 > x0`` and ``y1 > y0``. :func:`box_ap` scores detections with
COCO's average precision through ``faster-coco-eval`` (torchmetrics' ``MeanAveragePrecision`` needs torchvision).
"""
from __future__ import annotations

import torch

__all__ = ["box_iou", "nms", "roi_align", "box_ap", "check_boxes_in_image"]


def _check_boxes(boxes: torch.Tensor, what: str = "boxes") -> None:
    if not (isinstance(boxes, torch.Tensor) and boxes.ndim == 2 and boxes.shape[1] == 4):
        got = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{what} must be a [N, 4] tensor of (x0, y0, x1, y1), got {got}")


def check_boxes_in_image(boxes: torch.Tensor, size: tuple[int, int], what: str = "boxes") -> None:
    """Refuse boxes ``[N, 4]`` (x0, y0, x1, y1) of zero or negative area, or reaching outside an image of
    ``size = (height, width)`` (a thousandth of a pixel of slack)."""
    _check_boxes(boxes, what)
    if not len(boxes):
        return
    h, w = size
    flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if flat.any():
        i = int(flat.nonzero()[0])
        raise ValueError(f"{what}[{i}] = {[round(v, 3) for v in boxes[i].tolist()]} has zero area: a box is "
                         "(x0, y0, x1, y1) with x1 > x0 and y1 > y0; drop it or give it a width and a height")
    eps = 1e-3
    out = (boxes[:, :2] < -eps).any(1) | (boxes[:, 2] > w + eps) | (boxes[:, 3] > h + eps)
    if out.any():
        i = int(out.nonzero()[0])
        raise ValueError(f"{what}[{i}] = {[round(v, 3) for v in boxes[i].tolist()]} reaches outside the {h}x{w} "
                         f"image: clip boxes to x in 0..{w}, y in 0..{h} (or pass the images' size=(height, width))")


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``[len(a), len(b)]``."""
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-12)


def _torchvision_ops():
    try:
        from torchvision import ops
        ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # the operators load, or this raises
        return ops
    except Exception:  # noqa: BLE001 - any failure means: use ours
        return None


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5,
        prefer_torchvision: bool = False) -> torch.Tensor:
    """Indices of the boxes kept, by descending score: a box is dropped when its IoU with a kept, higher-scoring
    box exceeds ``iou_threshold``."""
    _check_boxes(boxes)
    if scores.shape != (len(boxes),):
        raise ValueError(f"scores must be [N] beside boxes [N, 4], got {tuple(scores.shape)}")
    if prefer_torchvision and (ops := _torchvision_ops()) is not None:
        return ops.nms(boxes.float(), scores.float(), iou_threshold)
    order = scores.argsort(descending=True)
    iou = box_iou(boxes[order], boxes[order])
    keep = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    for i in range(len(order)):
        if keep[i]:
            later = torch.arange(len(order), device=boxes.device) > i
            keep &= ~(later & (iou[i] > iou_threshold))
    return order[keep]


def roi_align(features: torch.Tensor, boxes: torch.Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, prefer_torchvision: bool = False) -> torch.Tensor:
    """RoIAlign (He et al., Mask R-CNN, arXiv:1703.06870) with ``aligned=True`` pixel centres.

    Args:
        features: ``[B, C, H, W]``.
        boxes: ``[K, 5]`` rows ``(batch index, x0, y0, x1, y1)`` in input pixels (times ``spatial_scale`` gives
            feature-map coordinates).
        output_size: bins per side; each bin averages ``sampling_ratio x sampling_ratio`` bilinear samples.
    Returns:
        ``[K, C, out_h, out_w]``.
    """
    if not (isinstance(boxes, torch.Tensor) and boxes.ndim == 2 and boxes.shape[1] == 5):
        raise ValueError("boxes for roi_align are [K, 5] rows (batch index, x0, y0, x1, y1)")
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    if prefer_torchvision and (ops := _torchvision_ops()) is not None:
        return ops.roi_align(features, boxes.float(), (oh, ow), spatial_scale, sampling_ratio, aligned=True)
    B, C, H, W = features.shape
    b = boxes[:, 0].long()
    x0, y0, x1, y1 = [boxes[:, i] * spatial_scale - 0.5 for i in range(1, 5)]   # aligned: pixel centres
    bw, bh = (x1 - x0) / ow, (y1 - y0) / oh                                      # bin sizes [K]
    s = sampling_ratio
    frac = (torch.arange(s, dtype=features.dtype, device=features.device) + 0.5) / s
    gx = (torch.arange(ow, device=features.device)[:, None] + frac[None]).flatten()   # [ow*s] in bin units
    gy = (torch.arange(oh, device=features.device)[:, None] + frac[None]).flatten()
    xs = x0[:, None] + gx[None] * bw[:, None]                                   # [K, ow*s]
    ys = y0[:, None] + gy[None] * bh[:, None]                                   # [K, oh*s]
    # normalized grid for grid_sample (align_corners=False maps -1 to the left edge of pixel 0)
    nx = (xs + 0.5) / W * 2 - 1
    ny = (ys + 0.5) / H * 2 - 1
    grid = torch.stack([nx[:, None, :].expand(-1, len(gy), -1), ny[:, :, None].expand(-1, -1, len(gx))], -1)
    sampled = torch.nn.functional.grid_sample(features[b], grid, mode="bilinear", padding_mode="border",
                                              align_corners=False)               # [K, C, oh*s, ow*s]
    return sampled.view(len(boxes), C, oh, s, ow, s).mean((3, 5))


def box_ap(detections: list[dict], targets: list[dict], size: tuple[int, int] = (64, 64)) -> dict[str, float]:
    """COCO box AP of ``detections`` against ``targets``, one dict per image.

    Args:
        detections: ``{"boxes": [K, 4], "scores": [K], "labels": [K]}`` per image.
        targets: ``{"boxes": [M, 4], "labels": [M]}`` per image (labels are class indices from 0).
        size: ``(height, width)`` of the images.
    Returns:
        ``{"AP": AP at IoU 0.5:0.95, "AP50": at 0.5, "AP75": at 0.75}`` (``nan`` when nothing is annotated).
    """
    from faster_coco_eval import COCO, COCOeval_faster
    if len(detections) != len(targets):
        raise ValueError(f"{len(detections)} detection lists for {len(targets)} images: give one per image")
    for i, (d, t) in enumerate(zip(detections, targets)):
        check_boxes_in_image(t["boxes"], size, f"targets[{i}]['boxes']")
        check_boxes_in_image(d["boxes"], size, f"detections[{i}]['boxes']")
    labels = sorted({int(c) for t in targets for c in t["labels"].tolist()}
                    | {int(c) for d in detections for c in d["labels"].tolist()})
    h, w = size
    anns, dets = [], []
    for i, (d, t) in enumerate(zip(detections, targets)):
        for b, c in zip(t["boxes"].tolist(), t["labels"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                         "iscrowd": 0})
        for b, s_, c in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s_),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    if not anns:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1, "width": w, "height": h} for i in range(len(targets))],
                  "categories": [{"id": c + 1, "name": str(c)} for c in labels], "annotations": anns}
    gt.createIndex()
    if not dets:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    ev = COCOeval_faster(gt, gt.loadRes(dets), "bbox", print_function=lambda *a, **k: None)
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}
