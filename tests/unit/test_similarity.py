import numpy as np
import pytest
import torch

import workbench as wb
from workbench import similarity as sim


@pytest.fixture(scope="module")
def demo():
    """Kornblith et al.'s demo data (representation_similarity/Demo.ipynb)."""
    rng = np.random.RandomState(1337)
    x = rng.randn(100, 10)
    y = rng.randn(100, 10) + x
    return torch.tensor(x), torch.tensor(y)


def test_published_demo_values(demo):
    x, y = demo
    assert round(float(sim.linear_cka(x, y)), 5) == 0.55761
    assert round(float(sim.cka(sim.gram_linear(x), sim.gram_linear(y))), 5) == 0.55761
    assert round(float(sim.rbf_cka(x, y, threshold=0.5)), 5) == 0.65483
    assert round(float(sim.linear_cka(x, y, debiased=True)), 5) == 0.51346
    assert round(float(sim.mean_squared_cca(x, y, center=False)), 5) == 0.54312


def test_invariances(demo):
    x, y = demo
    q, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    a = torch.randn(10, 10, dtype=torch.float64)
    base = float(sim.linear_cka(x, y))
    assert float(sim.linear_cka(x @ q, y)) == pytest.approx(base, abs=1e-12)          # orthogonal
    assert float(sim.linear_cka(x * 1.337, y)) == pytest.approx(base, abs=1e-12)      # isotropic scaling
    assert abs(float(sim.linear_cka(x @ a, y)) - base) > 1e-3                          # not general linear maps
    assert float(sim.mean_squared_cca(x @ a, y)) == pytest.approx(float(sim.mean_squared_cca(x, y)), abs=1e-10)
    assert float(sim.linear_cka(x, y)) == pytest.approx(float(sim.linear_cka(y, x)), abs=1e-14)  # symmetry
    assert float(sim.linear_cka(x, x)) == pytest.approx(1.0)
    assert float(sim.procrustes_distance(x, x @ q)) == pytest.approx(0.0, abs=1e-10)


def test_gram_and_feature_forms_agree_when_n_is_small():
    x, y = torch.randn(8, 30, dtype=torch.float64), torch.randn(8, 20, dtype=torch.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = (yc.T @ xc).pow(2).sum() / (torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))
    assert float(sim.linear_cka(x, y)) == pytest.approx(float(feature_form), abs=1e-12)


def test_minibatch_with_one_batch_equals_unbiased_cka(demo):
    x, y = demo
    acc = sim.MinibatchCKA()
    acc.update(x, y)
    assert float(acc.compute()) == pytest.approx(float(sim.linear_cka(x, y, debiased=True)), abs=1e-12)
    acc2 = sim.MinibatchCKA()
    for i in range(0, 100, 25):
        acc2.update(x[i:i + 25], y[i:i + 25])
    assert 0.3 < float(acc2.compute()) < 0.8


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 4 examples"):
        sim.linear_cka(torch.randn(3, 5), torch.randn(3, 5), debiased=True)
    with pytest.raises(ValueError, match="10 examples and Y has 9"):
        sim.linear_cka(torch.randn(10, 5), torch.randn(9, 5))
    with pytest.raises(ValueError, match="at least 4"):
        sim.MinibatchCKA().update(torch.randn(3, 2), torch.randn(3, 2))
    with pytest.warns(RuntimeWarning, match="constant"):
        v = sim.linear_cka(torch.ones(20, 4), torch.randn(20, 4))
    assert float(v) == 0.0 and not torch.isnan(v)


def test_differentiable_path_keeps_gradients():
    x = torch.randn(32, 6, requires_grad=True)
    y = torch.randn(32, 6)
    v = sim.linear_cka(x, y, differentiable=True)
    assert v.dtype == torch.float32
    (1 - v).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_svcca_pwcca_ranges(demo):
    x, y = demo
    for f in (sim.svcca, sim.pwcca):
        v = float(f(x, y))
        assert 0 < v <= 1
        assert float(f(x, x)) == pytest.approx(1.0, abs=1e-8)


def test_similarity_matrix_streams_and_matches_itself():
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=8)
    data = wb.load("shapes", "test", subset=300)
    layers = ["stem", "layer1", "layer2", "layer3"]
    m = sim.similarity_matrix(model, model, data, layers, layers, batch_size=100)
    assert list(m.index) == layers and list(m.columns) == layers
    assert np.allclose(np.diag(m.values), 1.0) and np.allclose(m.values, m.values.T)
    with pytest.raises(ValueError, match="available hook points"):
        sim.similarity_matrix(model, model, data, ["layer9"], layers)
    with pytest.raises(ValueError, match="at least 4"):
        sim.similarity_matrix(model, model, data, layers, layers, batch_size=2)
    fig = wb.viz.similarity_heatmap(m)
    assert fig.data[0].type == "heatmap"


def test_similarity_matrix_matches_float64_minibatch_cka():
    torch.manual_seed(0)
    a, b = wb.create_model("resnet8", width=8).eval(), wb.create_model("resnet8", width=8).eval()
    data = wb.load("shapes", "test", subset=200)
    m = sim.similarity_matrix(a, b, data, ["layer1", "layer3"], ["layer2"], batch_size=100)
    acc = sim.MinibatchCKA()
    for i in range(0, 200, 100):
        x = data.normalize(data.images[i:i + 100])
        _, ca = wb.run_with_cache(a, x, ["layer1"])
        _, cb = wb.run_with_cache(b, x, ["layer2"])
        acc.update(ca["layer1"], cb["layer2"])
    assert abs(m.loc["layer1", "layer2"] - float(acc.compute())) < 1e-5


def test_gram_backward_is_exact():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sim.gram_linear, (x,))
    y = torch.randn(6, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: sim.linear_cka(a, y, differentiable=True), (x,))


def test_centered_gram_is_the_centered_gram_with_an_exact_backward():
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(sim.gram_centered(x, torch.float64), sim.center_gram(x.detach() @ x.detach().T))
    assert torch.autograd.gradcheck(lambda a: sim.gram_centered(a, torch.float64).double(), (x,))
    # bfloat16 products of centered features keep the Gram matrix to bfloat16's resolution
    a = torch.randn(64, 4096).relu() + 3.0  # a large mean, which a raw Gram matrix would cancel badly
    exact = sim.center_gram(a.double() @ a.double().T)
    low = sim.gram_centered(a, torch.bfloat16).double()
    assert float(torch.linalg.norm(low - exact) / torch.linalg.norm(exact)) < 1e-2
