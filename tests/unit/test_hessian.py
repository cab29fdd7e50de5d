"""Hessian tools against the exact Hessian of tiny float64 models."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import workbench as wb
from workbench import hessian


def tiny(bn: bool = False):
    torch.manual_seed(0)
    layers = [nn.Linear(4, 5)] + ([nn.BatchNorm1d(5)] if bn else []) + [nn.Tanh(), nn.Linear(5, 3)]
    return nn.Sequential(*layers).double()


def data(n=48):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def exact_hessian(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            params[n] = flat[i:i + k].view(s)
            i += k
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat0)


def test_top_eigenvalues_and_vectors_match_the_exact_hessian():
    model = tiny().eval()
    x, y = data()
    H = exact_hessian(model, x, y)
    ev, evec = torch.linalg.eigh(H)
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]   # unequal split: weighted by size
    res = hessian.eigenvalues(model, F.cross_entropy, batches, top_k=3, vectors=True, tol=1e-10, max_steps=200)
    want = ev.flip(0)[:3].numpy()
    np.testing.assert_allclose(res.values, want, rtol=1e-6)
    for i in range(3):
        assert abs(float(res.vectors[i] @ evec[:, -1 - i])) > 1 - 1e-6
    assert res.converged and res.bn == "eval" and res.products <= res.dim + 1


def test_the_batch_split_does_not_change_the_operator():
    model = tiny().eval()
    x, y = data()
    a = hessian.eigenvalues(model, F.cross_entropy, [(x, y)], top_k=2, tol=1e-10, max_steps=200).values
    b = hessian.eigenvalues(model, F.cross_entropy, [(x[:7], y[:7]), (x[7:30], y[7:30]), (x[30:], y[30:])],
                            top_k=2, tol=1e-10, max_steps=200).values
    np.testing.assert_allclose(a, b, rtol=1e-8)


def test_hutchinson_trace_within_its_standard_error():
    model = tiny().eval()
    x, y = data()
    exact = float(torch.trace(exact_hessian(model, x, y)))
    res = hessian.trace(model, F.cross_entropy, [(x, y)], n_samples=400, seed=3)
    assert res.stderr > 0 and abs(res.estimate - exact) < 4 * res.stderr


def test_density_integrates_to_one_and_has_the_spectrums_moments():
    model = tiny().eval()
    x, y = data()
    H = exact_hessian(model, x, y)
    ev = torch.linalg.eigvalsh(H).numpy()
    d = hessian.density(model, F.cross_entropy, [(x, y)], steps=H.shape[0], probes=60, seed=0)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(d.weights.sum(1), 1.0, atol=1e-10)
    assert d.moment(0) == pytest.approx(1.0)
    # with as many steps as dimensions the quadrature is exact per probe, so the moments are
    # Hutchinson estimates of tr(H^p) / dim: close to the exact spectrum's moments
    assert d.moment(1) == pytest.approx(ev.mean(), abs=0.15 * np.abs(ev).max())
    assert d.moment(2) == pytest.approx((ev ** 2).mean(), rel=0.2)


def test_parameter_subsets():
    model = tiny(bn=True)
    x, y = data()
    full = hessian.HessianOperator(model, F.cross_entropy, [(x, y)])
    bn_only = hessian.HessianOperator(model, F.cross_entropy, [(x, y)], params="bn")
    last = hessian.HessianOperator(model, F.cross_entropy, [(x, y)], params=["3"])
    assert bn_only.dim == 10 and last.dim == 18 and full.dim == 25 + 10 + 18
    with pytest.raises(ValueError, match="match no parameter"):
        hessian.HessianOperator(model, F.cross_entropy, [(x, y)], params=["layer9"])


@pytest.mark.parametrize("method", ["reuse", "recompute", "func"])
def test_model_state_is_restored_even_after_an_exception(method):
    model = tiny(bn=True).train()
    model[0].weight.requires_grad_(False)
    x, y = data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    res = hessian.eigenvalues(model, F.cross_entropy, [(x[:24], y[:24]), (x[24:], y[24:])], top_k=1, bn="train")
    assert res.bn == "train"
    calls = []

    def failing(out, t):
        calls.append(1)
        if len(calls) > 1:   # the second batch: after the model was put in analysis mode
            raise RuntimeError("boom")
        return F.cross_entropy(out, t)

    with pytest.raises(RuntimeError, match="boom"):
        hessian.eigenvalues(model, failing, [(x[:24], y[:24]), (x[24:], y[24:])], top_k=1, bn="train", method=method)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed (BatchNorm statistics and counters must not move)"
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert model.training and model[1].training


def test_bn_mode_matters_and_is_recorded():
    model = tiny(bn=True)
    x, y = data()
    ev = hessian.eigenvalues(model, F.cross_entropy, [(x, y)], top_k=1, bn="eval", tol=1e-8, max_steps=100)
    tr = hessian.eigenvalues(model, F.cross_entropy, [(x, y)], top_k=1, bn="train", tol=1e-8, max_steps=100)
    assert ev.bn == "eval" and tr.bn == "train" and abs(ev.values[0] - tr.values[0]) > 1e-6


def test_bad_requests():
    model = tiny()
    x, y = data()
    with pytest.raises(ValueError, match="batches is empty"):
        hessian.eigenvalues(model, F.cross_entropy, [], top_k=1)
    with pytest.raises(ValueError, match="must return a scalar"):
        hessian.eigenvalues(model, lambda o, t: F.cross_entropy(o, t, reduction="none"), [(x, y)], top_k=1)
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.unused = model, nn.Linear(2, 2).double()

        def forward(self, x):
            return self.net(x)

    extra = WithUnused()
    with pytest.raises(ValueError, match="does not depend on 2 selected parameters"):
        hessian.eigenvalues(extra, F.cross_entropy, [(x, y)], top_k=1)
    with pytest.raises(FloatingPointError, match="not finite on batch 0"):
        hessian.eigenvalues(model, F.cross_entropy, [(x * float("nan"), y)], top_k=1)
    dropout = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 3)).double().train()
    with pytest.warns(UserWarning, match="dropout is turned off"):
        hessian.eigenvalues(dropout, F.cross_entropy, [(x, y)], top_k=1)
    assert dropout.training


@pytest.mark.parametrize("bn", ["eval", "train"])
def test_every_product_method_gives_the_same_operator(bn):
    model = tiny(bn=True)
    x, y = data()
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    V = torch.randn(3, sum(p.numel() for p in model.parameters()), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    out = {}
    for method in ("reuse", "recompute", "func"):
        op = hessian.HessianOperator(model, F.cross_entropy, batches, bn=bn, method=method)
        with op:
            out[method] = (op.matmat(V), torch.stack([op.matvec(v) for v in V]))
        assert op.products == 6
    ref = out["recompute"][1]
    for method, (block, single) in out.items():
        torch.testing.assert_close(block, ref, rtol=1e-10, atol=1e-12, msg=method)
        torch.testing.assert_close(single, ref, rtol=1e-10, atol=1e-12, msg=method)
    if bn == "eval":
        H = exact_hessian(model.eval(), x, y)
        torch.testing.assert_close(ref, V @ H, rtol=1e-10, atol=1e-12)


def test_auto_measures_the_graph_and_reuses_it_when_it_fits():
    model = tiny().eval()
    x, y = data()
    op = hessian.HessianOperator(model, F.cross_entropy, [(x, y)])
    with op:
        op.matvec(torch.ones(op.dim, dtype=torch.float64))
        assert op.method == "reuse" and op.graph_bytes > x.numel() * 8 and len(op._graphs) == 1
    assert not op._graphs   # graphs are freed on exit


def test_hutchplusplus_is_exact_when_the_sketch_spans_the_space_and_beats_hutchinson():
    model = tiny().eval()
    x, y = data()
    H = exact_hessian(model, x, y)
    want = float(torch.trace(H))
    # 3 x dim products: the sketch spans all of R^dim, so the estimate is exact
    dim = H.shape[0]
    full = hessian.trace(model, F.cross_entropy, [(x, y)], n_samples=3 * dim, estimator="hutch++")
    assert full.estimate == pytest.approx(want, rel=1e-8)
    # at a small budget, over several seeds, Hutch++'s error is smaller than Hutchinson's
    err = {e: np.mean([abs(hessian.trace(model, F.cross_entropy, [(x, y)], n_samples=30, estimator=e,
                                         seed=s).estimate - want) for s in range(8)])
           for e in ("hutchinson", "hutch++")}
    assert err["hutch++"] < err["hutchinson"], err


def test_density_in_blocks_equals_density_one_probe_at_a_time():
    model = tiny().eval()
    x, y = data()
    a = hessian.density(model, F.cross_entropy, [(x, y)], steps=12, probes=3, block=1)
    b = hessian.density(model, F.cross_entropy, [(x, y)], steps=12, probes=3, block=3, method="func")
    np.testing.assert_allclose(a.nodes, b.nodes, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-8, atol=1e-10)
    assert a.products == b.products == 36


@pytest.mark.parametrize("start", ["gradient", "random"])
def test_the_accuracy_asked_for_is_reached_and_residuals_bound_the_error(start):
    model = tiny().eval()
    x, y = data()
    exact = torch.linalg.eigvalsh(exact_hessian(model, x, y)).flip(0)[:2].numpy()
    for tol in (1e-2, 1e-3, 1e-6):
        res = hessian.eigenvalues(model, F.cross_entropy, [(x, y)], top_k=2, tol=tol, start=start, max_steps=60)
        assert res.converged
        err = np.abs(res.values - exact)
        assert np.all(err <= res.residuals * (1 + 1e-6) + 1e-12), (tol, err, res.residuals)
        assert np.all(err <= tol * np.abs(exact) * 1.01)


def test_attention_models_have_exact_hessian_products():
    torch.manual_seed(0)
    model = wb.create_model("vit_tiny", dim=12, depth=1, heads=2, img_size=8, patch=4).double().eval()
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):   # the reference needs second derivatives too
        H = exact_hessian(model, x, y)
    res = hessian.eigenvalues(model, F.cross_entropy, [(x, y)], top_k=1, tol=1e-10, max_steps=300)
    assert res.values[0] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-6)
