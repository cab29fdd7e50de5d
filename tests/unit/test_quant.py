"""wb.quant: formats against PyTorch's own quantizers and the formats' definitions, layers, calibration,
allocation against brute force, and bad input."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import workbench as wb
from workbench import quant as Q

from ._models import resnet8_with_statistics


def _x(seed=0, shape=(64, 8, 3, 3), scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * scale
    # exact ties (k + 0.5) * scale for a scale of 0.25: half-to-even must decide them
    x.view(-1)[:40] = (torch.arange(-20, 20) + 0.5) * 0.25
    return x


# -- integer formats: bit for bit against torch.fake_quantize_* ----------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_int_per_tensor_equals_torch(bits):
    x = _x()
    f = Q.get_format(f"int{bits}")
    ours = f.quantize(x, torch.tensor(0.25), 0)
    ref = torch.fake_quantize_per_tensor_affine(x, 0.25, 0, f.qmin, f.qmax)
    assert torch.equal(ours, ref)
    fa = Q.get_format(f"uint{bits}_asym")
    s, z = fa.scale_for_range(x.min(), x.max())
    assert torch.equal(fa.quantize(x, s, z), torch.fake_quantize_per_tensor_affine(x, float(s), int(z), fa.qmin, fa.qmax))


@pytest.mark.parametrize("name", ["int4_pc", "int8_pc", "int3_asym_pc"])
def test_int_per_channel_equals_torch(name):
    x = _x(1)
    f = Q.get_format(name)
    flat = x.flatten(1)
    s, z = f.scale_for_range(flat.min(1).values, flat.max(1).values)
    ref = torch.fake_quantize_per_channel_affine(x, s, z.int(), 0, f.qmin, f.qmax)
    assert torch.equal(f.quantize(x, s, z), ref)


def test_int_grid_and_ranges():
    assert (Q.IntFormat(4).qmin, Q.IntFormat(4).qmax) == (-7, 7)  # symmetric: the grid is symmetric about 0
    assert (Q.IntFormat(4, symmetric=False).qmin, Q.IntFormat(4, symmetric=False).qmax) == (-8, 7)
    assert (Q.IntFormat(8, signed=False, symmetric=False).qmin, Q.IntFormat(8, signed=False, symmetric=False).qmax) == (0, 255)
    s, z = Q.get_format("uint8_asym").scale_for_range(torch.tensor(0.5), torch.tensor(2.0))
    assert int(z) == 0 and math.isclose(float(s), 2.0 / 255, rel_tol=1e-6)  # the range is widened to include 0


# -- float formats: the values enumerate exactly --------------------------------------------------
@pytest.mark.parametrize("name,count,largest,smallest_sub", [
    ("fp8_e4m3", 253, 448.0, 2.0 ** -9), ("fp8_e5m2", 247, 57344.0, 2.0 ** -16),
    ("fp6_e3m2", 63, 28.0, 2.0 ** -4), ("fp6_e2m3", 63, 7.5, 2.0 ** -3), ("fp4_e2m1", 15, 6.0, 0.5)])
def test_float_values_enumerate(name, count, largest, smallest_sub):
    f = Q.get_format(name)
    v = f.values()
    assert len(v) == count and float(v.max()) == largest == f.max_finite and float(-v.min()) == largest
    assert float(v[v > 0].min()) == smallest_sub
    assert torch.equal(f.quantize(v), v)  # every representable value is a fixed point


def test_fp4_values_are_the_spec_table():
    assert Q.get_format("fp4_e2m1").values()[7:].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1"])
def test_float_rounding_is_nearest_even_with_saturation(name):
    f = Q.get_format(name)
    v = f.values().double()
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(3000, generator=g) * f.max_finite / 4, torch.randn(1000, generator=g) * 0.05,
                   (v[1:] + v[:-1]).float() / 2,  # exact midpoints: ties
                   torch.tensor([f.max_finite * 3, -f.max_finite * 10])])
    q = f.quantize(x).double()
    d = (x.double()[:, None] - v[None]).abs()
    best = d.min(1).values
    assert torch.all((q - x.double()).abs() <= best + 1e-12)  # a nearest value
    # ties go to the value whose mantissa's last bit is 0: among the two nearest, the even code
    codes = {float(f.decode(c)): c for c in range(2 ** (f.bits - 1))}  # positive patterns
    ties = ((d - best[:, None]).abs() < 1e-12).sum(1) == 2
    for xi, qi in zip(x[ties].tolist(), q[ties].tolist()):
        assert codes[abs(qi)] % 2 == 0, (xi, qi)
    assert float(q[-2]) == f.max_finite and float(q[-1]) == -f.max_finite  # saturation, never inf


@pytest.mark.parametrize("name,dtype", [("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)])
def test_fp8_equals_torch_cast_in_range(name, dtype):
    f = Q.get_format(name)
    g = torch.Generator().manual_seed(2)
    for s in (1e-3, 1.0, f.max_finite / 8):
        x = (torch.randn(20000, generator=g) * s).clamp(-f.max_finite, f.max_finite)
        assert torch.equal(f.quantize(x), x.to(dtype).float())


def test_ternary_matches_b158_formula():
    w = torch.tensor([[0.9, -0.1, 0.3], [-1.2, 0.05, 0.0]])
    gamma = w.abs().mean()  # 0.425
    expected = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]) * gamma  # round(w / gamma) clipped to [-1, 1]
    assert torch.allclose(Q.get_format("ternary").quantize(w), expected)
    med = w.abs().median()  # torch's lower median: 0.1
    out = Q.get_format("ternary_median").quantize(w)
    assert torch.allclose(out, torch.clamp(torch.round(w / (med + 1e-5)), -1, 1) * med)
    assert set(torch.unique(out / med).tolist()) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("bad,match", [("int9", "2 to 8 bits"), ("int1", "2 to 8 bits"), ("fp8_e4m4", "unknown"),
                                       ("uint4", "zero point"), ("bananas", "unknown")])
def test_bad_format_names(bad, match):
    with pytest.raises(ValueError, match=match):
        Q.get_format(bad)


def test_list_formats_all_parse():
    for name in Q.list_formats():
        assert Q.get_format(name).name == name


# -- layers and quantize ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet():
    return resnet8_with_statistics()


def test_quantize_copies_and_configures(resnet):
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    q = Q.quantize(resnet, {"default": "w4a8", "layer3.*": ("fp8_e4m3", "fp8_e4m3"), "fc": None, "stem.0": "w8a8"})
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())  # the float model untouched
    assert not any(isinstance(m, Q.QuantConv2d) for m in resnet.modules())
    assert q.quant_config["layer1.0.conv1"] == "W:int4_pc A:uint8_asym"
    assert q.quant_config["layer3.0.conv2"] == "W:fp8_e4m3 A:fp8_e4m3"
    assert q.quant_config["stem.0"] == "W:int8_pc A:uint8_asym" and q.quant_config["fc"] == "fp32"
    assert isinstance(q.fc, nn.Linear) and not isinstance(q.fc, Q.QuantLinear)


def test_quantized_weights_lie_on_the_grid(resnet):
    q = Q.quantize(resnet, "w4a8")
    w = q.layer1[0].conv1.quantized_weight.detach()
    codes = w.flatten(1) / (w.flatten(1).abs().max(1, keepdim=True).values / 7)
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 7 + 1e-4
    assert len(torch.unique(w[0])) <= 15


def test_uncalibrated_model_says_what_to_do(resnet):
    q = Q.quantize(resnet, "w8a8")
    with pytest.raises(RuntimeError, match="calibrate"):
        q(torch.randn(2, 3, 32, 32))


@torch.no_grad()
def test_w8a8_is_close_and_w2_is_not(resnet):
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = resnet(x)
    err = {}
    for cfg in ("w8a8", "w4a8", "w2a8"):
        q = Q.calibrate(Q.quantize(resnet, cfg), x)
        err[cfg] = float((q(x) - ref).pow(2).mean() / ref.pow(2).mean())  # noqa
        r = Q.act_ranges(q)
        assert r.layer.iloc[0] == "stem.0" and r.lo.iloc[0] == pytest.approx(float(x.min()))
    assert err["w8a8"] < 1e-3 < err["w2a8"] and err["w8a8"] < err["w4a8"] < err["w2a8"], err


def test_clip_methods():
    torch.manual_seed(0)
    x = torch.randn(4096) ** 3  # heavy tails: clipping can help
    err, qs = {}, {}
    for clip in ("minmax", "percentile", "mse"):
        q = Q.Quantizer(Q.get_format("int4_asym"), "act", clip=clip, percentile=99.0)
        q.observing = True
        q(x)
        q.finish_calibration(x)
        err[clip], qs[clip] = float((q(x) - x).pow(2).mean()), q
    assert float(qs["minmax"].lo) == float(x.min()) and float(qs["minmax"].hi) == float(x.max())
    lo, hi = torch.quantile(x, torch.tensor([0.01, 0.99]))
    assert float(qs["percentile"].lo) == pytest.approx(float(lo)) and float(qs["percentile"].hi) == pytest.approx(float(hi))
    # the MSE search includes the min-max range itself, so it can only do better; here it does
    assert err["mse"] < err["minmax"], err


def test_ste_gradients_and_qat_through_fit():
    train = wb.data.load("shapes", "train", subset=128)
    torch.manual_seed(0)
    q = Q.quantize(wb.create_model("resnet8", width=8), "w4a8")
    x = train.normalize(train.images[:8])
    q.train()
    q(x).sum().backward()
    g = q.layer1[0].conv1.weight.grad
    assert g is not None and g.abs().sum() > 0  # straight through: the rounding does not stop gradients
    r = wb.fit(q, train, epochs=3, lr=0.05, batch_size=32, seed=0)
    assert r.history.train_loss.iloc[-1] < r.history.train_loss.iloc[0]
    assert bool(q.layer1[0].conv1.aq.initialized)  # ranges were learnt while training: no calibration needed
    q.eval()
    assert torch.isfinite(q(x)).all()


def test_fold_bn_is_exact_in_eval(resnet):
    x = torch.randn(8, 3, 32, 32)
    f = Q.fold_bn(resnet)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f.modules())
    assert torch.allclose(f(x), resnet(x), atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in resnet.modules())  # the original keeps its BatchNorm
    with pytest.raises(ValueError, match="before quantizing"):
        Q.fold_bn(Q.quantize(resnet, "w8a8"))


def test_cost_counts_bits_and_bops():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    m.in_chans, m.img_size = 3, 8
    q = Q.quantize(m, {"default": "w4a8", "2": ("int8", "int8")})
    c = Q.cost(q).set_index("layer")
    assert c.loc["0", "params"] == 108 and c.loc["0", "weight_bits"] == 108 * 4
    assert c.loc["0", "macs"] == 4 * 8 * 8 * 27 and c.loc["0", "bops"] == 4 * 8 * 8 * 27 * 4 * 8
    assert c.loc["2", "macs"] == 2560 and c.loc["2", "bops"] == 2560 * 64
    assert Q.cost(m).attrs["weight_bits"] == (108 + 2560) * 32
    t = Q.cost(Q.quantize(m, {"default": "w1.58a8"}))
    assert t.weight_bits.iloc[0] == pytest.approx(108 * 1.58)


def test_config_errors(resnet):
    with pytest.raises(ValueError, match="layers are named like"):
        Q.quantize(resnet, {"default": "w4a8", "layer9.*": "w8a8"})
    with pytest.raises(ValueError, match="not a layer spec"):
        Q.quantize(resnet, "w4")
    with pytest.raises(ValueError, match="keys 'weights' and 'acts'"):
        Q.quantize(resnet, {"default": {"weight": "int4"}})
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        Q.quantize(nn.Sequential(nn.ReLU()), "w8a8")


# -- post-training calibration --------------------------------------------------------------------
def test_bias_correction_and_adaquant_reduce_the_error(resnet):
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = resnet(x)
    q = Q.calibrate(Q.quantize(resnet, "w3a8"), x)
    e0 = float((q(x) - ref).pow(2).mean())
    Q.bias_correction(q, resnet, x)
    e1 = float((q(x) - ref).pow(2).mean())
    Q.adaquant(q, resnet, x, iters=20, lr=1e-3, batch_size=16)
    with torch.no_grad():
        e2 = float((q(x) - ref).pow(2).mean())
    assert e1 < e0 and e2 < e1, (e0, e1, e2)
    w = q.layer1[0].conv1
    codes = (w.quantized_weight / w.wq.scale.reshape(-1, 1, 1, 1)).detach()
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 3 + 1e-4  # still 3-bit


def test_calibration_data_errors(resnet):
    q = Q.calibrate(Q.quantize(resnet, "w4a8"), torch.randn(16, 3, 32, 32))
    with pytest.raises(ValueError, match="at least 16"):
        Q.adaquant(q, resnet, torch.randn(4, 3, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        Q.adaquant(q, resnet, torch.randn(32, 1, 28, 28))
    with pytest.raises(TypeError, match="tensor"):
        Q.adaquant(q, resnet, [1, 2, 3])


def test_reestimate_bn_recovers_the_statistics(resnet):
    x = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 + 1
    m = Q.reestimate_bn(copy.deepcopy(resnet), x, batch_size=64)
    stem_bn = m.stem[1]
    # the first BatchNorm's input is the stem convolution of x: its per-channel mean is known exactly
    with torch.no_grad():
        h = m.stem[0](x)
    assert torch.allclose(stem_bn.running_mean, h.mean((0, 2, 3)), atol=1e-4)
    with pytest.raises(ValueError, match="no BatchNorm"):
        Q.reestimate_bn(nn.Sequential(nn.Conv2d(3, 3, 1)), x)


def test_zeroq_distilled_data_matches_bn_statistics(resnet):
    data, hist = Q.distill_data(resnet, n=8, iters=150, return_history=True)
    assert data.shape == (8, 3, 32, 32) and hist[-1] < 0.3 * hist[0]
    noise = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gap = {k: Q.bn_match(resnet, v).eval("(batch_mean - stored_mean) ** 2 + (batch_std - stored_std) ** 2").sum()
           for k, v in (("noise", noise), ("distilled", data))}
    assert gap["distilled"] < 0.3 * gap["noise"], gap  # the same objective, measured independently
    t = Q.bn_match(resnet, data)
    assert len(t) == sum(m.num_features for m in resnet.modules() if isinstance(m, nn.BatchNorm2d))
    m = nn.Sequential(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="no BatchNorm"):
        Q.distill_data(m)


def test_sensitivity_orders_bits(resnet):
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    s = Q.sensitivity(resnet, x, formats=("int2_pc", "int4_pc", "int8_pc"))
    assert list(s.columns) == ["int2_pc", "int4_pc", "int8_pc"] and list(s.index) == Q.quant_layers(resnet)
    assert (s["int2_pc"] > s["int4_pc"]).all() and (s["int4_pc"] > s["int8_pc"]).all() and (s >= 0).all().all()
    y = torch.randint(10, (32,), generator=torch.Generator().manual_seed(7))
    by_loss = Q.sensitivity(resnet, x, formats=("int2_pc",), labels=y, layers=["fc", "stem.0"])
    with torch.no_grad():  # by hand: only fc at 2 bits, the loss increase on (x, y)
        only_fc = Q.quantize(resnet, {"default": None, "fc": ("int2_pc", None)}).eval()
        want = float(torch.nn.functional.cross_entropy(only_fc(x), y) - torch.nn.functional.cross_entropy(resnet(x), y))
    assert by_loss.loc["fc", "int2_pc"] == pytest.approx(want, abs=1e-5)


# -- mixed precision --------------------------------------------------------------------------------
def test_allocation_equals_brute_force():
    g = np.random.default_rng(0)
    layers, opts = [f"l{i}" for i in range(4)], ["int2", "int4", "int8"]
    for trial in range(20):
        params = g.integers(50, 500, size=4)
        size = pd.DataFrame([[p * b for b in (2, 4, 8)] for p in params], index=layers, columns=opts, dtype=float)
        loss = pd.DataFrame(np.sort(g.random((4, 3)), axis=1)[:, ::-1] * g.random((4, 1)) * 10, index=layers, columns=opts)
        budget = float(size["int2"].sum() + g.random() * (size["int8"].sum() - size["int2"].sum()))
        ilp, brute = Q.allocate(loss, size, budget), Q.allocate_brute_force(loss, size, budget)
        assert Q.policy_cost(size, ilp) <= budget
        assert Q.policy_cost(loss, ilp) == pytest.approx(Q.policy_cost(loss, brute), abs=1e-9), trial


def test_budget_below_smallest_model():
    size = pd.DataFrame({"int2": [2.0, 2.0], "int4": [4.0, 4.0]}, index=["a", "b"])
    with pytest.raises(ValueError, match="below the smallest possible model"):
        Q.allocate(size, size, 3.0)


def test_option_costs_and_pareto(resnet):
    c = Q.option_costs(resnet, ["int2_pc", "int4_pc", "int8_pc"])
    assert (c["int4_pc"] == 2 * c["int2_pc"]).all() and (c["int8_pc"] == 2 * c["int4_pc"]).all()
    df = pd.DataFrame({"size": [1, 2, 2, 3, 4], "acc": [0.5, 0.7, 0.6, 0.7, 0.9]})
    assert Q.pareto_front(df, "size", "acc").tolist() == [True, True, False, False, True]


def test_dominators_by_hand():
    df = pd.DataFrame({"bits": [8, 8, 8, 4, 4, 4], "size": [1.0, 2.0, 4.0, 1.0, 2.0, 3.0],
                       "acc": [0.50, 0.70, 0.80, 0.60, 0.65, 0.85]}, index=list("abcdef"))
    by4 = Q.dominators(df, "size", "acc", among=df.bits == 4)
    # a (1, .50) <- d (1, .60); b (2, .70): no 4-bit model of size <= 2 scores more; c (4, .80) <- f (3, .85),
    # the best of those that beat it; f beats nothing of its own group above it, and nobody beats f
    assert by4.to_dict() == {"a": "d", "b": None, "c": "f", "d": None, "e": None, "f": None}
    assert Q.dominators(df, "size", "acc", among=df.bits == 8).to_dict()["e"] == "b"  # a tie in cost counts
    with pytest.raises(ValueError, match="no column 'cost'"):
        Q.dominators(df, "cost", "acc", among=df.bits == 4)


def test_random_formats_supernet_in_fit():
    train = wb.data.load("shapes", "train", subset=128)
    torch.manual_seed(0)
    q = Q.quantize(wb.create_model("resnet8"), "w8a8")
    seen = []

    class Spy(wb.train.Callback):
        def on_before_forward(self, state):
            seen.append(Q.get_policy(state.model)["layer1.0.conv1"][0])

    wb.fit(q, train, epochs=1, lr=0.05, batch_size=16, algorithms=[Q.RandomFormats(["int2_pc", "int4_pc", "fp4_e2m1"]), Spy()])
    assert set(seen) == {"int2_pc", "int4_pc", "fp4_e2m1"}
    assert Q.get_policy(q)["layer1.0.conv1"] == ("int8_pc", "uint8_asym")  # restored after training
    Q.set_policy(q, {"layer1.0.conv1": "fp8_e4m3"})
    assert q.layer1[0].conv1.spec.weights.name == "fp8_e4m3"
    with pytest.raises(ValueError, match="not quantized layers"):
        Q.set_policy(q, {"nope": "int4"})


def test_policy_search_within_budget_consistent_and_restoring():
    data = wb.data.load("shapes", "test", subset=64)
    torch.manual_seed(0)
    q = Q.calibrate(Q.quantize(wb.create_model("resnet8", width=8), "w8a8"), data.normalize(data.images[:32]))
    menu = ["int2_pc", "int4_pc", "int8_pc"]
    before = Q.get_policy(q)
    gb = {f: Q.cost(Q.set_policy(q, {n: f for n in Q.get_policy(q)})).attrs["gbops"] for f in menu}
    Q.set_policy(q, {n: before[n] for n in before})
    budget = (gb["int2_pc"] + gb["int8_pc"]) / 2
    found = Q.policy_search(q, menu, data, budget, samples=12, rounds=2, keep=3, progress=False)
    assert Q.get_policy(q) == before  # the supernet's formats come back
    assert len(found) >= 2 and set(found.source) <= {"uniform", "random", "evolved"} and (found.gbops <= budget).all()
    assert found.acc.is_monotonic_decreasing
    for _, row in found.head(3).iterrows():  # each row's cost and accuracy are the policy's own
        Q.set_policy(q, row.policy)
        assert Q.cost(q).attrs["gbops"] == pytest.approx(row.gbops, rel=1e-12)
        assert wb.evaluate(q, data)["acc"] == pytest.approx(row.acc, abs=1e-9)
    Q.set_policy(q, before)
    # the budget of uniform 8-bit admits every policy; one below uniform 2-bit admits none
    loose = Q.policy_search(q, menu, data, gb["int8_pc"], samples=4, rounds=0, progress=False)
    assert (loose.source == "uniform").sum() == 3 and len(loose) >= 5  # every uniform policy fits, and the draws
    assert (found.source == "uniform").sum() == 2  # uniform 2- and 4-bit fit the tighter budget, 8-bit does not
    with pytest.raises(ValueError, match="below the cheapest policy"):
        Q.policy_search(q, menu, data, gb["int2_pc"] * 0.999, samples=4, progress=False)
    with pytest.raises(ValueError, match="not quantized layers"):
        Q.policy_search(q, {"nope": menu}, data, budget, progress=False)


def test_policy_search_repairs_proposals_over_a_tight_budget():
    data = wb.data.load("shapes", "test", subset=64)
    torch.manual_seed(0)
    q = Q.calibrate(Q.quantize(wb.create_model("resnet8", width=8), "w8a8"), data.normalize(data.images[:32]))
    menu = [("int2_pc", "uint4_asym"), ("int4_pc", "uint4_asym"), ("int8_pc", "uint8_asym")]
    names = list(Q.get_policy(q))
    budget = Q.cost(Q.set_policy(q, dict.fromkeys(names, menu[1]))).attrs["gbops"]  # uniform W4A4
    found = Q.policy_search(q, menu, data, budget, samples=16, rounds=1, keep=4, progress=False)
    # almost no uniform draw over three options fits, yet every proposal is kept, repaired into the budget
    assert len(found) >= 16 and (found.gbops <= budget * (1 + 1e-12)).all()
    assert any(("int8_pc", "uint8_asym") in p.values() for p in found.policy)  # a mix, not only cheap options
    for _, row in found.head(2).iterrows():
        assert Q.cost(Q.set_policy(q, row.policy)).attrs["gbops"] == pytest.approx(row.gbops, rel=1e-12)


def test_train_supernet_starts_from_the_float_weights():
    train = wb.data.load("shapes", "train", subset=64)
    torch.manual_seed(0)
    start = wb.create_model("resnet8", width=8, num_classes=train.num_classes)
    with torch.no_grad():  # not the initialization train_model would draw with the same seed
        start.fc.weight.add_(1.0)
    res = Q.train_supernet("resnet8", start, train, None, ["int4_pc", "fp4_e2m1"], config="w8a8",
                           model_kwargs={"width": 8}, epochs=1, lr=1e-9, batch_size=32)
    assert isinstance(res.model.fc, Q.QuantLinear) and Q.get_policy(res.model)["fc"] == ("int8_pc", "uint8_asym")
    assert torch.allclose(res.model.fc.weight, start.fc.weight, atol=1e-6)  # steps of 1e-9: the start's weights


def test_qat_algorithm_trains_caches_and_rebuilds():
    train = wb.data.load("shapes", "train", subset=128)
    test = wb.data.load("shapes", "test", subset=64)
    kw = dict(model_kwargs={"width": 8}, epochs=1, lr=0.05, batch_size=32, algorithms=[Q.QAT("w1.58a8")])
    first = wb.train.train_model("resnet8", train, test, **kw)
    again = wb.train.train_model("resnet8", train, test, **kw)  # from the cache: rebuilt, quantized, same weights
    assert isinstance(again.model.layer1[0].conv1, Q.QuantConv2d)
    assert again.model.layer1[0].conv1.spec.weights.name == "ternary"
    x = test.normalize(test.images[:8])
    with torch.no_grad():
        assert torch.equal(first.model.eval()(x), again.model.eval()(x))
        w = again.model.layer1[0].conv1.quantized_weight
    assert len(torch.unique(w)) <= 3  # ternary: -gamma, 0, +gamma
    with pytest.raises(ValueError, match="already quantized"):
        Q.quantize_(again.model, "w8a8")


# -- studies: QAT over a grid, ternary scales ----------------------------------------------------
def test_qat_compare_grid_equal_recipe_and_sizes():
    train = wb.data.load("shapes", "train", subset=96)
    test = wb.data.load("shapes", "test", subset=48)
    configs = {"float": "float", "b1.58": "w1.58a8", "b1.58 median": ("ternary_median", "uint8_asym")}
    table, runs = Q.qat_compare("mlp", {"1x": {"depth": 1, "width": 8}, "2x": {"depth": 1, "width": 16}}, configs,
                                train, test, seeds=[0], epochs=1, lr=0.01, batch_size=32, optimizer="adam",
                                augment=None, progress=False)
    assert list(table.columns) == ["variant", "config", "seed", "params", "weight_mb", "gbops", "test_acc", "train_acc",
                                   "seconds"]
    assert len(table) == 6 and set(runs) == {(v, c, 0) for v in ("1x", "2x") for c in configs}
    t = table.set_index(["variant", "config"])
    assert t.loc[("2x", "float"), "params"] > t.loc[("1x", "float"), "params"]
    # ternary weights are log2(3) bits against float's 32
    assert t.loc[("1x", "b1.58"), "weight_mb"] < t.loc[("1x", "float"), "weight_mb"] / 15
    # bit-operations: the same multiply-adds at (ternary bits x 8) instead of (32 x 32)
    assert t.loc[("1x", "b1.58"), "gbops"] == pytest.approx(
        t.loc[("1x", "float"), "gbops"] * Q.get_format("ternary").bits * 8 / (32 * 32), rel=1e-9)
    median = runs[("1x", "b1.58 median", 0)].model.layers[0][0]
    assert median.spec.weights.name == "ternary_median"
    assert not isinstance(runs[("1x", "float", 0)].model.layers[0][0], Q.QuantLinear)
    with pytest.raises(ValueError, match="label the config"):
        Q.qat_compare("mlp", {"1x": {}}, [("ternary_median", "uint8_asym")], train, test)
    with pytest.raises(ValueError, match="matches none"):
        Q.qat_compare("mlp", {"1x": {"depth": 1, "width": 8}}, {"x": {"default": None, "nothing.*": "w4a4"}}, train, test)


def test_qat_compare_finetune_starts_every_config_from_one_float_run():
    train = wb.data.load("shapes", "train", subset=96)
    test = wb.data.load("shapes", "test", subset=48)
    recipe = dict(epochs=1, lr=0.01, batch_size=32, optimizer="adam", augment=None)
    variants = {"1x": {"depth": 1, "width": 8}}
    base = wb.train_model("mlp", train, test, model_kwargs=variants["1x"], seed=0, progress=False, **recipe)
    # a learning rate too small to move any weight: every config must still hold the float run's weights
    table, runs = Q.qat_compare("mlp", variants, ["float", "w4a8"], train, test, finetune={"lr": 1e-12},
                                progress=False, **recipe)
    w0 = base.model.layers[0][0].weight
    for config in ("float", "w4a8"):
        layer = runs[("1x", config, 0)].model.layers[0][0]
        assert torch.allclose(layer.weight, w0, atol=1e-8), config
    assert isinstance(runs[("1x", "w4a8", 0)].model.layers[0][0], Q.QuantLinear)
    # from scratch (no finetune) the same seed trains the same float model as the base
    _, scratch = Q.qat_compare("mlp", variants, ["float"], train, test, progress=False, **recipe)
    assert torch.equal(scratch[("1x", "float", 0)].model.layers[0][0].weight, w0)
    # a different start is a different cache entry: fine-tuning with a real rate moves the weights
    _, moved = Q.qat_compare("mlp", variants, ["float"], train, test, finetune={"lr": 0.01}, progress=False, **recipe)
    assert not torch.allclose(moved[("1x", "float", 0)].model.layers[0][0].weight, w0, atol=1e-4)
    with pytest.raises(ValueError, match="adds the QAT algorithm"):
        Q.qat_compare("mlp", variants, ["float"], train, test, finetune={"algorithms": []}, **recipe)


def test_ternary_scales_by_hand():
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, -0.2, 0.3, -2.0], [0.2, 0.2, -0.4, 0.2]]))
    s = Q.ternary_scales(nn.Sequential(lin)).iloc[0]
    a = lin.weight.abs()
    assert s["absmean"] == pytest.approx(float(a.mean()))        # 0.45
    assert s["median"] == pytest.approx(float(a.median()))        # torch: the lower middle value, 0.2
    # absmean 0.45: |w| / 0.45 rounds to 0 below 0.225 -> 0.1, 0.2, 0.2, 0.2, 0.2 are zeros: 5 of 8
    assert s["zeros_absmean"] == pytest.approx(5 / 8)
    # median 0.2: only 0.1 rounds to zero (0.2 / 0.2 = 1)
    assert s["zeros_median"] == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        Q.ternary_scales(nn.Sequential(nn.ReLU()))


def test_hypervolume_exact_and_against_a_grid():
    df = pd.DataFrame({"mb": [2.0, 1.0, 3.0, 1.0, 5.0], "acc": [0.7, 0.5, 0.6, 0.5, 0.9]})
    assert Q.hypervolume(df, "mb", "acc", 4.0) == pytest.approx(1 * 0.5 + 2 * 0.7)  # by hand: two strips
    rng = np.random.default_rng(0)
    pts = pd.DataFrame({"mb": rng.uniform(0, 1, 12), "acc": rng.uniform(0, 1, 12)})
    grid = np.linspace(0, 1, 801)[:-1] + 1 / 1600  # midpoints: the area below the front's staircase
    height = [pts.acc[pts.mb <= x].max() if (pts.mb <= x).any() else 0.0 for x in grid]
    assert Q.hypervolume(pts, "mb", "acc", 1.0) == pytest.approx(np.mean(height), abs=2e-3)
    with pytest.raises(ValueError, match="no column"):
        Q.hypervolume(df, "size", "acc", 4.0)


def test_clipped_ste_matches_the_clamp_formulation_values_and_gradients():
    from workbench.quant.layers import clipped_ste

    lo, hi = torch.tensor([-1.0, -0.5]).view(2, 1), torch.tensor([1.0, 0.5]).view(2, 1)
    x = torch.tensor([[-2.0, -1.0, -0.3, 0.0, 1.0, 3.0], [-0.5, 0.25, 0.5, 0.7, -0.6, 0.1]], requires_grad=True)
    q = torch.clamp(torch.round(x.detach() * 4) / 4, lo, hi)
    g = torch.arange(12.0).view(2, 6) + 1
    ours = clipped_ste(x, q, lo, hi)
    (ours * g).sum().backward()
    grad, x.grad = x.grad.clone(), None
    ref = Q.ste_round(torch.minimum(torch.maximum(x, lo), hi), q)
    (ref * g).sum().backward()
    assert torch.equal(ours, q) and torch.allclose(ref, q)
    assert torch.equal(grad, x.grad)  # 1 inside, 0 outside, 1/2 on a bound (-1, 1, -0.5 and 0.5 here)
    assert grad[0, 1] == g[0, 1] / 2 and grad[0, 0] == 0 and grad[1, 1] == g[1, 1]
    # one range for the whole tensor (activations) takes another path: the same answer
    lo, hi = torch.tensor(0.0), torch.tensor(0.7)
    x = torch.tensor([-0.1, 0.0, 0.3, 0.7, 0.70001, 2.0, 1e-30, 0.6999999]).requires_grad_()
    g = torch.arange(8.0) + 1
    q = torch.clamp(x.detach(), lo, hi)
    (clipped_ste(x, q, lo, hi) * g).sum().backward()
    grad, x.grad = x.grad.clone(), None
    (Q.ste_round(torch.minimum(torch.maximum(x, lo), hi), q) * g).sum().backward()
    assert torch.equal(grad, x.grad) and grad.tolist() == [0, 1, 3, 2, 0, 0, 7, 8]
    if torch.set_flush_denormal(True):  # where the CPU can flush subnormals, the fallback gives the same
        try:
            x.grad = None
            (clipped_ste(x, q, lo, hi) * g).sum().backward()
            assert x.grad.tolist() == [0, 1, 3, 2, 0, 0, 7, 8]
        finally:
            torch.set_flush_denormal(False)
