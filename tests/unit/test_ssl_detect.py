"""wb.ssl.detect: social-network perturbations as a pure function of the seed, the real-vs-synthetic
data, the two detector objectives at the same views, and the measures (AUC, balanced accuracy)."""
import io
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import workbench as wb
from workbench.data import ImageDataset
from workbench.ssl import (Detection, DetectionData, balanced_accuracy, detection_data, detector_run,
                           evaluate_detector, perturb, roc_auc, supcon_loss)


def _u8(n, seed=0, c=3):
    return torch.randint(0, 256, (n, c, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _smooth(n, seed=0):  # images with structure, where resizing and JPEG change something but not everything
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)), size=32, mode="bilinear")
    return (x * 255).round().to(torch.uint8)


# -- perturbations ---------------------------------------------------------------------------------

def test_perturb_is_a_pure_function_of_the_seed():
    x = _smooth(40)
    a = perturb(x, seed=3)
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, perturb(x, seed=3)) and not torch.equal(a, perturb(x, seed=4))
    assert not torch.equal(a, x)
    assert torch.equal(perturb(x, 0, resize_prob=0, jpeg_prob=0), x)
    assert torch.equal(perturb(x, 0, resize_prob=1, scale=(1.0, 1.0), jpeg_prob=0), x)  # 32 -> 32: nothing


def test_perturb_matches_per_image_references():
    x = _smooth(6)
    # JPEG only, one quality: PIL's own round trip of each image
    got = perturb(x, 0, resize_prob=0, jpeg_prob=1, quality=(70, 70))
    for i in range(len(x)):
        buf = io.BytesIO()
        Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=70)
        want = torch.from_numpy(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy())
        assert torch.equal(got[i], want.permute(2, 0, 1))
    # resizing only, one factor: each image down to 16 and back, as the batch of one
    got = perturb(x, 0, resize_prob=1, scale=(0.5, 0.5), jpeg_prob=0)
    down = F.interpolate(x[2:3].float(), size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    want = F.interpolate(down, size=(32, 32), mode="bilinear", align_corners=False).round().clamp(0, 255).byte()
    assert torch.equal(got[2:3], want)
    gray = perturb(_smooth(3)[:, :1], 0, jpeg_prob=1)
    assert gray.shape == (3, 1, 32, 32)


def test_perturb_bad_input():
    x = _smooth(4)
    with pytest.raises(ValueError, match="uint8"):
        perturb(x.float(), 0)
    with pytest.raises(ValueError, match="resize_prob"):
        perturb(x, 0, resize_prob=1.5)
    with pytest.raises(ValueError, match="quality"):
        perturb(x, 0, quality=(50, 101))
    with pytest.raises(ValueError, match="scale"):
        perturb(x, 0, scale=(0.0, 1.0))


# -- the data --------------------------------------------------------------------------------------

def test_detection_data_labels_sources_and_the_same_perturbation_for_both_classes():
    real = ImageDataset(_smooth(5, 0), torch.zeros(5, dtype=torch.int64), ["x"], "cifar10", mean=(0.4, 0.4, 0.4),
                        std=(0.2, 0.2, 0.2))
    fake = {"vae": _smooth(3, 1), "gan": _smooth(2, 2)}
    d = detection_data(real, fake, seed=7)
    assert d.labels.tolist() == [0] * 5 + [1] * 5 and d.sources.tolist() == [0] * 5 + [1] * 3 + [2] * 2
    assert d.source_names == ["real", "vae", "gan"] and d.classes == ["real", "synthetic"] and d.mean == (0.4,) * 3
    assert torch.equal(d.images, perturb(torch.cat([real.images, fake["vae"], fake["gan"]]), 7))
    clean = detection_data(real, fake, perturbation={"resize_prob": 0, "jpeg_prob": 0})
    assert torch.equal(clean.images, torch.cat([real.images, fake["vae"], fake["gan"]]))
    sub = d.subset(6, seed=1)
    assert isinstance(sub, DetectionData) and torch.equal(sub.labels, (sub.sources > 0).long())
    by = d.by_source()
    assert by.classes == ["real", "vae", "gan"] and torch.equal(by.labels, d.sources) and by.num_classes == 3
    assert d.of_source("gan").sources.tolist() == [2, 2]
    with pytest.raises(ValueError, match="unknown source"):
        d.of_source("diffusion")
    with pytest.raises(ValueError, match="at least one generator"):
        detection_data(real, {})
    with pytest.raises(ValueError, match="'real' names"):
        detection_data(real, {"real": fake["vae"]})
    with pytest.raises(ValueError, match="same size"):
        detection_data(real, {"vae": _u8(2)[:, :, :16, :16]})


# -- measures --------------------------------------------------------------------------------------

def test_roc_auc_known_answers():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)
    assert roc_auc([0.1, 0.2, 0.9], [0, 1, 1]) == 1.0 and roc_auc([0.9, 0.2, 0.1], [0, 1, 1]) == 0.0
    g = torch.Generator().manual_seed(0)
    s, y = torch.randint(0, 5, (30,), generator=g).double(), torch.randint(0, 2, (30,), generator=g)
    pairs = [(a, b) for a, b in itertools.product(s[y == 1].tolist(), s[y == 0].tolist())]
    brute = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert roc_auc(s, y) == pytest.approx(brute)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="one label per score"):
        roc_auc([0.1, 0.2], [1])


