"""Screening metrics and class-imbalance handling for a rare positive class (referable diabetic retinopathy).

A screening test is read at an operating point: the sensitivity it reaches while keeping a fixed
specificity (or the reverse), beside the threshold-free area under the ROC curve. Castilla et al. 2022
(arXiv:2210.03180) report all three for their ResNet-18 baseline.

* :func:`roc_curve`: the ROC curve's points, one per distinct score (predict positive when ``score >= t``);
* :func:`roc_auc`: the area under it (the Mann-Whitney statistic; shared with :mod:`workbench.ssl.detect`);
* :func:`sensitivity_at_specificity`, :func:`specificity_at_sensitivity`: the best of one among the
  thresholds that keep the other at least at the target, no interpolation between ROC points;
* :func:`balanced_class_weights` and :class:`WeightedClassification`: a class-weighted cross-entropy for
  ``wb.fit``, each class's weight inversely proportional to its frequency.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..ssl import roc_auc
from ..train.tasks import Classification

__all__ = ["roc_curve", "roc_auc", "sensitivity_at_specificity", "specificity_at_sensitivity",
           "balanced_class_weights", "WeightedClassification", "positive_scores"]


def _check(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(scores, dtype=torch.float64).flatten().cpu()
    y = torch.as_tensor(labels).flatten().cpu()
    if len(s) != len(y):
        raise ValueError(f"scores and labels must have the same length, got {len(s)} and {len(y)}")
    if not torch.isfinite(s).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    y = y.long()
    if not set(y.tolist()) <= {0, 1}:
        raise ValueError(f"labels must be 0 (negative) or 1 (positive), got values {sorted(set(y.tolist()))[:5]}")
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("sensitivity and specificity need both classes among the labels (some 0s and some 1s)")
    return s, y


def roc_curve(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ROC curve: ``(specificity, sensitivity, threshold)``, float64 tensors, one point per threshold.

    The thresholds are ``+inf`` (nothing positive: sensitivity 0, specificity 1) and every distinct score in
    decreasing order; at threshold ``t`` a case is called positive when ``score >= t``.

    >>> roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])[1].tolist()
    [0.0, 0.5, 0.5, 1.0, 1.0]
    """
    s, y = _check(scores, labels)
    thr = torch.cat([torch.tensor([float("inf")], dtype=torch.float64), torch.unique(s).flip(0)])
    pos = (s[None] >= thr[:, None])                                                 # [thresholds, cases]
    sens = (pos & (y == 1)[None]).sum(1).double() / int((y == 1).sum())
    spec = (~pos & (y == 0)[None]).sum(1).double() / int((y == 0).sum())
    return spec, sens, thr


def _check_target(value: float, what: str) -> float:
    if not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def sensitivity_at_specificity(scores: Any, labels: Any, specificity: float = 0.9) -> float:
    """The highest sensitivity among the thresholds whose specificity is at least ``specificity``.

    Args:
        scores: higher means more likely positive (``[N]``).
        labels: 1 for a positive (referable) case, 0 for a negative one.
        specificity: the target in [0, 1].

    >>> sensitivity_at_specificity([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.5)
    1.0
    """
    target = _check_target(specificity, "specificity")
    spec, sens, _ = roc_curve(scores, labels)
    return float(sens[spec >= target - 1e-12].max())


def specificity_at_sensitivity(scores: Any, labels: Any, sensitivity: float = 0.9) -> float:
    """The highest specificity among the thresholds whose sensitivity is at least ``sensitivity``."""
    target = _check_target(sensitivity, "sensitivity")
    spec, sens, _ = roc_curve(scores, labels)
    return float(spec[sens >= target - 1e-12].max())


def balanced_class_weights(labels: Any, num_classes: int | None = None) -> torch.Tensor:
    """``n / (k * n_c)`` for each class ``c`` of ``k`` (float32 ``[k]``): the weighted classes count equally.

    >>> balanced_class_weights([0, 0, 0, 1]).tolist()
    [0.6666666865348816, 2.0]
    """
    y = torch.as_tensor(labels).long().flatten().cpu()
    if len(y) == 0 or int(y.min()) < 0:
        raise ValueError("labels must be a non-empty set of class indices 0..k-1")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    counts = torch.bincount(y, minlength=k)
    if len(counts) > k:
        raise ValueError(f"labels go up to {int(y.max())} but num_classes={k}")
    if (counts == 0).any():
        raise ValueError(f"class(es) {(counts == 0).nonzero().flatten().tolist()} have no example; "
                         "a balanced weight needs every class present")
    return (len(y) / (k * counts.double())).float()


class WeightedClassification(Classification):
    """Cross-entropy with a weight per class (``F.cross_entropy(weight=...)``, the weighted mean over the
    batch), for ``wb.fit(task=...)``; accuracy is logged unweighted.

    Args:
        class_weights: one positive weight per class (:func:`balanced_class_weights` of the training labels
            makes a rare class count as much as a common one).
        label_smoothing: as in :class:`~workbench.train.tasks.Classification`.
    """

    def __init__(self, class_weights: Any, label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        w = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        if len(w) < 2 or not torch.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"class_weights must hold a positive, finite weight per class, got {w.tolist()}")
        self.class_weights = w

    def check_data(self, model, dataset) -> None:
        super().check_data(model, dataset)
        k = getattr(dataset, "num_classes", None)
        if k is not None and k != len(self.class_weights):
            raise ValueError(f"{len(self.class_weights)} class weights but {dataset.name} has {k} classes")

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        w = self.class_weights.to(outputs.device)
        return F.cross_entropy(outputs.float(), batch[1], weight=w, label_smoothing=self.label_smoothing)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "class_weights": [round(float(v), 6) for v in self.class_weights]}


def positive_scores(model: torch.nn.Module, data, batch: int = 500) -> torch.Tensor:
    """The model's probability of the positive class (index 1) for every image of ``data`` (float64 ``[N]``),
    in eval mode without gradients; the train flag is restored."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        with torch.no_grad():
            out = [model(data.normalize(x.to(dev))).float().softmax(1)[:, 1].double().cpu()
                   for x in data.images.split(batch)]
    finally:
        model.train(was)
    return torch.cat(out)
