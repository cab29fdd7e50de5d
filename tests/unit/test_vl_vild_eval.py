import pytest
import torch

from workbench.vl import vild_eval as V


def test_fixed_classifier_orthonormal_and_seeded():
    w = V.fixed_classifier(7, 16, seed=3)
    assert w.shape == (7, 16)
    assert torch.allclose(w @ w.T, torch.eye(7), atol=1e-5)
    assert torch.equal(w, V.fixed_classifier(7, 16, seed=3))
    with pytest.raises(ValueError, match="n <= dim"):
        V.fixed_classifier(17, 16)


def test_subset_ap_counts_only_the_classes():
    box = torch.tensor([[0.0, 0, 10, 10]])
    box2 = torch.tensor([[12.0, 12, 30, 30]])
    targets = [{"boxes": torch.cat([box, box2]), "labels": torch.tensor([0, 1])}]
    # class 0 found exactly, class 1 missed (called class 2 instead)
    dets = [{"boxes": torch.cat([box, box2]), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 2])}]
    assert V.subset_ap(dets, targets, [0])["AP"] == pytest.approx(1.0)
    assert V.subset_ap(dets, targets, [1])["AP50"] == pytest.approx(0.0)
    assert V.subset_ap(dets, targets, [3])["AP"] != V.subset_ap(dets, targets, [3])["AP"]  # nan: nothing annotated
    with pytest.raises(ValueError, match="at least one class"):
        V.subset_ap(dets, targets, [])


def test_scene_targets():
    class Sc:
        boxes = torch.tensor([[[0.0, 0, 5, 5], [float("nan")] * 4]])
        items = torch.tensor([[3, -1]])
    t = V.scene_targets(Sc())
    assert t[0]["labels"].tolist() == [3] and t[0]["boxes"].shape == (1, 4)
