"""Initialization theory (workbench.dynamics.theory): measured statistics against exact and closed-form answers."""
import math

import numpy as np
import pytest
import torch

from workbench.dynamics import theory as T

X = torch.linspace(-1.5, 1.5, 50)  # a fixed input; q0 = |x|^2 / n0 ~ 0.78


def test_relu_variance_at_criticality_matches_closed_form_and_wrong_cw_fails():
    s = T.measure(X, depth=8, width=64, activation="relu", draws=1500, seed=0)
    theory = T.kernel_recursion(X, 8, "relu")
    assert np.allclose(theory, 2 * T._q0(X))  # critical: preserved exactly
    assert np.all(np.abs(s.K - theory) <= 4 * s.K_se), (s.K, theory, s.K_se)
    wrong = T.kernel_recursion(X, 8, "relu", c_w=2.2)  # a deliberately wrong c_w must fail the same test
    assert not np.all(np.abs(s.K - wrong) <= 4 * s.K_se)


def test_relu_off_criticality_is_exponential_and_exact():
    for c_w in (1.5, 2.6):
        s = T.measure(X, depth=6, width=32, activation="relu", c_w=c_w, c_b=0.1, draws=800, seed=1)
        assert np.all(np.abs(s.K - T.kernel_recursion(X, 6, "relu", c_w, 0.1)) <= 4 * s.K_se)
    k = T.kernel_recursion(1.0, 10, "relu", c_w=3.0)
    assert np.allclose(k[1:] / k[:-1], 1.5)  # c_b = 0: growth c_w / 2 per layer


def test_kurtosis_vanishes_when_depth_over_width_goes_to_zero():
    # one preactivation (neuron 0) across draws, at L / n = 2 / 256: every layer within 4 standard errors of 0
    s = T.measure(X, depth=2, width=256, activation="relu", draws=800, seed=2, neuron=0)
    assert np.all(np.abs(s.kurtosis) <= 4 * s.kurtosis_se), (s.kurtosis, s.kurtosis_se)
    assert np.all(s.kurtosis_se < 0.5)  # an informative test: the errors are small
    deep = T.measure(X, depth=4, width=8, activation="relu", draws=800, seed=2)  # L / n = 1/2: not Gaussian
    assert deep.kurtosis[-2] > 4 * deep.kurtosis_se[-2]


def test_exact_relu_kurtosis_formula_against_measurement():
    n = 20
    s = T.measure(X, depth=4, width=n, activation="relu", draws=6000, seed=3, dtype=torch.float64)
    exact = T.exact_kurtosis(s.layers, n)
    assert exact[3] == pytest.approx(3 * ((1 + 5 / n) ** 3 - 1))
    # hidden layers 1-4 (neurons pooled; the output's one neuron is too noisy here)
    assert np.all(np.abs(s.kurtosis[:4] - exact[:4]) <= 4 * s.kurtosis_se[:4] + 1e-9), (s.kurtosis, exact)
    # the leading order 15 (l - 1) / n is the first term of the exact formula
    assert T.kurtosis_recursion(1.0, 4, n, "relu")[3] == pytest.approx(15 * 3 / n)
    assert T.exact_kurtosis([1, 3], 10, "linear") == pytest.approx([0.0, 3 * (1.2 ** 2 - 1)])


def test_tanh_kernel_decays_like_one_over_2l_and_kurtosis_like_2l_over_n():
    k = T.kernel_recursion(1.0, 3000, "tanh")
    assert 2 * 3000 * k[2999] == pytest.approx(1.0, abs=0.01)
    assert 2 * 1000 * k[999] == pytest.approx(1.0, abs=0.01)
    ku = T.kurtosis_recursion(1.0, 1000, 50, "tanh")
    assert ku[999] * 50 / 1000 == pytest.approx(2.0, abs=0.02)  # the book's K* = 0 class: V / (n K^2) ~ (2/3) l / n
    # measured at small depth and large width: the recursion within sampling error and a 2% finite-width allowance
    s = T.measure(X, depth=4, width=256, activation="tanh", draws=400, seed=4)
    rec = T.kernel_recursion(X, 4, "tanh")
    assert np.all(np.abs(s.K - rec) <= 4 * s.K_se + 0.02 * rec)


def test_quadrature_against_exact_moments():
    assert T.gauss_mean(lambda z: np.maximum(z, 0) ** 2, 3.0) == pytest.approx(1.5)
    assert T.gauss_mean(lambda z: z ** 4, 2.0) == pytest.approx(12.0)
    assert T.gauss_mean(lambda z: np.tanh(z) ** 2, 1e-4) == pytest.approx(1e-4, rel=1e-3)


