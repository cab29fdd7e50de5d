"""wb.prune structured masks: channels and blocks as masks, and compaction with Torch-Pruning."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.prune import Masked, apply_masks, sparsity_report
from workbench.prune.structured import block_masks, channel_masks, compact

INNER = ["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"]  # resnet8: one block per stage


def _with_statistics(name: str = "resnet8", seed: int = 0, **kw) -> nn.Module:
    """A tiny ResNet whose BatchNorms hold non-trivial statistics and affine parameters, as after training
    (with the defaults, mean 0 and bias 0, a zero filter would give a zero channel even without BN masks)."""
    torch.manual_seed(seed)
    model = wb.create_model(name, width=4, **kw)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.5)
    return model


def _batch(n: int = 16) -> torch.Tensor:
    data = wb.data.load("shapes", "train", subset=64)
    return data.normalize(data.images[:n])  # [n, 3, 32, 32]


def test_l1_channel_masks_remove_the_smallest_filters_and_their_bn_entries():
    model = _with_statistics()
    masks = channel_masks(model, 0.5)
    assert set(masks) == {f"{n}.{p}" for c in INNER for n, p in [(c, "weight"), (c[:-5] + "bn1", "weight"),
                                                                 (c[:-5] + "bn1", "bias")]}
    for name in INNER:
        w = model.get_submodule(name).weight.detach()  # [out, in, 3, 3]
        m, bn_w, bn_b = masks[f"{name}.weight"], masks[f"{name[:-5]}bn1.weight"], masks[f"{name[:-5]}bn1.bias"]
        keep = m.flatten(1)[:, 0]  # [out]
        assert torch.equal(m, keep[:, None, None, None].expand_as(m))  # whole filters, all in or all out
        assert torch.equal(bn_w, keep) and torch.equal(bn_b, keep)
        assert int((keep == 0).sum()) == round(0.5 * w.shape[0])
        l1 = w.abs().sum(dim=(1, 2, 3))  # [out]
        assert l1[keep == 0].max() < l1[keep == 1].min()  # the smallest L1 norms went
    # at most all but one channel goes; naming layers picks them (a trailing .weight is fine)
    few = channel_masks(model, 0.99, layers=["layer2.0.conv1.weight"])
    assert list(few) == ["layer2.0.conv1.weight", "layer2.0.bn1.weight", "layer2.0.bn1.bias"]
    assert int(few["layer2.0.bn1.weight"].sum()) == 1
    assert all(int(m.sum()) == m.numel() for m in channel_masks(model, 0.0).values())


def test_random_and_global_channel_masks():
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=8)
    a, b = (channel_masks(model, 0.25, "random", seed=s)["layer3.0.bn1.weight"] for s in (1, 2))
    assert int((a == 0).sum()) == int((b == 0).sum()) == round(0.25 * 32) and not torch.equal(a, b)
    assert torch.equal(a, channel_masks(model, 0.25, "random", seed=1)["layer3.0.bn1.weight"])
    # global: round(s * total) of all chosen filters go, lowest L1 first, each layer keeping one at least
    masks = channel_masks(model, 0.6, scope="global")
    keep = torch.cat([masks[f"{c[:-5]}bn1.weight"] for c in INNER])
    l1 = torch.cat([model.get_submodule(c).weight.detach().abs().sum(dim=(1, 2, 3)) for c in INNER])
    assert int((keep == 0).sum()) == round(0.6 * (8 + 16 + 32))
    sole = torch.cat([torch.full_like(masks[f"{c[:-5]}bn1.weight"], float(masks[f"{c[:-5]}bn1.weight"].sum() == 1))
                      for c in INNER])  # 1 where the layer is down to one channel
    assert all(masks[f"{c[:-5]}bn1.weight"].sum() >= 1 for c in INNER)
    assert l1[keep == 0].max() < l1[(keep == 1) & (sole == 0)].min()  # below every kept one not kept by the floor


def test_masked_channels_are_exactly_zero_after_bn_and_relu():
    model = _with_statistics()
    masks = channel_masks(model, 0.5)
    apply_masks(model, masks)
    x = _batch()
    names = [f"layer{s}.0.{p}" for s in (1, 2, 3) for p in ("bn1", "hook_relu1")]
    for train in (False, True):  # running statistics and batch statistics
        model.train(train)
        _, cache = wb.probe.run_with_cache(model, x, names)
        for s in (1, 2, 3):
            gone = masks[f"layer{s}.0.conv1.weight"].flatten(1)[:, 0] == 0  # [out], the removed filters
            assert int(gone.sum()) == round(0.5 * gone.numel())
            for p in ("bn1", "hook_relu1"):
                act = cache[f"layer{s}.0.{p}"]  # [batch, out, h, w]
                assert torch.equal(act[:, gone], torch.zeros_like(act[:, gone]))  # exactly zero
                assert (act[:, ~gone] != 0).any()  # the kept ones are not


def test_masked_training_keeps_whole_filters_and_bn_entries_zero():
    train = wb.data.load("shapes", "train", subset=64)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4, num_classes=train.num_classes)
    masks = channel_masks(model, 0.5)
    named = dict(model.named_parameters())
    before = {n: named[n].detach().clone() for n in masks}
    wb.fit(model, train, epochs=10, batch_size=16, lr=0.1, momentum=0.9, weight_decay=5e-4, max_steps=20,
           algorithms=[Masked(masks)], progress=False)
    for n, m in masks.items():
        p = named[n].detach()
        assert torch.equal(p[m == 0], torch.zeros(int((m == 0).sum())))  # bit for bit
        assert not torch.equal(p[m == 1], before[n][m == 1])  # the kept ones trained
        gone = m.flatten(1)[:, 0] == 0 if m.dim() > 1 else m == 0  # [out]
        assert int(gone.sum()) == round(0.5 * m.shape[0]) and not p[gone].any()  # whole filters, whole BN entries


def test_compact_keeps_the_function_and_has_the_hand_counted_size():
    model = _with_statistics().train()
    masks = channel_masks(model, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    small = compact(model, masks)
    # the input model is untouched (weights, shapes, train flag: Torch-Pruning's tracing switches to eval)
    assert model.training and small.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    masked = apply_masks(copy.deepcopy(model), masks).eval()
    x = _batch()
    with torch.no_grad():
        ref, out = masked(x), small.eval()(x)
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model.eval()(x), ref, atol=1e-3)  # the masks matter (the test can fail)
    # resnet8 width 4 at 50%: conv1 keeps 2 of 4, 4 of 8, 8 of 16 channels
    assert [small.get_submodule(f"layer{s}.0.conv1").out_channels for s in (1, 2, 3)] == [2, 4, 8]
    stem = 3 * 4 * 9 + 2 * 4
    layer1 = 4 * 2 * 9 + 2 * 2 + 2 * 4 * 9 + 2 * 4  # conv1 4->2, bn1, conv2 2->4, bn2
    layer2 = 4 * 4 * 9 + 2 * 4 + 4 * 8 * 9 + 2 * 8 + 4 * 8 + 2 * 8  # ... and the 1x1 shortcut 4->8 and its BN
    layer3 = 8 * 8 * 9 + 2 * 8 + 8 * 16 * 9 + 2 * 16 + 8 * 16 + 2 * 16
    fc = 16 * 10 + 10
    assert sum(p.numel() for p in small.parameters()) == stem + layer1 + layer2 + layer3 + fc == 2882
    assert sum(p.numel() for p in model.parameters()) == 5214
    report, full = sparsity_report(small), sparsity_report(model)
    assert report.attrs["params"] == 5036 - (72 + 72) - (144 + 288) - (576 + 1152)  # conv and linear weights
    macs = wb.models.layer_macs(small)
    assert macs["layer1.0.conv1"] == 32 * 32 * 2 * 4 * 9 and macs["layer1.0.conv2"] == 32 * 32 * 4 * 2 * 9
    assert macs["layer3.0.conv2"] == 8 * 8 * 16 * 8 * 9  # stage 3 runs at 8x8
    assert report.attrs["macs"] < full.attrs["macs"] and macs["stem.0"] == full.macs[full.layer == "stem.0"].item()


def test_compact_refuses_masks_it_cannot_remove():
    model = _with_statistics()
    unstructured = wb.prune.magnitude_masks(model, 0.5, layers=["layer1.0.conv1"])
    with pytest.raises(ValueError, match="parts of filters"):
        compact(model, unstructured)
    masks = channel_masks(model, 0.5, layers=["layer1.0.conv1"])
    no_bn = {"layer1.0.conv1.weight": masks["layer1.0.conv1.weight"]}
    with pytest.raises(ValueError, match="bn1 keeps a nonzero"):
        compact(model, no_bn)
    with pytest.raises(ValueError, match=r"active = False"):
        compact(model, block_masks(model, "layer1.0"))


def test_a_zeroed_branch_equals_a_switched_off_block():
    model = _with_statistics("resnet14").eval()
    x = _batch()
    dropped = ["layer1.1", "layer3.1"]
    masks = block_masks(model, dropped)
    assert set(masks) == {f"{b}.{p}" for b in dropped for p in ("conv1.weight", "bn1.weight", "bn1.bias",
                                                                   "conv2.weight", "bn2.weight", "bn2.bias")}
    masked = apply_masks(copy.deepcopy(model), masks)
    off = copy.deepcopy(model)
    for b in dropped:
        off.get_submodule(b).active = False
    with torch.no_grad():
        ref, out = off(x), masked(x)
        assert torch.allclose(out, ref, atol=1e-6, rtol=0)
        assert not torch.allclose(model(x), ref, atol=1e-3)  # dropping the blocks changes the network


def test_bad_input_is_refused_with_the_fix():
    model = wb.create_model("resnet8", width=4)
    for s in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"share of each layer's channels .* in \[0, 1\)"):
            channel_masks(model, s)
    with pytest.raises(ValueError, match="unknown layer 'nope'.*layer1.0.conv1"):
        channel_masks(model, 0.5, layers=["nope"])
    with pytest.raises(ValueError, match="unknown layer 'fc'"):
        channel_masks(model, 0.5, layers=["fc"])
    for layer in ("layer1.0.conv2", "layer2.0.shortcut.0", "stem.0"):
        with pytest.raises(ValueError, match=rf"'{layer}'.*skip path.*breaks the addition.*conv1.*block_masks"):
            channel_masks(model, 0.5, layers=[layer])
    with pytest.raises(ValueError, match="'l1' or 'random'"):
        channel_masks(model, 0.5, criterion="l2")
    with pytest.raises(ValueError, match="'layer' or 'global'"):
        channel_masks(model, 0.5, scope="model")
    with pytest.raises(ValueError, match=r"'layer2.0' has a projection shortcut .*stride 2, 4->8.*\['layer1.0'\]"):
        block_masks(model, ["layer2.0"])
    with pytest.raises(ValueError, match=r"unknown block 'layer1.1'.*\['layer1.0', 'layer2.0', 'layer3.0'\]"):
        block_masks(model, ["layer1.1"])
    with pytest.raises(ValueError, match="no skip connection"):
        block_masks(wb.create_model("plain8", width=4), ["layer1.0"])
