"""Stitching (SN-Net, arXiv 2302.06586): least squares, self-stitches, costs, positions, the family and its training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.transfer.stitch import (SNNet, StitchedNet, StitchLayer, StitchSampling, family_positions, family_run,
                                       least_squares_stitch, stitch_pieces, stitch_family, stitch_networks, stitch_positions)


def resnet(depth=8, width=4, seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model(f"resnet{depth}", width=width, **kw).eval()


def images(n=16, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --- least squares ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_least_squares_matches_numpy(bias):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 6, 3, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, 3, 4, generator=g,
                                                                                   dtype=torch.float64)
    w, b = least_squares_stitch(x, y, bias=bias)
    xr = x.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    yr = y.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    if bias:
        xr = np.concatenate([xr, np.ones((len(xr), 1))], 1)
    want = np.linalg.lstsq(xr, yr, rcond=None)[0]
    np.testing.assert_allclose(w.numpy(), want[:6].T, atol=1e-10)
    if bias:
        np.testing.assert_allclose(b.numpy(), want[6], atol=1e-10)
    else:
        assert b is None


def test_least_squares_recovers_an_exact_map_on_tokens_and_vectors():
    g = torch.Generator().manual_seed(2)
    w, b = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    for shape in ((3, 9, 7), (30, 7)):  # tokens, vectors
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        got_w, got_b = least_squares_stitch(x, x @ w.T + b)
        torch.testing.assert_close(got_w, w, atol=1e-10, rtol=0)
        torch.testing.assert_close(got_b, b, atol=1e-10, rtol=0)


def test_least_squares_refuses_mismatched_activations():
    with pytest.raises(ValueError, match=r"same images at the same positions.*\[2, 3, 4, 4\].*\[2, 3, 2, 2\]"):
        least_squares_stitch(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 2, 2))


def test_stitch_layer_resamples_by_integer_factors():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down, up = StitchLayer(1, 1, down=2, bias=False), StitchLayer(1, 1, up=2, bias=False)
    for layer in (down, up):
        torch.nn.init.ones_(layer.proj.weight)
    torch.testing.assert_close(down(x), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert up(x).shape == (1, 1, 8, 8) and torch.equal(up(x)[0, 0, 2:4, 2:4], torch.full((2, 2), 5.0))
    with pytest.raises(ValueError, match="kind must be"):
        StitchLayer(1, 1, kind="attention")


# --- a network stitched into itself ------------------------------------------------------------------

@pytest.mark.parametrize("front,back", [("stem", "layer1.0"), ("layer1.0", "layer2.0"), ("layer2.0", "layer3.0"),
                                        ("layer3.0", "hook_pool"), ("hook_pool", "fc")])
def test_self_stitch_is_the_identity_and_the_same_function(front, back):
    model, x = resnet(), images(32)
    net = stitch_networks(model, model, front, back, x)
    w, b = net.stitch.proj.weight.detach(), net.stitch.proj.bias.detach()
    w = w[:, :, 0, 0] if w.ndim == 4 else w
    assert net.stitch.kind == ("linear" if front == "hook_pool" else "conv")
    torch.testing.assert_close(w, torch.eye(len(w)), atol=1e-5, rtol=0)
    torch.testing.assert_close(b, torch.zeros(len(w)), atol=1e-5, rtol=0)
    torch.testing.assert_close(net.eval()(x), model(x), atol=1e-4, rtol=1e-4)
    assert net.ls_residual < 1e-5


def test_self_stitch_of_a_vit_on_tokens():
    torch.manual_seed(0)
    vit = wb.create_model("vit_tiny", dim=24, depth=2, heads=2).eval()
    x = images(8)
    for front, back in [("hook_embed", "blocks.0"), ("blocks.0", "blocks.1")]:
        net = stitch_networks(vit, vit, front, back, x)
        assert net.stitch.kind == "linear"
        torch.testing.assert_close(net.stitch.proj.weight.detach(), torch.eye(24), atol=1e-5, rtol=0)
        torch.testing.assert_close(net.eval()(x), vit(x), atol=1e-4, rtol=1e-4)


def test_pieces_compose_to_the_model():
    model, x = resnet(20, 4), images(4)
    out = x
    for _, p in stitch_pieces(model):
        out = p(out)
    torch.testing.assert_close(out, model(x))
    with pytest.raises(TypeError, match="CifarResNet .* VisionTransformer"):
        stitch_pieces(wb.create_model("mlp"))


# --- costs -----------------------------------------------------------------------------------------

def _rows(model):
    t = wb.models.summary(model).table
    return dict(zip(t.block, t.macs))


def test_macs_of_a_stitched_network_are_the_sum_of_its_parts():
    a, b = resnet(8, 4), resnet(20, 8, seed=1)
    net = stitch_networks(a, b, "layer2.0", "layer3.0", images(8))  # A: 8 channels at 16x16 -> B: 16 channels at 16x16
    ra, rb = _rows(a), _rows(b)
    want = (ra["stem"] + ra["layer1.0"] + ra["layer2.0"] + 8 * 16 * 16 * 16
            + sum(rb[f"layer3.{i}"] for i in range(3)) + rb["fc"])
    assert wb.models.summary(net).macs == want
    # with resample: A's 32x32 map after layer1.0 pooled to B's 16x16 input of layer3.0 (16 channels there)
    pooled = stitch_networks(a, b, "layer1.0", "layer3.0", images(8), resample=True)
    assert pooled.stitch.down == 2
    assert wb.models.summary(pooled).macs == (ra["stem"] + ra["layer1.0"] + 4 * 16 * 16 * 16
                                              + sum(rb[f"layer3.{i}"] for i in range(3)) + rb["fc"])


# --- positions and bad input -------------------------------------------------------------------------

def test_positions_of_two_depths():
    a, b = resnet(8, 4), resnet(20, 8)
    assert family_positions(a, b) == [("stem", "layer1.0"), ("layer1.0", "layer1.2"), ("layer2.0", "layer2.2"),
                                      ("layer3.0", "layer3.2"), ("hook_pool", "fc")]
    same = family_positions(resnet(20, 4), b)
    names = [n for n, _ in stitch_pieces(b)]
    assert same == [(names[k], names[k + 1]) for k in range(len(names) - 1)]
    valid = stitch_positions(a, b)
    assert ("layer1.0", "layer2.0") in valid and ("layer1.0", "layer2.1") not in valid
    assert ("hook_pool", "fc") in valid and ("layer3.0", "fc") not in valid
    assert ("layer1.0", "layer2.1") in stitch_positions(a, b, resample=True)


def test_bad_stitches_name_the_shapes_and_the_valid_positions():
    a, b = resnet(8, 4), resnet(20, 8)
    with pytest.raises(ValueError, match=r"after 'layer1.0' \(4x32x32\) into B's input at 'layer3.1' \(32x8x8\).*"
                                         r"resample=True.*Valid backs for front 'layer1.0': "
                                         r"layer1.0, layer1.1, layer1.2, layer2.0"):
        stitch_networks(a, b, "layer1.0", "layer3.1")
    with pytest.raises(ValueError, match=r"'layer3.0' \(16x8x8\) into B's input at 'fc' \(32\).*maps and vectors"):
        stitch_networks(a, b, "layer3.0", "fc")
    with pytest.raises(ValueError, match=r"'layer9.0' is not a piece .*stem, layer1.0, layer2.0, layer3.0, hook_pool"):
        stitch_networks(a, b, "layer9.0", "layer1.0")
    with pytest.raises(ValueError, match=r"'stem' is not a piece of the back network .*layer1.0, layer1.1"):
        stitch_networks(a, b, "stem", "stem")
    with pytest.raises(ValueError, match="differ in num_classes"):
        stitch_networks(a, resnet(8, 4, num_classes=5), "stem", "layer1.0")
    torch.manual_seed(0)
    vit = wb.create_model("vit_tiny", dim=24, depth=2, heads=2)
    with pytest.raises(ValueError, match=r"\(65x24\).*maps and vectors or tokens cannot be joined"):
        stitch_networks(vit, b, "blocks.0", "layer1.0")


# --- the family and its training ------------------------------------------------------------------

def test_family_runs_each_configuration_with_one_set_of_weights():
    a, b = resnet(8, 4), resnet(8, 8, seed=1)
    x = images(16)
    fam = stitch_family(a, b, x)
    assert isinstance(fam, SNNet) and fam.configurations[:2] == ["A", "B"] and len(fam.configurations) == 2 + 5
    n_params = sum(p.numel() for p in fam.parameters())
    assert n_params == (sum(p.numel() for p in a.parameters()) + sum(p.numel() for p in b.parameters())
                        + sum(p.numel() for p in fam.stitches.parameters()))
    fam.eval()
    torch.testing.assert_close(fam(x, config="A"), a(x))
    torch.testing.assert_close(fam(x, config="B"), b(x))
    macs = []
    for c in fam.configurations[2:]:
        net = fam.network(c)
        assert isinstance(net, StitchedNet)
        torch.testing.assert_close(fam(x, config=c), net(x))
        macs.append(wb.models.summary(net).macs)
        front, back = c.split(">")
        single = stitch_networks(a, b, front, back, x)  # the same least-squares layer when built alone
        torch.testing.assert_close(single.stitch.proj.weight, fam.stitches[len(macs) - 1].proj.weight)
    lo, hi = wb.models.summary(a).macs, wb.models.summary(b).macs
    assert macs == sorted(macs, reverse=True) and lo < min(macs) and max(macs) < hi * 1.1
    with pytest.raises(ValueError, match="unknown configuration 'C'; choose one of A, B, stem>layer1.0"):
        fam(x, config="C")


def test_sampling_is_a_pure_function_of_the_step():
    fam = stitch_family(resnet(8, 4), resnet(8, 8, seed=1))
    task = StitchSampling(seed=3)
    drawn = [task.sample(fam, t) for t in range(200)]
    assert drawn == [StitchSampling(seed=3).sample(fam, t) for t in range(200)]
    assert set(drawn) == set(fam.configurations[2:])  # frozen anchors: only stitches are drawn
    fam.train_anchors = True
    assert set(task.sample(fam, t) for t in range(200)) == set(fam.configurations)


@pytest.fixture(scope="module")
def shapes():
    return wb.load("shapes", "train", subset=128), wb.load("shapes", "test", subset=64)


def test_joint_training_of_the_stitches_leaves_the_anchors_alone(shapes):
    train, test = shapes
    a, b = resnet(8, 4, num_classes=train.num_classes), resnet(8, 8, seed=1, num_classes=train.num_classes)
    fam = stitch_family(a, b, train.normalize(train.images[:32]))
    before = {k: v.clone() for k, v in fam.state_dict().items()}
    task = StitchSampling(seed=1)
    res = wb.fit(fam, train, test, task=task, epochs=1, batch_size=32, lr=0.05, progress=False)
    after = fam.state_dict()
    anchors = [k for k in before if k.startswith("anchors.")]
    assert anchors and all(torch.equal(before[k], after[k]) for k in anchors)  # weights and BN statistics
    drawn = {task.sample(fam, t) for t in range(len(train) // 32)}
    for i, c in enumerate(fam.configurations[2:]):  # exactly the stitches drawn at the 4 steps changed
        assert torch.equal(before[f"stitches.{i}.proj.weight"], after[f"stitches.{i}.proj.weight"]) == (c not in drawn)
    assert 0 < len(drawn) < 5
    assert {"test_acc", "test_acc_min"} <= set(res.history.columns)
    assert res.history["test_acc_min"].iloc[-1] <= res.history["test_acc"].iloc[-1]
    full = stitch_family(a, b, train.normalize(train.images[:32]), train_anchors=True)
    wb.fit(full, train, task=StitchSampling(), epochs=1, batch_size=32, lr=0.05, progress=False)
    assert not torch.equal(full.anchors[1].fc.weight, b.fc.weight)  # SN-Net's full joint training moves the anchors
    assert torch.equal(fam.anchors[1].fc.weight, b.fc.weight)
    with pytest.raises(TypeError, match="StitchSampling trains an SNNet"):
        wb.fit(a, train, task=StitchSampling(), epochs=1, progress=False)


def test_a_single_stitch_fine_tunes_alone(shapes):
    train, _ = shapes
    a, b = resnet(8, 4, num_classes=train.num_classes), resnet(8, 8, seed=1, num_classes=train.num_classes)
    net = stitch_networks(a, b, "layer1.0", "layer2.0", train.normalize(train.images[:32])).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = wb.fit(net, train, epochs=1, batch_size=32, lr=0.05, progress=False)
    assert res.config["trainable"] == ["stitch.proj.bias", "stitch.proj.weight"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items() if not k.startswith("stitch."))
    assert all(p.requires_grad for p in list(a.parameters()) + list(b.parameters()))  # the originals: untouched


def test_family_run_record(monkeypatch):
    fit = dict(epochs=1, batch_size=32, lr=0.05)
    rec = family_run(0, anchors=[("resnet8", dict(width=4)), ("resnet8", dict(width=8))], anchor_fit=fit,
                     tune_fit=dict(fit, label_smoothing=0.1), dataset="shapes", train_subset=128, test_subset=64,
                     ls_images=32)
    n = len(rec["config"])
    assert n == 7 and all(len(rec[k]) == n for k in ("macs", "params", "acc_random", "acc_init", "acc", "ls_residual"))
    assert rec["acc"][:2] == rec["acc_init"][:2] == rec["acc_random"][:2] == rec["anchor_acc"]  # the anchors are frozen
    assert rec["ls_residual"][:2] == [None, None] and all(0 <= r < 1 for r in rec["ls_residual"][2:])
    assert rec["macs"][0] < min(rec["macs"][2:]) and rec["macs"][1] == max(rec["macs"][:2])
    again = family_run(0, anchors=[("resnet8", dict(width=4)), ("resnet8", dict(width=8))], anchor_fit=fit,
                       tune_fit=dict(fit, label_smoothing=0.1), dataset="shapes", train_subset=128, test_subset=64,
                       ls_images=32)
    assert again["acc"] == rec["acc"] and again["tune_seconds"] == rec["tune_seconds"]  # from the cache
