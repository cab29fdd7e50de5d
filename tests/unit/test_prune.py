"""wb.prune: masks, criteria and sparse training (known answers where they exist)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench import prune as P


def test_erk_densities_equal_the_formula_and_keep_the_budget():
    shapes = {"a": (16, 3, 3, 3), "b": (32, 16, 3, 3), "c": (10, 64)}
    size = {"a": 432, "b": 4608, "c": 640}
    raw = {"a": (16 + 3 + 3 + 3) / 432, "b": (32 + 16 + 3 + 3) / 4608, "c": (10 + 64) / 640}
    d = P.erk_densities(shapes, 0.5)
    # by hand: at 50% sparsity eps = 2840 / (25 + 54 + 74) = 18.6 would give "a" 1.07; kept dense, the
    # rescale (eps = 18.8) gives "c" 2.17, also kept dense; "b" takes what is left
    keep = 0.5 * sum(size.values())
    assert d["a"] == 1.0 and d["c"] == 1.0 and d["b"] == pytest.approx((keep - size["a"] - size["c"]) / size["b"])
    assert sum(d[n] * size[n] for n in d) == pytest.approx(keep)
    # at 80% sparsity no layer saturates: densities exactly proportional to the raw scores
    d = P.erk_densities(shapes, 0.8)
    assert d["b"] / d["c"] == pytest.approx(raw["b"] / raw["c"]) and d["a"] / d["b"] == pytest.approx(raw["a"] / raw["b"])
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        P.erk_densities(shapes, 1.0)


def test_global_magnitude_zeroes_exactly_the_smallest_share():
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4)
    masks = P.magnitude_masks(model, 0.7)
    w = torch.cat([p.detach().abs().flatten() for p in P.prunable(model).values()])
    m = torch.cat([masks[n].flatten() for n in P.prunable(model)])
    assert int((m == 0).sum()) == round(0.7 * w.numel())
    assert w[m == 0].max() <= w[m == 1].min()  # the s-quantile: every pruned weight below every kept one
    per_layer = P.magnitude_masks(model, 0.5, scope="layer")
    for n, p in P.prunable(model).items():
        assert int((per_layer[n] == 0).sum()) == round(0.5 * p.numel())


def test_random_masks_realize_their_densities_and_depend_on_the_seed():
    model = wb.create_model("resnet8", width=8)
    params = P.prunable(model)
    uniform = P.random_masks(model, 0.8, "uniform", seed=1)
    assert all(int(uniform[n].sum()) == round(0.2 * p.numel()) for n, p in params.items())
    erk = P.random_masks(model, 0.8, "erk", seed=1)
    dens = P.erk_densities({n: tuple(p.shape) for n, p in params.items()}, 0.8)
    assert all(int(erk[n].sum()) == round(dens[n] * p.numel()) for n, p in params.items())
    assert not torch.equal(erk["layer1.0.conv1.weight"], P.random_masks(model, 0.8, "erk", seed=2)["layer1.0.conv1.weight"])
    with pytest.raises(ValueError, match="'uniform' or 'erk'"):
        P.random_masks(model, 0.5, "gaussian")


def test_snip_keeps_the_largest_weight_times_gradient_and_leaves_gradients_alone():
    data = wb.data.load("shapes", "train", subset=32)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4, num_classes=data.num_classes)
    x, y = data.normalize(data.images), data.labels
    masks = P.snip_masks(model, x, y, 0.9)
    params = P.prunable(model)
    loss = nn.functional.cross_entropy(model.train()(x), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    score = torch.cat([(p.detach() * g).abs().flatten() for p, g in zip(params.values(), grads)])
    m = torch.cat([masks[n].flatten() for n in params])
    assert int(m.sum()) == score.numel() - round(0.9 * score.numel()) and score[m == 0].max() <= score[m == 1].min()
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="give a batch"):
        P.snip_masks(model, None, None, 0.5)


def test_masked_weights_stay_exactly_zero_through_sgd_with_momentum_and_weight_decay():
    train = wb.data.load("shapes", "train", subset=256)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4, num_classes=train.num_classes)
    before = {n: p.detach().clone() for n, p in P.prunable(model).items()}
    masks = P.random_masks(model, 0.9, "erk", seed=0)
    wb.fit(model, train, epochs=50, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4, max_steps=100,
           algorithms=[P.Masked(masks)], progress=False)
    for n, p in P.prunable(model).items():
        assert torch.equal(p.detach()[masks[n] == 0], torch.zeros(int((masks[n] == 0).sum())))  # bit for bit
        assert not torch.equal(p.detach()[masks[n] == 1], before[n][masks[n] == 1])  # the kept ones trained
    report = P.sparsity_report(model)
    assert report.attrs["sparsity"] == pytest.approx(0.9, abs=1e-3)
    # decoupled weight decay and Adam's moments keep them zero too
    wb.fit(model, train, epochs=5, batch_size=64, lr=1e-3, optimizer="adamw", weight_decay=0.05, max_steps=20,
           algorithms=[P.Masked(masks)], progress=False)
    assert all(torch.equal(p.detach()[masks[n] == 0], torch.zeros(int((masks[n] == 0).sum())))
               for n, p in P.prunable(model).items())
    assert report.attrs["macs_kept"] < 0.2 * report.attrs["macs"]


def test_sparsity_report_and_masked_config_and_bad_input():
    model = wb.create_model("resnet8", width=4)
    masks = P.magnitude_masks(model, 0.5)
    report = P.sparsity_report(model, masks)
    assert report.attrs["kept"] == sum(int(m.sum()) for m in masks.values())
    assert report.attrs["params"] == sum(p.numel() for p in P.prunable(model).values())
    assert (report.macs > 0).all() and report.macs_kept.sum() == pytest.approx(report.attrs["macs_kept"])
    a, b = P.Masked(masks), P.Masked(P.magnitude_masks(model, 0.6))
    assert a.config()["masks"] != b.config()["masks"]  # train_model keeps runs with other masks apart
    bad = dict(masks)
    bad["layer1.0.conv1.weight"] = torch.ones(3, 3)
    with pytest.raises(ValueError, match="has shape"):
        P.apply_masks(model, bad)
    with pytest.raises(ValueError, match="no parameter"):
        P.apply_masks(model, {"nope.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="not conv or linear layers"):
        P.prunable(model, ["nope"])


def test_layer_macs_by_hand():
    model = wb.create_model("resnet8", width=4)
    macs = wb.models.layer_macs(model)
    # stem conv: 32x32 outputs x 4 channels x (3 x 3 x 3); the classifier: 16 features x 10 classes
    assert macs["stem.0"] == 32 * 32 * 4 * 27 and macs["fc"] == 16 * 10
    assert macs["layer2.0.conv1"] == 16 * 16 * 8 * 4 * 9  # stride 2: 16x16 outputs, 8 channels from 4


def test_train_sparse_masks_the_initial_weights_and_caches_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    train, test = wb.data.load("shapes", "train", subset=128), wb.data.load("shapes", "test", subset=64)
    kw = dict(epochs=1, batch_size=64, model_kwargs={"width": 4}, progress=False)
    erk = P.train_sparse("resnet8", train, test, method="erk", sparsity=0.8, seed=3, **kw)
    torch.manual_seed(3)  # the network seed 3 built
    init = wb.create_model("resnet8", width=4, num_classes=train.num_classes)
    want = P.random_masks(init, 0.8, "erk", seed=3)
    assert all(torch.equal(erk.masks[n], want[n]) for n in want)
    assert P.sparsity_report(erk.model).attrs["sparsity"] == pytest.approx(0.8, abs=1e-3)
    again = P.train_sparse("resnet8", train, test, method="erk", sparsity=0.8, seed=3, **kw)  # from the cache
    assert torch.equal(again.model.fc.weight.cpu(), erk.model.fc.weight.cpu())
    dense = P.train_sparse("resnet8", train, test, method="dense", sparsity=0.0, seed=3, **kw)
    assert dense.masks == {} and P.sparsity_report(dense.model).attrs["sparsity"] < 0.01
    snip = P.train_sparse("resnet8", train, test, method="snip", sparsity=0.8, seed=3, **kw)
    assert not torch.equal(snip.masks["layer3.0.conv2.weight"], erk.masks["layer3.0.conv2.weight"])
    with pytest.raises(ValueError, match="method is one of"):
        P.train_sparse("resnet8", train, test, method="magic", sparsity=0.5)
    with pytest.raises(ValueError, match="dense run has sparsity 0"):
        P.train_sparse("resnet8", train, test, method="dense", sparsity=0.5)
