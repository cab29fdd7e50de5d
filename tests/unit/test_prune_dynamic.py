"""wb.prune dynamic pruning (Elkerdawy et al. 2022): self-supervised targets, gated ResNets, the mask loss in
wb.fit, multiply-adds per input, and the equal-cost static baseline."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.prune.dynamic import (GatedBasicBlock, GateReport, MaskPrediction, channel_costs, compare_equal_cost,
                                     finetune_dynamic, finetune_static, gate_report, gated_blocks,
                                     load_dense, macs_for, mass_targets, match_sparsity, set_gating, static_macs,
                                     target_sweep)
from workbench.prune.structured import channel_masks

from ._models import with_statistics

BLOCKS = ["layer1.0", "layer2.0", "layer3.0"]  # resnet8: one block per stage
# resnet8 of width 4 on 32x32 images, multiply-adds by hand: stem 32*32*4*27; per block conv1 + conv2
# (layer1.0: 2 * 32*32*4*4*9; layer2.0: 16*16*8*4*9 + 16*16*8*8*9 + shortcut 16*16*8*4; layer3.0: 8*8*16*8*9 +
# 8*8*16*16*9 + shortcut 8*8*16*8); fc 16*10
DENSE = 110592 + 2 * 147456 + (73728 + 147456 + 8192) + (73728 + 147456 + 8192) + 160
PER_CHANNEL = {"layer1.0": 32 * 32 * 4 * 9 * 2, "layer2.0": 16 * 16 * (4 + 8) * 9, "layer3.0": 8 * 8 * (8 + 16) * 9}
GATES = {"layer1.0": 4 * 4, "layer2.0": 4 * 8, "layer3.0": 8 * 16}


def _trained_like(name: str, seed: int = 0) -> nn.Module:
    """A small ResNet (width 4) whose BatchNorms hold non-trivial statistics and affine parameters."""
    return with_statistics(name, seed, spread=0.5, width=4)


def _gated_twin(dense: nn.Module) -> nn.Module:
    return load_dense(wb.create_model("gated_" + dense.model_name, width=4), dense)


def _images(n: int = 8) -> torch.Tensor:
    data = wb.data.load("shapes", "train", subset=64)
    return data.normalize(data.images[:n])  # [n, 3, 32, 32]


def _force(model: nn.Module, pattern: dict[str, list[int]]) -> None:
    """Gates that ignore the input: channel c of block b fires iff pattern[b][c]."""
    for name, block in gated_blocks(model).items():
        with torch.no_grad():
            block.gate.weight.zero_()
            block.gate.bias.copy_(torch.tensor([5.0 if on else -5.0 for on in pattern[name]]))


# --- the self-supervised targets ---------------------------------------------------------------------------

def test_mass_targets_keep_the_fewest_channels_that_reach_the_share():
    heat = torch.tensor([[4.0, 1.0, 3.0, 2.0]])  # shares .4 .1 .3 .2
    assert mass_targets(heat, 0.7).tolist() == [[1, 0, 1, 0]]  # .4 + .3 reach .7 exactly
    assert mass_targets(heat, 0.71).tolist() == [[1, 0, 1, 1]]  # .4 + .3 fall short: the .2 channel too
    assert mass_targets(heat, 0.4).tolist() == [[1, 0, 0, 0]]
    assert mass_targets(heat, 0.05).tolist() == [[1, 0, 0, 0]]  # always at least the strongest channel
    assert mass_targets(heat, 1.0).tolist() == [[1, 1, 1, 1]]
    # zero channels never fire (r = 1 keeps exactly the nonzero ones); an all-zero input keeps none;
    # equal shares are ranked by channel index; each row is ranked on its own
    two = torch.tensor([[0.0, 2.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert mass_targets(two, 1.0).tolist() == [[0, 1, 0, 1], [0, 0, 0, 0]]
    assert mass_targets(two, 0.5).tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
    # a feature map's heat is its peak |a|: channel 0 has the larger mean, channel 1 the larger peak
    act = torch.zeros(1, 2, 2, 2)
    act[0, 0] = 1.0
    act[0, 1, 0, 0] = -3.0
    assert mass_targets(act, 0.5).tolist() == [[0, 1]]
    assert mass_targets(act, 0.8).tolist() == [[1, 1]]  # 3 / 4 of the mass is below .8


def test_mass_targets_reject_bad_input():
    with pytest.raises(ValueError, match=r"threshold .* in \(0, 1\]"):
        mass_targets(torch.ones(1, 4), 0.0)
    with pytest.raises(ValueError, match="threshold"):
        mass_targets(torch.ones(1, 4), 1.5)
    with pytest.raises(ValueError, match="threshold"):
        mass_targets(torch.ones(1, 4), True)
    with pytest.raises(ValueError, match=r"float tensor \[batch, channels, h, w\]"):
        mass_targets(torch.ones(1, 4, 2), 0.9)
    with pytest.raises(ValueError, match="float tensor"):
        mass_targets(torch.ones(1, 4, dtype=torch.int64), 0.9)


# --- the gated network ------------------------------------------------------------------------------------

def test_gated_twin_starts_as_the_dense_network():
    torch.manual_seed(3)
    dense = wb.create_model("resnet20")
    torch.manual_seed(3)
    gated = wb.create_model("gated_resnet20")
    assert all(torch.equal(v, gated.state_dict()[k]) for k, v in dense.state_dict().items())  # same initial weights
    assert len(gated_blocks(gated)) == 9 and all(isinstance(b, GatedBasicBlock) for b in gated_blocks(gated).values())
    assert "layer3.2.hook_fired" in wb.models.hook_points(gated)
    x = _images()
    for mode in ("train", "eval"):
        dense.train(mode == "train"), gated.train(mode == "train")
        assert torch.equal(dense(x), gated(x))  # fresh gates are open: every channel fires
        assert torch.equal(dense(x[:1]), gated(x[:1]))  # one input in train mode: the gates use running statistics


def test_all_on_off_and_r1_targets_equal_the_dense_network_and_gates_skip_channels():
    dense = _trained_like("resnet8").eval()
    gated = _gated_twin(dense).eval()
    x = _images()
    want = dense(x)
    _force(gated, {b: [1] * gated.get_submodule(b).conv1.out_channels for b in BLOCKS})
    assert torch.equal(gated(x), want)  # every gate on: exactly the dense function
    assert torch.equal(set_gating(gated, "off")(x), want)
    assert torch.equal(set_gating(gated, "target", 1.0)(x), want)  # r = 1 drops only channels that are zero
    # a channel the gate turns off is exactly zero after the block's first ReLU
    _force(gated, {"layer1.0": [1, 0, 1, 0], "layer2.0": [1] * 8, "layer3.0": [0] * 16})
    set_gating(gated, "predicted")
    _, cache = wb.run_with_cache(gated, x, names=["layer1.0.hook_relu1", "layer3.0.hook_relu1", "layer1.0.hook_fired"])
    first = cache["layer1.0.hook_relu1"]  # [batch, 4, 32, 32]
    assert first[:, [1, 3]].abs().sum() == 0 and first[:, [0, 2]].abs().sum() > 0
    assert cache["layer3.0.hook_relu1"].abs().sum() == 0
    assert cache["layer1.0.hook_fired"].tolist() == [[1.0, 0.0, 1.0, 0.0]] * len(x)
    assert not torch.equal(gated(x), want)


def test_gating_errors_name_the_fix():
    dense = wb.create_model("resnet8", width=4)
    with pytest.raises(ValueError, match="no gated blocks.*gated_resnet20"):
        set_gating(dense, "predicted")
    gated = wb.create_model("gated_resnet8", width=4)
    with pytest.raises(ValueError, match="mode is one of"):
        set_gating(gated, "on")
    with pytest.raises(ValueError, match="do not fit"):
        load_dense(gated, wb.create_model("resnet8", width=8))
    with pytest.raises(ValueError, match="no gated blocks"):
        wb.fit(dense, wb.data.load("shapes", "train", subset=32), algorithms=[MaskPrediction()], max_steps=1,
               progress=False)
    with pytest.raises(ValueError, match="weight must be a positive"):
        MaskPrediction(weight=0)
    with pytest.raises(ValueError, match=r"gate_steps .* in \(0, 1\]"):
        MaskPrediction(gate_steps=0)
    with pytest.raises(ValueError, match="threshold"):
        MaskPrediction(threshold=2)


# --- training the gates ----------------------------------------------------------------------------------

def test_mask_loss_is_the_paper_bce_and_reaches_only_the_gates():
    dense = _trained_like("resnet8")
    gated = _gated_twin(dense).train()
    set_gating(gated, "predicted", 0.7)
    blocks = gated_blocks(gated)
    for b in blocks.values():
        b.recording = True
    x = _images()
    gated(x)
    last = {n: b.last for n, b in blocks.items()}
    for b in blocks.values():
        b.recording = False
    losses = []
    for n, b in blocks.items():
        logits, target = last[n]
        # targets of the ungated conv1 output (with the earlier blocks gated): here all gates are open
        assert torch.equal(target, mass_targets(F.relu(b.bn1(b.conv1(_input_of(gated, b, x)))), 0.7))
        losses.append(F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean())
    loss = torch.stack(losses).mean()
    loss.backward()
    for n, p in gated.named_parameters():
        assert (p.grad is not None) == (".gate." in n), n  # decoupled: the mask loss trains the gates alone


def _input_of(model: nn.Module, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    got = {}
    h = block.register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return got["x"]


def test_mask_prediction_in_fit_logs_trains_gates_and_stops_after_gate_steps():
    train = wb.data.load("shapes", "train", subset=64)
    kw = dict(max_steps=4, batch_size=16, lr=0.05, progress=False, seed=0, augment=None)

    def run(**extra):
        gated = _gated_twin(_trained_like("resnet8"))
        start = {n: p.detach().clone() for n, p in gated.named_parameters()}
        res = wb.fit(gated, train, algorithms=[MaskPrediction(0.7, weight=5.0, gate_steps=0.25)], **kw, **extra)
        return res, start

    full, start = run()
    last = full.history.iloc[-1]
    assert last.mask_loss > 0 and all(0 <= last[c] <= 1 for c in ("mask_acc", "fired", "target_fired"))
    assert all(b.mode == "predicted" and b.threshold == 0.7 and not b.recording and b.last is None
               for b in gated_blocks(full.model).values())
    gate = {n: p for n, p in full.model.named_parameters() if ".gate." in n}
    assert any(not torch.equal(p, start[n]) for n, p in gate.items())  # the gates learned
    assert any(not torch.equal(p, start[n]) for n, p in full.model.named_parameters() if ".gate." not in n)
    assert set(gate) <= set(full.config["masked"])  # the gates get no weight decay
    # gate_steps=0.25 of 4 steps: the gates change in the first step only
    one, _ = run(stop_after_steps=1)
    for n, p in gate.items():
        assert torch.equal(p, dict(one.model.named_parameters())[n]), n


# --- counting multiply-adds ------------------------------------------------------------------------------

def test_channel_costs_and_macs_per_input_by_hand():
    dense = wb.create_model("resnet8", width=4)
    costs = channel_costs(_gated_twin(dense))
    assert costs.attrs["dense"] == DENSE == sum(wb.models.layer_macs(dense).values())
    assert dict(zip(costs.block, costs.per_channel)) == PER_CHANNEL and dict(zip(costs.block, costs.gate)) == GATES
    fired = {"layer1.0": 2, "layer2.0": 8, "layer3.0": 5}
    want = DENSE - 2 * PER_CHANNEL["layer1.0"] - 11 * PER_CHANNEL["layer3.0"] + sum(GATES.values())
    assert macs_for(costs, fired) == want == 565072
    assert macs_for(costs, fired, gates=False) == want - 176
    per_input = macs_for(costs, {"layer1.0": torch.tensor([4, 0]), "layer2.0": torch.tensor([8, 8]),
                                 "layer3.0": torch.tensor([16, 16])}, gates=False)
    assert per_input.tolist() == [DENSE, DENSE - 4 * PER_CHANNEL["layer1.0"]]
    with pytest.raises(ValueError, match="no count for blocks"):
        macs_for(costs, {"layer1.0": 1})
    with pytest.raises(ValueError, match="fired counts must lie in 0..4"):
        macs_for(costs, {**fired, "layer1.0": 5})


def test_gate_report_counts_each_input_and_summarizes_classes():
    gated = _gated_twin(_trained_like("resnet8"))
    _force(gated, {"layer1.0": [1, 1, 0, 0], "layer2.0": [1] * 8, "layer3.0": [1] * 5 + [0] * 11})
    data = wb.data.load("shapes", "test", subset=40)
    rep = gate_report(gated, data, batch_size=16)
    assert rep.macs.tolist() == [565072.0] * 40 and rep.dense_macs == DENSE
    assert rep.relative_macs == pytest.approx(565072 / DENSE)
    assert rep.acc == pytest.approx(wb.evaluate(gated, data)["acc"])
    assert rep.per_input().shape[0] == 40 and rep.per_input()["layer3.0"].tolist() == [5] * 40
    assert rep.selectivity("layer3.0") == 0.0  # the same channels fire for every input
    dense_rep = gate_report(set_gating(gated, "off"), data)
    assert dense_rep.macs.tolist() == [float(DENSE)] * 40  # no gate runs, every channel fires
    # per class, by hand: class 0 fires channel 0 always and channel 1 half the time, class 1 only channel 1
    f = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]], dtype=torch.bool)
    hand = GateReport({"b": f}, torch.tensor([0, 0, 1, 1]), torch.ones(4, dtype=torch.bool), torch.ones(4), 1,
                      ["a", "b"])
    assert hand.per_class("b").values.tolist() == [[1.0, 0.5], [0.0, 1.0]]
    assert hand.selectivity("b") == 0.75  # mean of |1 - 0| and |0.5 - 1|
    with pytest.raises(ValueError, match="unknown block"):
        hand.per_class("layer1.0")
    with pytest.raises(TypeError, match="ImageDataset"):
        gate_report(gated, data.images)


def test_gate_agreement_against_the_constant_rule():
    gated = _gated_twin(_trained_like("resnet8"))
    set_gating(gated, "predicted", 0.6)  # fresh gates: every channel fires
    data = wb.data.load("shapes", "test", subset=40)
    rep = gate_report(gated, data, batch_size=16)
    acc = rep.agreement()
    assert list(acc.block) == BLOCKS and (acc.fired == 1.0).all()
    assert (acc.gate_acc - acc.target_fired).abs().max() < 1e-12  # all on: right exactly where the target is 1
    assert (acc.constant_acc >= acc.gate_acc - 1e-12).all()  # "always on" is one of the constant rules
    assert all(b.mode == "predicted" and not b.recording and b.last is None for b in gated_blocks(gated).values())
    # the targets recorded are those the target mode applies (in the first block: later ones see other inputs)
    oracle = gate_report(set_gating(gated, "target"), data, batch_size=16)
    assert torch.equal(rep.targets["layer1.0"], oracle.fired["layer1.0"])
    assert not oracle.targets and "gate_acc" not in oracle.summary()
    with pytest.raises(ValueError, match="no gate decided"):
        oracle.agreement()
    # by hand: 2 inputs, 2 channels; the gates are right 2 times in 4, the best constant rule (channel 0 either
    # way, channel 1 never) 3 times in 4
    hand = GateReport({"b": torch.tensor([[1, 1], [0, 1]], dtype=torch.bool)}, torch.tensor([0, 1]),
                      torch.ones(2, dtype=torch.bool), torch.ones(2), 1, ["x", "y"],
                      {"b": torch.tensor([[1, 0], [0, 0]], dtype=torch.bool)})
    row = hand.agreement().iloc[0]
    assert row[["gate_acc", "constant_acc", "fired", "target_fired"]].tolist() == [0.5, 0.75, 0.75, 0.25]


def test_static_macs_and_match_sparsity():
    dense = _trained_like("resnet8")
    masks = channel_masks(dense, 0.5)  # removes 2 of 4, 4 of 8 and 8 of 16 channels
    half = DENSE - 2 * PER_CHANNEL["layer1.0"] - 4 * PER_CHANNEL["layer2.0"] - 8 * PER_CHANNEL["layer3.0"]
    assert static_macs(dense, masks) == half == 495776 and static_macs(dense) == DENSE
    s = match_sparsity(dense, half)
    assert static_macs(dense, channel_masks(dense, s)) == half
    # just above a reachable cost: the cheapest configuration that is not cheaper (brute force over sparsities)
    s = match_sparsity(dense, half + 1)
    got = static_macs(dense, channel_masks(dense, s))
    reachable = {static_macs(dense, channel_masks(dense, k / 1000)) for k in range(1000)}
    assert got == min(c for c in reachable if c >= half + 1)
    assert match_sparsity(dense, DENSE) == 0.0
    with pytest.raises(ValueError, match="below what channel pruning can reach"):
        match_sparsity(dense, 1000)
    with pytest.raises(ValueError, match="macs must be a positive number"):
        match_sparsity(dense, -1)


def test_finetune_dynamic_and_static_are_cached_runs_from_the_dense_weights():
    dense = wb.create_model("resnet8", width=4)
    dense.model_kwargs = {"width": 4, "num_classes": 10, "in_chans": 3}
    train = wb.data.load("shapes", "train", subset=48)
    kw = dict(max_steps=2, batch_size=16, progress=False, augment=None)
    dyn = finetune_dynamic(dense, train, threshold=0.8, seed=1, **kw)
    assert dyn.model.model_name == "gated_resnet8"
    assert all(b.mode == "predicted" and b.threshold == 0.8 for b in gated_blocks(dyn.model).values())
    again = finetune_dynamic(dense, train, threshold=0.8, seed=1, **kw)  # from the cache, gates set again
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in dyn.model.state_dict().items())
    assert all(b.mode == "predicted" and b.threshold == 0.8 for b in gated_blocks(again.model).values())
    st = finetune_static(dense, train, sparsity=0.5, seed=1, **kw)
    w = st.model.layer3[0].conv1.weight.detach()
    assert int((w.flatten(1).abs().sum(1) == 0).sum()) == 8 and static_macs(st.model, st.masks) == 495776
    with pytest.raises(ValueError, match="without gates"):
        finetune_static(dyn.model, train, sparsity=0.5, **kw)
    with pytest.raises(ValueError, match="registry CIFAR ResNet"):
        finetune_dynamic(nn.Linear(2, 2), train, **kw)


def test_target_sweep_prices_the_oracle_and_the_static_twin():
    dense = _trained_like("resnet8")
    data = wb.data.load("shapes", "test", subset=40)
    sweep = target_sweep(dense, data, [1.0, 0.6])
    assert list(sweep.threshold) == [1.0, 0.6]
    assert sweep.target_acc[0] == wb.evaluate(dense, data)["acc"]  # r = 1 computes the dense function
    assert (sweep.static_macs >= sweep.target_macs - 1e-12).all()  # static is never the cheaper one
    assert sweep.target_macs[1] < sweep.target_macs[0] <= 1.0
    for row in sweep.itertuples():
        assert row.static_macs == static_macs(dense, channel_masks(dense, row.static_sparsity)) / DENSE
    with pytest.raises(ValueError, match="registry CIFAR ResNet"):
        target_sweep(nn.Linear(2, 2), data, [0.9])


def test_compare_equal_cost_runs_both_arms_at_matched_cost():
    dense = wb.create_model("resnet8", width=4)
    dense.model_kwargs = {"width": 4, "num_classes": 10, "in_chans": 3}
    train, test = wb.data.load("shapes", "train", subset=48), wb.data.load("shapes", "test", subset=40)
    cmp = compare_equal_cost(dense, train, test, threshold=0.6, seed=2, weight=5.0, max_steps=2, batch_size=16,
                             progress=False, augment=None)
    rec = cmp.record()
    # never cheaper than the dynamic network, unless that one costs more than dense (gates barely trained here)
    assert rec["static_macs"] >= min(rec["dynamic_macs"], 1.0)
    assert rec["static_sparsity"] == match_sparsity(dense, cmp.report.mean_macs)
    assert rec["dynamic_acc"] == cmp.report.acc and rec["static_acc"] == wb.evaluate(cmp.static.model, test)["acc"]
    assert rec["gate_acc"] == pytest.approx(cmp.report.agreement().gate_acc.mean())
    assert cmp.dynamic.model.model_name == "gated_resnet8" and cmp.static.model.model_name == "resnet8"
