"""wb.quant's layer-wise calibration: bias correction and AdaQuant in one forward pass (each layer sees the
input the already-corrected layers before it produce), AdaQuant's learned activation ranges, and the
per-layer output errors of a quantized model."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import workbench as wb
from workbench import quant as Q
from workbench.quant.ptq import _learned_act_quant

from ._models import resnet8_with_statistics


@pytest.fixture(scope="module")
def folded():
    return Q.fold_bn(resnet8_with_statistics())


def _x(n=48, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _inputs(model, x):
    """Every conv / linear layer's input on x, by name (one hooked pass)."""
    got, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_pre_hook(lambda mod, a, n=name: got.setdefault(n, a[0])))
    model(x)
    for h in handles:
        h.remove()
    return got


def _count_calls(model):
    calls = []
    return calls, model.register_forward_pre_hook(lambda m, a: calls.append(len(a[0])))


@torch.no_grad()
def test_bias_correction_zeroes_every_layers_mean_error_in_one_pass(folded):
    x = _x()
    q = Q.calibrate(Q.quantize(folded, "w3a8"), x)
    calls, h = _count_calls(q)
    Q.bias_correction(q, folded, x, batch_size=20)  # slices of 20: the means are still over all 48 inputs
    h.remove()
    assert calls == [48]  # one pass of the quantized model, the whole calibration set as one batch
    floats = dict(folded.named_modules())
    for name, xin in _inputs(q, x).items():  # each layer on the input the corrected layers before it give
        layer, f = dict(q.named_modules())[name], floats[name]
        ref = f._conv_forward(xin, f.weight, f.bias) if isinstance(f, nn.Conv2d) else nn.functional.linear(xin, f.weight, f.bias)
        diff = ref - layer(xin)
        mean = diff.mean([0, 2, 3]) if diff.ndim == 4 else diff.mean(0)
        assert mean.abs().max() < 1e-4, (name, mean.abs().max())


def test_adaquant_runs_each_model_once_and_keeps_the_grid(folded):
    x = _x(40)
    q = Q.calibrate(Q.quantize(folded, "w3a4"), x)
    qcalls, h1 = _count_calls(q)
    fcalls, h2 = _count_calls(folded)
    Q.adaquant(q, folded, x, iters=3)
    h1.remove(), h2.remove()
    assert qcalls == [40] and fcalls == [40]
    w = q.layer1[0].conv1
    codes = (w.quantized_weight / w.wq.scale.reshape(-1, 1, 1, 1)).detach()
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 3 + 1e-4


def test_learned_ranges_reduce_the_error_and_stay_in_the_model(folded):
    x = _x(32, seed=1)
    with torch.no_grad():
        ref = folded(x)
    q0 = Q.calibrate(Q.quantize(folded, "w4a4"), x)
    err = {}
    for act_range in (False, True):
        q = Q.adaquant(copy.deepcopy(q0), folded, x, iters=15, batch_size=16, act_range=act_range)
        with torch.no_grad():
            err[act_range] = float((q(x) - ref).pow(2).mean())
        ranges = Q.act_ranges(q).set_index("layer")
        if act_range:
            changed = (ranges.hi - Q.act_ranges(q0).set_index("layer").hi).abs() > 1e-6
            assert changed.all()  # every layer's input range was learned, and stored in the model's buffers
        else:
            assert ranges.equals(Q.act_ranges(q0).set_index("layer"))  # the calibrated ranges, untouched
    with torch.no_grad():
        naive = float((q0(x) - ref).pow(2).mean())
    assert err[True] < 0.5 * naive and err[False] < 0.5 * naive, (err, naive)


@pytest.mark.parametrize("fmt", ["uint4_asym", "int4", "uint8_asym", "int3_asym"])
def test_learned_act_quant_equals_the_quantizer(fmt):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, generator=g) * 2 + 0.3
    q = Q.Quantizer(Q.get_format(fmt), "act")
    lo, hi = torch.tensor(-1.7), torch.tensor(2.9)
    q.lo.copy_(lo), q.hi.copy_(hi), q.initialized.fill_(True)
    q.eval()
    with torch.no_grad():
        want = q(x)
    lo_p, hi_p = lo.clone().requires_grad_(True), hi.clone().requires_grad_(True)
    got = _learned_act_quant(q.fmt, lo_p, hi_p, x)
    assert torch.allclose(got, want, atol=1e-6)
    ((got - x) ** 2).sum().backward()
    assert torch.isfinite(hi_p.grad) and float(hi_p.grad) != 0.0


def test_learned_act_quant_gradient_inside_the_range_is_lsq():
    fmt = Q.get_format("uint4_asym")
    x = torch.tensor([0.23, 0.61, 1.37])  # all inside [0, 3]
    hi = torch.tensor(3.0, requires_grad=True)
    out = _learned_act_quant(fmt, torch.tensor(0.0), hi, x)
    out.sum().backward()
    s = 3.0 / 15
    # out = round(x / s) * s with s = hi / 15: d out / d hi = (round(x / s) - x / s) / 15, straight through the
    # rounding (LSQ): inside the range the rounding error pulls on the step size, so a wider range is not free
    want = float(((x / s).round() - x / s).sum() / 15)
    assert float(hi.grad) == pytest.approx(want, abs=1e-6)


@torch.no_grad()
def test_layer_errors(folded):
    x = _x(30, seed=2)
    q = Q.calibrate(Q.quantize(folded, "w2a8"), x)
    e = Q.layer_errors(q, folded, x, batch_size=7)
    assert list(e.layer) == Q.quant_layers(folded) and (e.rel_error > 0).all()
    # the first layer sees the same input in both models: its error by hand
    f0, q0 = folded.stem[0], q.stem[0]
    y = f0(x)
    assert e.rel_error.iloc[0] == pytest.approx(float((q0(x) - y).pow(2).sum() / y.pow(2).sum()), rel=1e-5)
    Q.set_quant_enabled(q, False)
    assert (Q.layer_errors(q, folded, x).rel_error < 1e-12).all()  # quantizers off: the float model
    with pytest.raises(ValueError, match="no layer"):
        Q.layer_errors(Q.quantize(wb.create_model("resnet20"), "w8a8"), folded, x)
