"""wb.quant.nas: elastic depth and width on a CIFAR ResNet (exact against hand-built paths), RandomArch in
wb.fit with RandomFormats and across a resume, the cost of a subnet by hand, the joint NSGA-II search and
the two-step baseline, and bad input."""
from __future__ import annotations

import copy
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench import quant as Q
from workbench.quant import nas

FULL14 = {"depth": (2, 2, 2), "width": (1.0, 1.0, 1.0)}


def resnet14(seed=0, width=4):
    """A ResNet-14 in eval mode with non-trivial BatchNorm statistics, as after training."""
    torch.manual_seed(seed)
    m = wb.create_model("resnet14", width=width).eval()
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.normal_(0, 0.1), b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5), b.bias.data.normal_(0, 0.1)
    return m


def _x(n=4, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _head(m, h):
    return m.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


@torch.no_grad()
def test_dropped_blocks_equal_the_shallower_path_and_never_run():
    m, x = resnet14(), _x()
    full = m(x)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert nas.get_arch(m) == FULL14
    nas.set_arch(m, {"depth": (1, 1, 1), "width": (1, 1, 1)})
    assert torch.equal(m(x), _head(m, m.layer3[0](m.layer2[0](m.layer1[0](m.stem(x))))))
    nas.set_arch(m, {"depth": (2, 1, 2)})  # a missing key keeps the full width
    assert nas.get_arch(m) == {"depth": (2, 1, 2), "width": (1.0, 1.0, 1.0)}
    assert torch.equal(m(x), _head(m, m.layer3[1](m.layer3[0](m.layer2[0](m.layer1[1](m.layer1[0](m.stem(x))))))))
    # names and weights of the state dict never change, dropped blocks' weights included
    assert list(m.state_dict()) == list(before) and all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    nas.set_arch(m, None)
    assert torch.equal(m(x), full)


def test_a_dropped_block_costs_no_compute():
    m, x = resnet14(), _x()
    calls = {"layer1.1.conv1": 0, "layer2.1.conv2": 0, "layer1.0.conv1": 0}
    mods = dict(m.named_modules())
    for n in calls:
        mods[n].register_forward_hook(lambda mod, a, o, n=n: calls.__setitem__(n, calls[n] + 1))
    nas.set_arch(m, {"depth": (1, 1, 2), "width": (0.5, 0.5, 0.5)})
    m.train()
    m(x).sum().backward()
    m.eval()
    with torch.no_grad():
        m(x)
    assert calls == {"layer1.1.conv1": 0, "layer2.1.conv2": 0, "layer1.0.conv1": 2}
    assert m.layer1[1].conv1.weight.grad is None and m.layer1[0].conv1.weight.grad is not None


@torch.no_grad()
def test_width_zeroes_the_channels_past_the_ratio_and_full_width_is_bit_identical():
    m, x = resnet14(), _x()
    full = m(x)
    arch = {"depth": (2, 2, 2), "width": (0.5, 0.75, 0.5)}  # keeps 2 of 4, 6 of 8, 8 of 16 channels
    ref = copy.deepcopy(m)  # the same network by hand: bn1 of each block outputs zeros past k, so relu does too
    for s, k in zip(("layer1", "layer2", "layer3"), (2, 6, 8)):
        for block in getattr(ref, s):
            block.bn1.weight[k:] = 0
            block.bn1.bias[k:] = 0
    seen = []
    m.layer2[1].conv2.register_forward_pre_hook(lambda mod, a: seen.append(a[0].clone()))
    nas.set_arch(m, arch)
    assert torch.allclose(m(x), ref(x), rtol=0, atol=1e-6)
    assert (seen[0][:, 6:] == 0).all() and (seen[0][:, :6] != 0).any()
    nas.set_arch(m, FULL14)
    assert torch.equal(m(x), full)  # the mask hook stays registered and does nothing at ratio 1
    # a quantized copy keeps the architecture's flags and its policy names still work
    q = Q.calibrate(Q.quantize(m, "w8a8"), x)
    nas.set_arch(q, arch)
    Q.set_policy(q, {"layer1.1.conv1": "int4_pc"})
    assert nas.get_arch(q) == arch and torch.isfinite(q(x)).all()


def test_random_arch_with_qat_and_random_formats_in_fit_and_across_a_resume(tmp_path):
    train = wb.data.load("shapes", "train", subset=64)
    kw = dict(epochs=1, lr=0.05, batch_size=16, progress=False, seed=0)

    class Spy(wb.train.Callback):
        def __init__(self):
            self.archs, self.formats, self.at_epoch_end = [], [], []

        def on_before_forward(self, state):
            self.archs.append(nas.get_arch(state.model))
            self.formats.append({w for w, a in Q.get_policy(state.model).values()})

        def on_epoch_end(self, state):
            self.at_epoch_end.append(nas.get_arch(state.model))

    def run(spy, **more):
        torch.manual_seed(0)
        m = wb.create_model("resnet14", width=4)
        algs = [Q.QAT("w8a8"), Q.RandomArch(seed=1), Q.RandomFormats(["int2_pc", "int4_pc"], seed=2), spy]
        return m, wb.fit(m, train, algorithms=algs, **kw, **more)

    spy = Spy()
    m, _ = run(spy)
    assert len(spy.archs) == 4 and len({repr(a) for a in spy.archs}) >= 3
    assert set().union(*spy.formats) == {"int2_pc", "int4_pc"}
    assert nas.get_arch(m) == FULL14 and spy.at_epoch_end == [FULL14]  # full after each step and at the end
    assert Q.get_policy(m)["layer1.1.conv1"] == ("int8_pc", "uint8_asym")
    # the first step trains the full network; then the draws are the seeded generator's, uniform over the space
    again = Q.RandomArch(seed=1)
    again.on_init(type("S", (), {"model": m})())
    assert spy.archs[0] == FULL14 and [nas._draw(again.space, again.gen) for _ in range(3)] == spy.archs[1:]
    # a run stopped after 2 steps and resumed draws the rest of the same sequence and ends with the same weights
    run(Spy(), checkpoint_dir=tmp_path, checkpoint_every=2, stop_after_steps=2)
    tail = Spy()
    resumed, _ = run(tail, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert tail.archs == spy.archs[2:]
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in m.state_dict().items())


def _conv(cout, cin, k, hw):
    """(weights, MACs) of a conv with ``hw x hw`` outputs."""
    return cout * cin * k * k, hw * hw * cout * cin * k * k


def test_arch_cost_is_cost_at_full_arch_and_hand_arithmetic_below_it():
    m = resnet14()
    q = Q.quantize(m, {"default": "w4a8", "fc": None})
    for model in (m, q):
        ours, ref = nas.arch_cost(model).attrs, Q.cost(model).attrs
        assert ours == ref
    arch = {"depth": (1, 2, 1), "width": (0.5, 1.0, 0.5)}
    nas.set_arch(q, {"depth": (2, 1, 1), "width": (1.0, 0.75, 1.0)})
    before = Q.get_policy(q)
    df = nas.arch_cost(q, arch, policy={"layer2.1.conv1": ("int2_pc", "uint8_asym")})
    assert nas.get_arch(q)["depth"] == (2, 1, 1) and Q.get_policy(q) == before  # the model is left as it was
    # ResNet-14 of width 4 on 32x32: (weights, MACs, weight bits, activation bits) of every layer that runs
    layers = [
        (*_conv(4, 3, 3, 32), 4, 8),                             # stem.0
        (*_conv(2, 4, 3, 32), 4, 8), (*_conv(4, 2, 3, 32), 4, 8),  # layer1.0: 2 of 4 inner channels
        # layer1.1 dropped
        (*_conv(8, 4, 3, 16), 4, 8), (*_conv(8, 8, 3, 16), 4, 8), (*_conv(8, 4, 1, 16), 4, 8),  # layer2.0, shortcut
        (*_conv(8, 8, 3, 16), 2, 8), (*_conv(8, 8, 3, 16), 4, 8),  # layer2.1, conv1 at 2 bits
        (*_conv(8, 8, 3, 8), 4, 8), (*_conv(16, 8, 3, 8), 4, 8), (*_conv(16, 8, 1, 8), 4, 8),  # layer3.0: 8 of 16
        # layer3.1 dropped
        (160, 160, 32, 32),                                      # fc, float
    ]
    assert df.attrs["macs"] == sum(r[1] for r in layers) == 110592 + 2 * 73728 + 73728 + 147456 + 8192 \
        + 2 * 147456 + 36864 + 73728 + 8192 + 160
    assert df.attrs["weight_bits"] == sum(r[0] * r[2] for r in layers)
    assert df.attrs["weight_mb"] == pytest.approx(sum(r[0] * r[2] for r in layers) / 8e6, rel=1e-12)
    assert df.attrs["gbops"] == pytest.approx(sum(r[1] * r[2] * r[3] for r in layers) / 1e9, rel=1e-12)
    c = df.set_index("layer")
    assert c.loc["layer1.1.conv1", "macs"] == 0 and c.loc["layer3.1.conv2", "weight_bits"] == 0
    assert c.loc["layer1.0.conv2", "kept"] == 0.5 and c.loc["layer3.0.shortcut.0", "kept"] == 1
    # a float model priced under a policy: the same as the quantized model with that policy
    policy = {n: ("int4_pc", "uint8_asym") for n in Q.get_policy(q) if n != "fc"}
    policy["layer2.1.conv1"] = ("int2_pc", "uint8_asym")
    assert nas.arch_cost(m, arch, policy=policy).attrs == df.attrs


@pytest.fixture(scope="module")
def supernet():
    data = wb.data.load("shapes", "test", subset=64)
    m = resnet14(seed=3)
    q = Q.calibrate(Q.quantize(m, "w8a8"), data.normalize(data.images[:32]))
    return q, data


def test_joint_search_rows_are_their_candidates_and_the_supernet_is_restored(supernet):
    q, data = supernet
    before, state = Q.get_policy(q), {k: v.clone() for k, v in q.state_dict().items()}
    menu = ["int2_pc", "int4_pc", "int8_pc"]
    df = nas.joint_search(q, data, n_trials=6, seed=0, bits=menu, population_size=3, progress=False)
    assert Q.get_policy(q) == before and nas.get_arch(q) == FULL14
    assert all(torch.equal(v, q.state_dict()[k]) for k, v in state.items())
    assert list(df.columns) == ["trial", "arch", "policy", "acc", "loss", "weight_mb", "gbops", "macs", "pareto"]
    assert len(df) == 6 and df.pareto.equals(Q.pareto_front(df, "gbops", "acc")) and df.pareto.any()
    assert all(set(p.values()) <= set(menu) and set(p) == set(before) for p in df.policy)
    assert len({repr((r.arch, r.policy)) for r in df.itertuples()}) >= 4  # the candidates differ
    for row in df.itertuples():  # each row's accuracy and cost are its candidate's own
        nas.set_arch(q, row.arch)
        Q.set_policy(q, row.policy)
        assert wb.evaluate(q, data)["acc"] == row.acc
        c = Q.cost(q).attrs if row.arch == FULL14 else nas.arch_cost(q, row.arch).attrs
        assert (c["gbops"], c["weight_mb"], c["macs"]) == (row.gbops, row.weight_mb, row.macs)
        assert nas.evaluate_arch(q, data, row.arch, row.policy)["acc"] == row.acc
    nas.set_arch(q, None)
    Q.set_policy(q, before)
    again = nas.joint_search(q, data, n_trials=6, seed=0, bits=menu, population_size=3, progress=False)
    assert again[["arch", "policy", "acc"]].equals(df[["arch", "policy", "acc"]])  # seeded: the same search


def test_two_step_baseline_and_comparison_at_budgets(supernet):
    q, data = supernet
    before = Q.get_policy(q)
    arch_rows = nas.joint_search(q, data, n_trials=5, seed=1, search="arch", fixed_policy=("fp32", "fp32"),
                                 population_size=3, progress=False)
    assert all(set(p.values()) == {("fp32", "fp32")} for p in arch_rows.policy)
    m = copy.deepcopy(q)
    Q.set_policy(m, arch_rows.policy[0])
    assert arch_rows.gbops[0] == nas.arch_cost(m, arch_rows.arch[0]).attrs["gbops"]  # 32 x 32 bits per MAC
    two = nas.quantize_front(q, arch_rows, data, bits=["int4_pc", "int8_pc"], progress=False)
    archs = {repr(a) for a in arch_rows[arch_rows.pareto].arch}
    assert len(two) == 2 * len(archs) and {repr(a) for a in two.arch} == archs
    assert set(two.bits) == {"int4_pc", "int8_pc"}
    assert Q.get_policy(q) == before and nas.get_arch(q) == FULL14
    row = two.iloc[-1]
    ev = nas.evaluate_arch(q, data, row.arch, {n: row.bits for n in before})
    assert (ev["acc"], ev["gbops"]) == (row.acc, row.gbops) and two.pareto.equals(Q.pareto_front(two, "gbops", "acc"))
    # the table of best accuracy within each budget, by hand
    a = pd.DataFrame({"gbops": [1.0, 2.0, 3.0], "acc": [0.5, 0.6, 0.7]})
    b = pd.DataFrame({"gbops": [1.5, 2.5, 9.0], "acc": [0.55, 0.65, 0.9]})
    t = nas.compare_fronts({"joint": a, "two-step": b}, [0.5, 1, 2, 3])
    assert t.budget.tolist() == [0.5, 1.0, 2.0, 3.0]
    assert t.joint.tolist()[1:] == [0.5, 0.6, 0.7] and t["two-step"].tolist()[2:] == [0.55, 0.65]
    assert t.joint.isna().tolist() == [True, False, False, False] and t["two-step"].isna().sum() == 2


def test_batchnorm_reestimation_per_candidate(supernet):
    q, data = supernet
    arch = {"depth": (1, 2, 1), "width": (0.5, 0.75, 1.0)}
    state = {k: v.clone() for k, v in q.state_dict().items()}
    bn = data.normalize(data.images[:32])
    got = nas.evaluate_arch(q, data, arch, bn_data=bn)
    assert all(torch.equal(v, q.state_dict()[k]) for k, v in state.items())  # the statistics come back
    ref = nas.set_arch(Q.reestimate_bn(nas.set_arch(copy.deepcopy(q), arch), bn), arch)
    assert got["acc"] == wb.evaluate(ref, data)["acc"] and got["loss"] == pytest.approx(wb.evaluate(ref, data)["loss"])


def test_bad_input(supernet, monkeypatch):
    q, data = supernet
    m = resnet14()
    for arch, match in [({"depth": (3, 1, 1)}, "layer1 has 2 blocks: choose a whole number from 1 to 2"),
                        ({"depth": (1, 0, 1)}, "from 1 to 2"), ({"depth": (1.5, 1, 1)}, "whole number"),
                        ({"width": (0, 1, 1)}, r"in \(0, 1\]"), ({"width": (1, 1.5, 1)}, r"in \(0, 1\]"),
                        ({"depth": (1, 1)}, "one value per stage"), ({"depths": (1, 1, 1)}, "an architecture is")]:
        with pytest.raises(ValueError, match=match):
            nas.set_arch(m, arch)
    assert nas.get_arch(m) == FULL14  # a refused architecture changes nothing
    with pytest.raises(ValueError, match="expected a CIFAR ResNet"):
        nas.set_arch(nn.Sequential(nn.Conv2d(3, 4, 3)), None)
    with pytest.raises(ValueError, match="expected a CIFAR ResNet"):
        nas.arch_space(wb.create_model("vit_tiny"))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        Q.RandomArch(widths=[0.5, 0])
    with pytest.raises(ValueError, match="2 to 8 bits"):
        nas.joint_search(q, data, n_trials=2, bits=["int9_pc"], progress=False)
    with pytest.raises(ValueError, match="search is 'joint'"):
        nas.joint_search(q, data, search="both", progress=False)
    with pytest.raises(ValueError, match="objective_metric"):
        nas.joint_search(q, data, objective_metric="latency", progress=False)
    with pytest.raises(ValueError, match="search='arch'"):
        nas.joint_search(m, data, progress=False)
    with pytest.raises(ValueError, match="not quantized layers"):
        nas.arch_cost(q, None, policy={"nope": "int4_pc"})
    with pytest.raises(ValueError, match="not a dict"):
        nas.quantize_front(q, [FULL14], data, bits={"fc": ["int4_pc"]}, progress=False)
    with pytest.raises(ValueError, match="no column 'gbops'"):
        nas.compare_fronts({"a": pd.DataFrame({"acc": [1.0]})}, [1.0])
    before = Q.get_policy(q)

    def boom(*a, **k):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(wb.train, "evaluate", boom)
    with pytest.raises(RuntimeError, match="evaluation failed"):  # an error mid-search leaves the supernet restored
        nas.joint_search(q, data, n_trials=3, progress=False)
    assert Q.get_policy(q) == before and nas.get_arch(q) == FULL14
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match="pip install optuna"):
        nas.joint_search(q, data, n_trials=2, progress=False)
    assert nas.get_arch(q) == FULL14
