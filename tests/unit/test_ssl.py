"""wb.ssl's shared parts: SupCon, batched views, the encoder with a projection head, and the
evaluation of a representation (linear probe, k-NN, label subsets, fine-tuning, distillation, transfer)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

import workbench as wb
from workbench.ssl import (Contrastive, SupervisedContrastive, classifier_of, encode, fine_tune, knn_features,
                           label_subset, linear_probe_features, make_views, nt_xent, pseudo_label, supcon_loss,
                           to_shape)


def _supcon_by_hand(z, labels, tau):
    """Khosla et al. eq. 2 written as loops over anchors and positives."""
    n, v, _ = z.shape
    feats = [F.normalize(z[i, j].double(), dim=0) for j in range(v) for i in range(n)]
    lab = [int(labels[i]) for j in range(v) for i in range(n)]
    total, anchors = 0.0, 0
    for a in range(len(feats)):
        denom = sum(math.exp(float(feats[a] @ feats[k]) / tau) for k in range(len(feats)) if k != a)
        pos = [p for p in range(len(feats)) if p != a and lab[p] == lab[a]]
        if not pos:
            continue
        total += -sum(float(feats[a] @ feats[p]) / tau - math.log(denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_supcon_by_hand_and_equal_to_nt_xent_with_distinct_labels():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 2, 5, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    assert supcon_loss(z, labels, 0.3).item() == pytest.approx(_supcon_by_hand(z, labels, 0.3), rel=1e-5)
    distinct = torch.arange(6)
    assert supcon_loss(z, distinct, 0.5).item() == pytest.approx(nt_xent(z[:, 0], z[:, 1], 0.5)[0].item(), rel=1e-6)
    # one view per image: anchors without a positive (classes 2) are left out, the rest count
    one = z[:, 0]
    assert supcon_loss(one, labels, 0.3).item() == pytest.approx(_supcon_by_hand(one[:, None], labels, 0.3), rel=1e-5)


def test_supcon_bad_input():
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="temperature must be positive"):
        supcon_loss(z, torch.arange(4), 0.0)
    with pytest.raises(ValueError, match="integer labels \\[4\\]"):
        supcon_loss(z, torch.arange(3), 0.1)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(torch.randn(4, 3), torch.arange(4), 0.1)
    with pytest.raises(ValueError, match="temperature must be positive"):
        Contrastive(temperature=0)


@pytest.mark.parametrize("recipe", ["simclr", "simclr_blur", "crop_flip"])
def test_views_are_a_pure_function_of_the_seed(recipe):
    data = wb.load("shapes", "train", subset=16)
    x = data.normalize(data.images)
    a, b, c = (make_views(x, data.mean, data.std, s, recipe) for s in (3, 3, 4))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    # views stay in the range of normalized images (the un-normalize / re-normalize round trip)
    lo = (0 - torch.tensor(data.mean)) / torch.tensor(data.std)
    hi = (1 - torch.tensor(data.mean)) / torch.tensor(data.std)
    assert (a >= lo.view(1, -1, 1, 1) - 1e-4).all() and (a <= hi.view(1, -1, 1, 1) + 1e-4).all()


def test_views_of_gray_images_and_bad_input():
    x = torch.rand(4, 1, 28, 28)
    assert make_views(x, (0.5,), (0.25,), 0, "simclr").shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown view recipe"):
        make_views(x, (0.5,), (0.25,), 0, "jitter")
    with pytest.raises(ValueError, match="one per channel"):
        make_views(x, (0.5, 0.5, 0.5), (0.25,) * 3, 0)
    with pytest.raises(ValueError, match="unknown views"):
        Contrastive(views="rotate")


def test_simclr_views_training_resumes_exactly(tmp_path):
    data = wb.load("shapes", "train", subset=96)
    kw = dict(epochs=2, batch_size=32, lr=0.05, augment=None, progress=False, seed=0,
              task=SupervisedContrastive(0.2, views="simclr"))
    make = lambda: wb.create_model("ssl_encoder", backbone="resnet8", backbone_kwargs={"width": 4}, proj_dim=16)  # noqa: E731
    torch.manual_seed(0)
    full = wb.fit(make(), data, **kw)
    torch.manual_seed(0)
    wb.fit(make(), data, checkpoint_dir=tmp_path, stop_after_steps=4, **kw)
    torch.manual_seed(0)
    resumed = wb.fit(make(), data, checkpoint_dir=tmp_path, **kw)
    assert all(torch.equal(p, q) for p, q in zip(full.model.parameters(), resumed.model.parameters()))
    assert {"train_loss", "train_acc"} <= set(full.history.columns)


def test_ssl_encoder_features_projection_and_backbone():
    enc = wb.create_model("ssl_encoder", backbone="resnet8", backbone_kwargs={"width": 8}, proj_dim=12, proj_layers=3)
    x = torch.randn(3, 3, 32, 32)
    enc.eval()
    assert enc(x).shape == (3, 12)
    assert enc.features(x).shape == (3, 32) and enc.features(x, head_layers=2).shape == (3, 32)
    assert torch.equal(enc.features(x), enc.backbone.forward_features(x))
    assert enc.backbone(x).shape == (3, 10)
    with pytest.raises(ValueError, match="head_layers must be in 0..2"):
        enc.features(x, head_layers=3)
    with pytest.raises(ValueError, match="not ssl_encoder"):
        wb.create_model("ssl_encoder", backbone="ssl_encoder")
    head = classifier_of(enc, 10, head_layers=1)
    assert head(x).shape == (3, 10) and head.encoder is not enc
    net = classifier_of(enc, num_classes=4)
    assert net(x).shape == (3, 4) and enc.backbone.fc.out_features == 10  # the original is untouched


def test_linear_probe_is_the_optimum_of_its_objective():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(60, 4, generator=g)
    y = (z[:, 0] + 0.5 * z[:, 1] + 0.3 * torch.randn(60, generator=g) > 0).long() + (z[:, 2] > 1).long()
    wd = 1e-2
    out = linear_probe_features(z, y, z[:20], y[:20], steps=500, weight_decay=wd)
    # the same objective minimized by scipy: standardized features, mean CE + wd/2 ||W||^2
    a = ((z - z.mean(0)) / z.std(0)).double().numpy()
    k = 3
    onehot = np.eye(k)[y.numpy()]

    def f(theta):
        w, b = theta[:4 * k].reshape(4, k), theta[4 * k:]
        logits = a @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        loss = -np.mean(np.log((p * onehot).sum(1))) + 0.5 * wd * (w * w).sum()
        grad_logits = (p - onehot) / len(a)
        return loss, np.concatenate([(a.T @ grad_logits + wd * w).ravel(), grad_logits.sum(0)])

    res = minimize(f, np.zeros(5 * k), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    w = res.x[:4 * k].reshape(4, k)
    ce = res.fun - 0.5 * wd * (w * w).sum()
    assert out["train_loss"] == pytest.approx(ce, abs=1e-6)
    assert out["train_acc"] == pytest.approx(float(((a @ w + res.x[4 * k:]).argmax(1) == y.numpy()).mean()))
    with pytest.raises(ValueError, match="same D"):
        linear_probe_features(z, y, z[:, :3], y)


def test_knn_by_hand():
    db = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.2]])
    ydb = torch.tensor([0, 0, 1, 2])
    q = torch.tensor([[0.2, 1.0], [1.0, 0.05], [-1.0, 0.0]])
    yq = torch.tensor([1, 0, 1])
    assert knn_features(db, ydb, q, yq, k=1) == pytest.approx(2 / 3)  # the last query's neighbour is class 2
    # k = 3, a hot temperature: votes are nearly equal, so the majority of the 3 nearest wins
    assert knn_features(db, ydb, q[:1], torch.tensor([0]), k=3, temperature=100.0) == 1.0
    with pytest.raises(ValueError, match="k must be between 1 and the 4"):
        knn_features(db, ydb, q, yq, k=5)


def test_label_subset_is_balanced_nested_and_refuses_empty_classes():
    data = wb.load("shapes", "train", subset=1000)
    small, large = label_subset(data, 0.05, seed=3), label_subset(data, 0.2, seed=3)
    counts = torch.bincount(data.labels, minlength=data.num_classes)
    assert torch.equal(torch.bincount(small.labels, minlength=data.num_classes), (counts * 0.05).round().long())
    as_rows = lambda d: {(bytes(img.numpy().tobytes()), int(lab)) for img, lab in zip(d.images, d.labels)}  # noqa: E731
    assert as_rows(small) <= as_rows(large)
    with pytest.raises(ValueError, match="leaves class 0 .* with no example"):
        label_subset(data, 0.001)
    with pytest.raises(ValueError, match="share of the labels in \\(0, 1\\]"):
        label_subset(data, 0.0)


def test_fine_tune_is_cached_and_leaves_the_encoder_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    train, test = wb.load("shapes", "train", subset=128), wb.load("shapes", "test", subset=64)
    enc = wb.create_model("ssl_encoder", backbone="resnet8", backbone_kwargs={"width": 4},
                          num_classes=train.num_classes)
    before = [p.clone() for p in enc.parameters()]
    kw = dict(epochs=1, batch_size=32, lr=0.05, progress=False, seed=0)
    first = fine_tune(enc, train, test, **kw)
    again = fine_tune(enc, train, test, **kw)
    assert all(torch.equal(p, q) for p, q in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert all(torch.equal(p, q) for p, q in zip(before, enc.parameters()))
    assert len(list(tmp_path.rglob("*"))) > 0
    # distillation reads the teacher's predictions, never the labels
    relabeled = pseudo_label(first.model, test)
    with torch.no_grad():
        first.model.eval()
        assert torch.equal(relabeled.labels, first.model(test.normalize(test.images)).argmax(1))
    student = wb.create_model("resnet8", width=4, num_classes=train.num_classes)
    res = wb.ssl.distill(first.model, student, train, test, temperature=1.0, **kw)
    assert "train_kl" in res.history.columns


def test_to_shape_pads_gray_images_into_rgb():
    data = wb.load("shapes", "train", subset=8)
    gray = wb.data.ImageDataset(data.images[:, :1, 2:30, 2:30].contiguous(), data.labels, data.classes, mean=(0.4,),
                                std=(0.2,))
    out = to_shape(gray, 3, 32)
    assert out.images.shape == (8, 3, 32, 32) and out.mean == (0.4,) * 3
    assert torch.equal(out.images[:, 1, 2:30, 2:30], gray.images[:, 0]) and out.images[:, :, :2].sum() == 0
    assert to_shape(gray, 3, 20, mode="resize").images.shape == (8, 3, 20, 20)
    with pytest.raises(ValueError, match="use mode='resize'"):
        to_shape(gray, 1, 20)
    z, y = encode(wb.create_model("resnet8", width=4), out)
    assert z.shape == (8, 16) and torch.equal(y, out.labels)
