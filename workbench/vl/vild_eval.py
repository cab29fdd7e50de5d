"""Evaluation helpers for the ViLD notebook (64): box AP on a subset of the classes, and a fixed classifier.

* :func:`subset_ap`: COCO box AP (:func:`~workbench.vl.regions.box_ap`) counting only the detections and
  ground truth of ``classes`` (base or novel), as ViLD reports AP_r / AP_c / AP_f on LVIS.
* :func:`fixed_classifier`: ``n`` random orthonormal unit vectors, the fixed (not learned, not text) classifier of
  the supervised baseline: it scores regions exactly as ViLD-text does, but its class vectors carry no names, so
  it can only ever name the classes it was trained on.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .regions import box_ap

__all__ = ["subset_ap", "fixed_classifier", "scene_targets"]


def scene_targets(scenes) -> list[dict]:
    """Ground truth per scene of ``wb.data.make_scenes``: ``{"boxes": [M, 4], "labels": [M]}``."""
    return [{"boxes": scenes.boxes[i][scenes.items[i] >= 0], "labels": scenes.items[i][scenes.items[i] >= 0]}
            for i in range(len(scenes.items))]


def subset_ap(detections: list[dict], targets: list[dict], classes: Sequence[int],
              size: tuple[int, int] = (32, 32)) -> dict[str, float]:
    """:func:`box_ap` of the detections and targets whose label is in ``classes`` (the others dropped)."""
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("give at least one class to score (e.g. the novel classes)")
    if len(detections) != len(targets):
        raise ValueError(f"{len(detections)} detection lists for {len(targets)} images: give one per image")
    keep = torch.tensor(classes)

    def pick(d: dict) -> dict:
        m = torch.isin(d["labels"].cpu(), keep)
        return {k: v.cpu()[m] for k, v in d.items()}
    return box_ap([pick(d) for d in detections], [pick(t) for t in targets], size)


def fixed_classifier(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``[n, dim]`` random orthonormal rows (needs ``n <= dim``), from ``seed``."""
    if not 0 < n <= dim:
        raise ValueError(f"n orthonormal vectors need 0 < n <= dim, got n={n}, dim={dim}")
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, n, generator=g))
    return q.T.contiguous()