def test_balanced_accuracy_known_answer():
    assert balanced_accuracy([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx((2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="threshold the scores"):
        balanced_accuracy([0.2, 0.7], [0, 1])


# -- the detector ----------------------------------------------------------------------------------

def _encoder(seed=0, classes=3):
    torch.manual_seed(seed)
    return wb.create_model("ssl_encoder", backbone="resnet8", backbone_kwargs={"width": 4}, proj_dim=8,
                           num_classes=classes)


class _S:
    seed, step = 1, 5


def test_supcon_objective_trains_the_classifier_on_detached_features():
    model = _encoder()
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 0, 2, 1, 0])  # sources: real, generators 1 and 2
    ce, sc = Detection("ce"), Detection("supcon", temperature=0.2)
    for t in (ce, sc):
        t.mean, t.std = (0.5,) * 3, (0.25,) * 3
    out_ce, out_sc = ce.forward(model, (x, y), _S()), sc.forward(model, (x, y), _S())
    assert torch.equal(out_ce[0], out_sc[0])  # the same views from the same seeds: the same logits
    loss = sc.loss(out_sc, (x, y))
    z = out_sc[1]
    contrastive = supcon_loss(z, torch.tensor([0, 1, 0, 1, 1, 0]), 0.2) + supcon_loss(z[[1, 3, 4]],
                                                                                     torch.tensor([1, 2, 1]), 0.2)
    assert torch.allclose(sc.contrastive_loss(z, y), contrastive)  # ImagiNet's two terms: origin, then generator
    assert torch.allclose(loss, F.cross_entropy(out_sc[0], y.repeat(2)) + contrastive)
    assert torch.allclose(ce.loss(out_ce, (x, y)), F.cross_entropy(out_ce[0], y.repeat(2)))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    sc.contrastive_loss(sc.forward(model, (x, y), _S())[1], y).backward()
    for n, p in model.named_parameters():
        if n.startswith("backbone.fc"):
            assert p.grad is None  # the contrastive term never reaches the classifier
        else:
            assert torch.allclose(grads[n], p.grad, atol=1e-6), n  # and cross-entropy never reaches the backbone


def test_detection_bad_input():
    with pytest.raises(ValueError, match="ce, supcon"):
        Detection("triplet")
    with pytest.raises(ValueError, match="temperature"):
        Detection("supcon", temperature=0)
    data = detection_data(_smooth(8), {"vae": _smooth(8, 1)})
    with pytest.raises(ValueError, match="num_classes=2"):
        wb.fit(wb.create_model("ssl_encoder", backbone="resnet8", backbone_kwargs={"width": 4}), data,
               task=Detection(), epochs=1, augment=None, progress=False)
    with pytest.raises(TypeError, match="ssl_encoder"):
        wb.fit(wb.create_model("resnet8", num_classes=2), data, task=Detection(), epochs=1, augment=None,
               progress=False)
    with pytest.raises(TypeError, match="DetectionData"):
        wb.ssl.train_detector("ce", ImageDataset(_smooth(4), torch.zeros(4, dtype=torch.int64), ["x"]))


def test_detector_trains_and_a_leave_one_out_run_is_a_record():
    real = ImageDataset(_smooth(48, 0), torch.zeros(48, dtype=torch.int64), ["x"])
    test_real = ImageDataset(_smooth(16, 9), torch.zeros(16, dtype=torch.int64), ["x"])
    fake = {"a": _u8(24, 1), "b": _smooth(24, 2) // 2, "c": 255 - _smooth(24, 3)}
    fake_test = {k: v[:12] for k, v in fake.items()}
    rec = detector_run("supcon", "c", 0, real_train=real, real_test=test_real, synthetic_train=fake,
                       synthetic_test=fake_test, model_kwargs={"backbone_kwargs": {"width": 4}, "proj_dim": 8},
                       epochs=1, batch_size=16, optimizer="adam", lr=1e-3)
    assert rec["objective"] == "supcon" and rec["held_out"] == "c"
    for k in ("auc", "balanced_acc", "acc_real", "acc_held_out", "seen_auc", "seen_balanced_acc", "train_acc"):
        assert 0 <= rec[k] <= 1, k
    with pytest.raises(ValueError, match="held_out must name"):
        detector_run("ce", "z", 0, real_train=real, real_test=test_real, synthetic_train=fake, synthetic_test=fake_test)
    data = detection_data(test_real, fake_test)
    model = _encoder(classes=4)
    m = evaluate_detector(model, data)
    assert set(m) == {"auc", "balanced_acc", "acc_real", "acc_a", "acc_b", "acc_c"}
    model.eval()
    with torch.no_grad():
        p_real = torch.softmax(model.backbone(data.normalize(data.images)), 1)[:, 0].double()
    assert torch.allclose(wb.ssl.detector_scores(model, data), 1 - p_real, atol=1e-6)  # P(synthetic) = 1 - p(real)