def test_residual_critical_line():
    assert T.residual_critical_cw("relu", 0.0) == 2.0
    assert T.residual_critical_cw("relu", 0.6, 1.0) == pytest.approx(2 * 0.64)
    assert T.residual_critical_cw("tanh", 0.6, 0.5) == pytest.approx(0.64 / 0.25)
    for xi in (0.3, 0.8):
        c_w = T.residual_critical_cw("relu", xi)
        k = T.kernel_recursion(1.0, 10, "relu", c_w, residual=(xi, 1.0))
        assert np.allclose(k[:-1], k[0])  # preserved along the line (the output layer is a plain readout)
        s = T.measure(1.0, depth=10, width=32, activation="relu", c_w=c_w, residual=(xi, 1.0), draws=600, seed=5)
        assert np.all(np.abs(s.K - k) <= 4 * s.K_se)
        g, se = s.log_growth()
        assert abs(g) <= 4 * se
    # off the line: the plain MLP's critical c_w explodes with a skip
    s = T.measure(1.0, depth=10, width=32, activation="relu", c_w=2.0, residual=(0.7, 1.0), draws=600, seed=6)
    g, se = s.log_growth()
    assert g == pytest.approx(math.log(0.49 + 1.0), abs=4 * se) and g > 4 * se


def test_batched_equals_loop_draw_for_draw():
    for act, res in (("relu", None), ("tanh", (0.5, 0.8)), ("gelu", None)):
        a = T.measure(X, depth=3, width=6, activation=act, c_w=1.7, c_b=0.2, residual=res, draws=40, seed=7,
                      ntk=True, chunk=16, dtype=torch.float64)
        b = T.measure(X, depth=3, width=6, activation=act, c_w=1.7, c_b=0.2, residual=res, draws=40, seed=7,
                      ntk=True, chunk=16, dtype=torch.float64, batched=False)
        assert np.allclose(a.per_draw_k, b.per_draw_k, rtol=1e-10)
        assert np.allclose(a.per_draw_m4, b.per_draw_m4, rtol=1e-10)
        assert np.allclose(a.ntk, b.ntk, rtol=1e-10)


def test_ntk_matches_autograd_on_an_explicit_network_and_its_mean_recursion():
    # one draw rebuilt as an explicit nn.Module; the NTK with lambda_b = 1, lambda_W / fan_in
    s = T.measure(X, depth=2, width=5, activation="tanh", c_w=1.3, c_b=0.3, draws=2, seed=8, ntk=True,
                  dtype=torch.float64)
    gen = torch.Generator().manual_seed(8)
    u, b1, ws, bs = T._sample(gen, 2, 2, 5, 1.3, 0.3, torch.float64)
    # an explicit first layer with W^1 x = sqrt(c_w q0) u: W^1 = sqrt(c_w q0) u x^T / |x|^2
    x = X.double()
    W1 = (math.sqrt(1.3 * T._q0(X)) * u[0][:, None] * x[None] / (x @ x)).requires_grad_()
    B1 = (math.sqrt(0.3) * b1[0]).requires_grad_()
    W2 = (ws[0][0] * math.sqrt(1.3 / 5)).requires_grad_()
    B2 = (bs[0][0] * math.sqrt(0.3)).requires_grad_()
    W3 = (ws[1][0] * math.sqrt(1.3 / 5)).requires_grad_()
    B3 = (bs[1][0] * math.sqrt(0.3)).requires_grad_()
    f = W3 @ torch.tanh(W2 @ torch.tanh(W1 @ x + B1) + B2) + B3
    g = torch.autograd.grad(f.sum(), [W1, B1, W2, B2, W3, B3])
    ntk = sum(float((gi ** 2).sum()) / (fan if fan else 1) for gi, fan in zip(g, [50, 0, 5, 0, 5, 0]))
    assert s.ntk[0] == pytest.approx(ntk, rel=1e-9)
    m = T.measure(X, depth=4, width=32, activation="relu", c_b=0.1, draws=1000, seed=9, ntk=True)
    assert m.ntk_mean == pytest.approx(T.ntk_recursion(X, 4, "relu", c_b=0.1)[-1], abs=4 * m.ntk_mean_se)
    assert m.ntk_rel_std > 0


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="depth must be"):
        T.measure(X, depth=0, width=8)
    with pytest.raises(ValueError, match="width must be"):
        T.measure(X, depth=2, width=0)
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'; choose one of"):
        T.measure(X, depth=2, width=8, activation="sigmoidal")
    with pytest.raises(ValueError, match="c_w is a variance"):
        T.measure(X, depth=2, width=8, c_w=-1.0)
    with pytest.raises(ValueError, match="measured only, no closed form"):
        T.kernel_recursion(X, 3, "gelu")
    with pytest.raises(ValueError, match="measured only, no closed form"):
        T.critical_point("swish")
    with pytest.raises(ValueError, match="pass c_w explicitly"):
        T.measure(X, depth=2, width=8, activation="gelu")
    with pytest.raises(ValueError, match="relu and linear only"):
        T.exact_kurtosis([1, 2], 8, "tanh")
    with pytest.raises(ValueError, match="c_b = 0 only"):
        T.exact_kurtosis([1, 2], 8, "relu", c_b=0.1)
    with pytest.raises(ValueError, match=r"\|xi\| must be <= 1"):
        T.residual_critical_cw("relu", 1.2)
    s = T.measure(X, depth=2, width=8, activation="swish", c_w=1.5, draws=10)  # measured only: works
    assert "K_theory" not in s.table()
