"""Screening metrics (ROC curve, AUC, sensitivity at a specificity and back) on hand-made cases, and the
class-weighted classification task."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.shift import screening as S

SCORES = [0.1, 0.4, 0.35, 0.8]
LABELS = [0, 0, 1, 1]


def test_roc_curve_hand_made():
    spec, sens, thr = S.roc_curve(SCORES, LABELS)
    assert thr.tolist() == [float("inf"), 0.8, 0.4, 0.35, 0.1]
    assert sens.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert spec.tolist() == [1.0, 1.0, 0.5, 0.5, 0.0]
    assert S.roc_auc(SCORES, LABELS) == 0.75


def test_sensitivity_at_specificity_hand_made():
    assert S.sensitivity_at_specificity(SCORES, LABELS, 1.0) == 0.5
    assert S.sensitivity_at_specificity(SCORES, LABELS, 0.9) == 0.5
    assert S.sensitivity_at_specificity(SCORES, LABELS, 0.5) == 1.0
    assert S.sensitivity_at_specificity(SCORES, LABELS, 0.0) == 1.0
    assert S.specificity_at_sensitivity(SCORES, LABELS, 1.0) == 0.5
    assert S.specificity_at_sensitivity(SCORES, LABELS, 0.5) == 1.0


def test_ties_and_ten_cases():
    # 10 negatives scored 0..9, 5 positives: 9.5, 8.5, 7.5, 2.5, 2.5 (a tie)
    neg = list(range(10))
    scores = torch.tensor(neg + [9.5, 8.5, 7.5, 2.5, 2.5], dtype=torch.float64)
    labels = torch.tensor([0] * 10 + [1] * 5)
    # spec >= 0.9: at most one negative (9) at or above t, so t > 8; best t = 8.5: positives 9.5, 8.5 -> 0.4
    assert S.sensitivity_at_specificity(scores, labels, 0.9) == pytest.approx(0.4)
    # spec >= 0.8: t > 7; best t = 7.5 -> 0.6; spec >= 0.7: t > 6, still 0.6 (no positive in 6..7.5)
    assert S.sensitivity_at_specificity(scores, labels, 0.8) == pytest.approx(0.6)
    assert S.sensitivity_at_specificity(scores, labels, 0.7) == pytest.approx(0.6)
    # spec >= 0.3: t > 2; t = 2.5 takes the tied pair together -> 1.0
    assert S.sensitivity_at_specificity(scores, labels, 0.3) == pytest.approx(1.0)
    # sens >= 0.8 needs the tied pair: t = 2.5, negatives 3..9 above -> spec 0.3; sens >= 0.6: t = 7.5 -> 0.8
    assert S.specificity_at_sensitivity(scores, labels, 0.8) == pytest.approx(0.3)
    assert S.specificity_at_sensitivity(scores, labels, 0.6) == pytest.approx(0.8)


def test_perfect_and_reversed():
    assert S.sensitivity_at_specificity([0, 1, 2, 3], [0, 0, 1, 1], 1.0) == 1.0
    assert S.sensitivity_at_specificity([3, 2, 1, 0], [0, 0, 1, 1], 0.9) == 0.0
    assert S.roc_auc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        S.sensitivity_at_specificity([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        S.roc_curve([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        S.sensitivity_at_specificity(SCORES, LABELS, 90)
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        S.roc_curve([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="finite"):
        S.roc_curve([float("nan"), 0.2], [0, 1])


def test_balanced_class_weights():
    assert S.balanced_class_weights([0, 0, 0, 1]).tolist() == pytest.approx([2 / 3, 2.0])
    assert S.balanced_class_weights([0, 1, 2, 2]).tolist() == pytest.approx([4 / 3, 4 / 3, 2 / 3])
    with pytest.raises(ValueError, match="no example"):
        S.balanced_class_weights([0, 0, 2])


def test_weighted_classification_loss_exact():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    task = S.WeightedClassification([1.0, 3.0])
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    expected = (1 * ce[0] + 3 * ce[1] + 3 * ce[2]) / 7
    assert task.loss(logits, (None, y)).item() == pytest.approx(expected.item())
    assert S.WeightedClassification([1.0, 1.0]).loss(logits, (None, y)).item() == pytest.approx(ce.mean().item())
    assert task.config()["class_weights"] == [1.0, 3.0]
    with pytest.raises(ValueError, match="positive"):
        S.WeightedClassification([1.0, 0.0])


def test_weighted_task_trains_with_fit():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = (torch.arange(32) % 4 == 0).long()
    ds = wb.data.ImageDataset(images, labels, ["no", "yes"])
    model = wb.create_model("mlp", num_classes=2, in_chans=3, img_size=8, depth=1, width=16)
    res = wb.fit(model, ds, task=S.WeightedClassification(S.balanced_class_weights(labels)), epochs=1,
                 batch_size=16, augment=None, progress=False)
    scores = S.positive_scores(res.model, ds)
    assert scores.shape == (32,) and ((scores >= 0) & (scores <= 1)).all()
