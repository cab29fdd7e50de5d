"""Networks at initialization, measured over many random draws, beside the closed forms of effective theory.

Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory*, Cambridge University Press 2022
(`arXiv 2106.10165 <https://arxiv.org/abs/2106.10165>`_), chapters 4-5 (the kernel recursion, criticality,
the four-point vertex) and 8-9 (the neural tangent kernel); residual networks as in its chapter 11.

The networks. An MLP of ``depth`` hidden layers of ``width`` neurons and one scalar output, weights
``N(0, c_w / fan_in)`` and biases ``N(0, c_b)``::

    z^1 = W^1 x + b^1,   z^{l+1} = W^{l+1} s(z^l) + b^{l+1}   (l = 1 .. depth; z^{depth+1} = f, the output)

and a residual MLP, where every hidden layer after the first adds its block to a ``xi``-scaled skip::

    z^{l+1} = xi * z^l + gamma * (W^{l+1} s(z^l) + b^{l+1})   (l = 1 .. depth - 1), f = W s(z^depth) + b.

``measure`` draws ``draws`` independent networks at once (weights stacked as ``[draws, out, in]``,
``torch.bmm``) and returns, layer by layer, the preactivation variance ``K^l`` (the mean of ``z^2`` over
neurons and draws) and the excess kurtosis ``E[z^4] / E[z^2]^2 - 3`` of one preactivation across draws,
each with a standard error, and on request the empirical NTK of the output. For a fixed input the first
layer's weights enter only through ``W^1 x``, whose entries are i.i.d. ``N(0, c_w |x|^2 / n_0)``: that is
what is drawn (exactly the same distribution, without a ``[draws, width, n_0]`` tensor).

The closed forms (single input, ``q0 = |x|^2 / n_0``), for the activations ``relu``, ``tanh`` and
``linear`` (others, such as ``gelu`` and ``swish``, are measured only):

* the kernel recursion ``K^1 = c_b + c_w q0``, ``K^{l+1} = c_b + c_w <s(z)^2>_{K^l}`` (ReLU: ``<s^2>_K = K/2``;
  tanh: Gauss-Hermite quadrature); the residual version ``K^{l+1} = xi^2 K^l + gamma^2 (c_b + c_w <s^2>_{K^l})``.
  For ReLU (and linear) this is exact at any width: ``z^l`` is symmetric, so ``E[relu(z)^2] = E[z^2] / 2``.
* criticality: ReLU ``(c_b, c_w) = (0, 2)``; tanh and linear ``(0, 1)``, where tanh's kernel decays like
  ``1 / (2 l)``; the residual critical line ``xi^2 + gamma^2 c_w / 2 = 1`` (ReLU), ``xi^2 + gamma^2 c_w = 1``
  (tanh at its fixed point ``K* = 0``, and linear).
* the finite-width correction. Exact for ReLU and linear with ``c_b = 0``: given layer ``l``, ``z^{l+1}_i`` is
  Gaussian with variance ``G = (c_w / n) sum_j s(z^l_j)^2``, so ``E[z^4] = 3 E[G^2]`` and
  ``E[G_l^2] = (c_w^2 / 4) (1 + 5/n) E[G_{l-1}^2]`` (ReLU; linear: ``c_w^2 (1 + 2/n)``), hence the excess
  kurtosis ``3 ((1 + 5/n)^(l-1) - 1) ~ 15 (l - 1) / n`` at layer ``l``: the depth-to-width ratio. To leading
  order in ``1/n`` for any activation: ``kurt^l = 3 V_l / K_l^2`` with ``V_1 = 0`` and
  ``V_{l+1} = c_w^2 Var_{K^l}[s(z)^2] / n + chi^2 V_l``, ``chi = c_w d<s^2>_K / dK`` (the book's four-point
  vertex recursion, single input).
* the NTK mean, with the book's learning-rate factors set to 1 (bias ``lambda_b = 1``, weights
  ``lambda_W / fan_in`` with ``lambda_W = 1``): ``Theta^1 = 1 + q0`` and
  ``Theta^{l+1} = 1 + <s^2>_{K^l} + c_w <s'^2>_{K^l} Theta^l``; exact at any width for ReLU.

>>> import workbench.dynamics.theory as T
>>> x = torch.randn(784)
>>> stats = T.measure(x, depth=10, width=64, activation="relu", draws=2000)       # c_w=None: critical
>>> stats.table()[["layer", "K", "K_se", "K_theory", "excess_kurtosis", "excess_kurtosis_exact"]]  # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "linear": lambda z: z,
    "gelu": torch.nn.functional.gelu,
    "swish": torch.nn.functional.silu,
}
CLOSED_FORM = ("relu", "tanh", "linear")  # the activations with closed forms here
_CRITICAL = {"relu": (0.0, 2.0), "tanh": (0.0, 1.0), "linear": (0.0, 1.0)}
_HOMOGENEOUS = {"relu": 5.0, "linear": 2.0}  # E[s^4] / E[s^2]^2 - 1 for z ~ N(0, K): the exact 1/n coefficient
_QUAD = np.polynomial.hermite_e.hermegauss(121)  # nodes and weights for E over N(0, 1)


# ----------------------------------------------------------------------------------------------------------- checks

def _check_activation(activation: str, closed_form: bool = False) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if closed_form and activation not in CLOSED_FORM:
        raise ValueError(f"activation {activation!r} is measured only, no closed form here: use measure(), or one of "
                         f"{', '.join(CLOSED_FORM)} for the book's formulas")
    return activation


def _check_net(depth: int, width: int | None = None, c_w: float | None = None, c_b: float = 0.0,
               residual: tuple[float, float] | None = None) -> None:
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be a whole number of hidden layers >= 1, got {depth!r}")
    if width is not None and (not isinstance(width, (int, np.integer)) or width < 1):
        raise ValueError(f"width must be a whole number of neurons >= 1, got {width!r}")
    if c_w is not None and not c_w >= 0:
        raise ValueError(f"c_w is a variance (weights are N(0, c_w / fan_in)): it must be >= 0, got {c_w!r}")
    if not c_b >= 0:
        raise ValueError(f"c_b is a variance (biases are N(0, c_b)): it must be >= 0, got {c_b!r}")
    if residual is not None:
        if len(residual) != 2:
            raise ValueError(f"residual must be (xi, gamma): the skip's and the block's scale, got {residual!r}")


def _q0(x) -> float:
    """The input's mean square ``|x|^2 / n_0`` (a number is taken as that already)."""
    if isinstance(x, (int, float, np.floating, np.integer)):
        if x < 0:
            raise ValueError(f"the input's mean square |x|^2 / n_0 must be >= 0, got {x}")
        return float(x)
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    if x.numel() == 0:
        raise ValueError("the input is empty")
    return float((x * x).mean())


# ------------------------------------------------------------------------------------------------------ closed forms

def gauss_mean(fn, k: float) -> float:
    """``<fn(z)>_K``: the mean of ``fn(z)`` over ``z ~ N(0, k)`` by 121-point Gauss-Hermite quadrature."""
    t, w = _QUAD
    z = math.sqrt(max(k, 0.0)) * t
    return float(np.sum(w * fn(z)) / math.sqrt(2 * math.pi))


_NP = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "linear": lambda z: z}
_NP_PRIME = {"relu": lambda z: (z > 0).astype(float), "tanh": lambda z: 1 - np.tanh(z) ** 2,
             "linear": lambda z: np.ones_like(z)}


def _moments(activation: str, k: float) -> tuple[float, float, float, float]:
    """``<s^2>_K``, ``Var_K[s^2]``, ``chi' = d<s^2>_K / dK`` and ``<s'^2>_K``, exact for relu and linear."""
    if activation == "relu":
        return k / 2, 5 * k * k / 4, 0.5, 0.5
    if activation == "linear":
        return k, 2 * k * k, 1.0, 1.0
    s = _NP[activation]
    s2 = gauss_mean(lambda z: s(z) ** 2, k)
    s4 = gauss_mean(lambda z: s(z) ** 4, k)
    # d/dK <g>_K = <g (z^2 - K)> / (2 K^2); at K = 0 the limit is g''(0) / 2 = 1 for g = tanh^2
    ds2 = gauss_mean(lambda z: s(z) ** 2 * (z * z - k), k) / (2 * k * k) if k > 1e-12 else 1.0
    dp2 = gauss_mean(lambda z: _NP_PRIME[activation](z) ** 2, k)
    return s2, s4 - s2 * s2, ds2, dp2


def critical_point(activation: str) -> tuple[float, float]:
    """The critical initialization ``(c_b, c_w)`` of an MLP: ReLU ``(0, 2)``, tanh ``(0, 1)``, linear ``(0, 1)``.

    At criticality the kernel neither explodes nor vanishes exponentially with depth (the book, ch. 5)."""
    _check_activation(activation, closed_form=True)
    return _CRITICAL[activation]


def residual_critical_cw(activation: str, xi: float, gamma: float = 1.0) -> float:
    """The ``c_w`` on the residual network's critical line for a skip scale ``xi`` and block scale ``gamma``
    (``c_b = 0``): ``xi^2 + gamma^2 c_w / 2 = 1`` for ReLU, ``xi^2 + gamma^2 c_w = 1`` for tanh and linear.

    ``xi = 0, gamma = 1`` is the plain MLP's critical point; a stronger skip lowers the critical ``c_w``."""
    _check_activation(activation, closed_form=True)
    if gamma == 0:
        raise ValueError("gamma = 0 switches the blocks off: the critical line needs gamma != 0")
    if not 0 <= abs(xi) <= 1:
        raise ValueError(f"|xi| must be <= 1 for a critical c_w >= 0 to exist (the skip alone grows the kernel by "
                         f"xi^2 per layer), got xi = {xi}")
    slope = 0.5 if activation == "relu" else 1.0  # d<s^2>_K / dK at the fixed point (K* = 0 for tanh)
    return (1 - xi * xi) / (gamma * gamma * slope)


def kernel_recursion(x, depth: int, activation: str = "relu", c_w: float | None = None, c_b: float = 0.0,
                     residual: tuple[float, float] | None = None) -> np.ndarray:
    """The infinite-width kernel ``K^l`` for ``l = 1 .. depth + 1`` (the last entry is the output).

    Args:
        x: the input (a tensor), or its mean square ``|x|^2 / n_0`` as a number.
        depth: hidden layers; activation: ``relu``, ``tanh`` or ``linear``.
        c_w, c_b: weight and bias variances (``c_w=None``: the critical value).
        residual: ``(xi, gamma)`` for the residual MLP, ``None`` for the plain one.
    Returns: array of ``depth + 1`` kernels. Exact at any width for ReLU and linear."""
    _check_activation(activation, closed_form=True)
    c_w = critical_point(activation)[1] if c_w is None else c_w
    _check_net(depth, None, c_w, c_b, residual)
    k = [c_b + c_w * _q0(x)]
    for l in range(1, depth + 1):
        block = c_b + c_w * _moments(activation, k[-1])[0]
        if residual is not None and l < depth:
            xi, gamma = residual
            k.append(xi * xi * k[-1] + gamma * gamma * block)
        else:
            k.append(block)
    return np.array(k)


def kurtosis_recursion(x, depth: int, width: int, activation: str = "relu", c_w: float | None = None,
                       c_b: float = 0.0) -> np.ndarray:
    """The leading-order (in ``1/width``) excess kurtosis of one preactivation, ``l = 1 .. depth + 1``.

    ``3 V_l / K_l^2`` with ``V_1 = 0``, ``V_{l+1} = c_w^2 Var_{K^l}[s^2] / n + chi^2 V_l``, ``chi = c_w d<s^2>/dK``
    (derived in the module docstring; the book's single-input four-point vertex). ReLU at criticality:
    ``15 (l - 1) / n``."""
    _check_activation(activation, closed_form=True)
    c_w = critical_point(activation)[1] if c_w is None else c_w
    _check_net(depth, width, c_w, c_b)
    ks = kernel_recursion(x, depth, activation, c_w, c_b)
    v, out = 0.0, [0.0]
    for l in range(depth):
        _, var_s2, ds2, _ = _moments(activation, ks[l])
        v = c_w * c_w * var_s2 / width + (c_w * ds2) ** 2 * v
        out.append(3 * v / ks[l + 1] ** 2 if ks[l + 1] > 0 else float("nan"))
    return np.array(out)


def exact_kurtosis(layers, width: int, activation: str = "relu", c_b: float = 0.0) -> np.ndarray:
    """The exact excess kurtosis of a preactivation in layer ``l`` (1 = first hidden layer) of a ReLU or linear MLP
    with ``c_b = 0`` and Gaussian weights, at any ``c_w``: ``3 ((1 + a / n)^(l - 1) - 1)``, ``a = 5`` (ReLU) or 2
    (linear). ``l = depth + 1`` is the output."""
    _check_activation(activation)
    if activation not in _HOMOGENEOUS:
        raise ValueError(f"the exact finite-width kurtosis is derived here for relu and linear only; for "
                         f"{activation!r} use kurtosis_recursion (leading order; tanh) or measure() (any activation)")
    if c_b != 0:
        raise ValueError("the exact kurtosis holds for c_b = 0 only; with biases use kurtosis_recursion "
                         "(leading order)")
    _check_net(1, width)
    layers = np.asarray(layers, dtype=float)
    if np.any(layers < 1):
        raise ValueError(f"layers are numbered from 1 (the first hidden layer), got {layers.min()}")
    return 3 * ((1 + _HOMOGENEOUS[activation] / width) ** (layers - 1) - 1)


def ntk_recursion(x, depth: int, activation: str = "relu", c_w: float | None = None, c_b: float = 0.0) -> np.ndarray:
    """The mean NTK ``E[Theta^l]`` of one preactivation, ``l = 1 .. depth + 1``, with the learning-rate factors set
    to 1 (biases ``lambda_b = 1``; weights ``lambda_W / fan_in``, ``lambda_W = 1``): ``Theta^1 = 1 + q0``,
    ``Theta^{l+1} = 1 + <s^2>_{K^l} + c_w <s'^2>_{K^l} Theta^l``. Exact at any width for ReLU."""
    _check_activation(activation, closed_form=True)
    c_w = critical_point(activation)[1] if c_w is None else c_w
    _check_net(depth, None, c_w, c_b)
    ks = kernel_recursion(x, depth, activation, c_w, c_b)
    th = [1.0 + _q0(x)]
    for l in range(depth):
        s2, _, _, dp2 = _moments(activation, ks[l])
        th.append(1.0 + s2 + c_w * dp2 * th[-1])
    return np.array(th)


# -------------------------------------------------------------------------------------------------------- measuring

@dataclass
class InitStats:
    """Per-layer statistics of ``draws`` networks at initialization (``layer`` 1 .. depth + 1, the last is f).

    ``per_draw_m2`` / ``per_draw_m4``: ``[layers, draws]`` means over the layer's neurons (or the one chosen
    neuron) of ``z^2`` and ``z^4`` per draw; ``ntk``: ``[draws]`` empirical NTK of the output (or ``None``)."""
    config: dict
    per_draw_m2: np.ndarray
    per_draw_m4: np.ndarray
    per_draw_k: np.ndarray  # [layers, draws]: the mean of z^2 over all the layer's neurons
    ntk: np.ndarray | None = None
    layers: np.ndarray = field(init=False)

    def __post_init__(self):
        self.layers = np.arange(1, self.per_draw_k.shape[0] + 1)

    @property
    def draws(self) -> int:
        return self.per_draw_k.shape[1]

    @property
    def K(self) -> np.ndarray:
        return self.per_draw_k.mean(1)

    @property
    def K_se(self) -> np.ndarray:
        return self.per_draw_k.std(1, ddof=1) / math.sqrt(self.draws)

    @property
    def kurtosis(self) -> np.ndarray:
        return self.per_draw_m4.mean(1) / self.per_draw_m2.mean(1) ** 2 - 3

    @property
    def kurtosis_se(self) -> np.ndarray:
        """Delta-method standard error over independent draws: ``g = m4 / m2^2``,
        ``grad g = (-2 m4 / m2^3, 1 / m2^2)``."""
        m2, m4 = self.per_draw_m2.mean(1), self.per_draw_m4.mean(1)
        out = []
        for i in range(len(m2)):
            cov = np.cov(np.stack([self.per_draw_m2[i], self.per_draw_m4[i]]))
            g = np.array([-2 * m4[i] / m2[i] ** 3, 1 / m2[i] ** 2])
            out.append(math.sqrt(max(g @ cov @ g, 0.0) / self.draws))
        return np.array(out)

    @property
    def ntk_mean(self) -> float:
        return float(self.ntk.mean()) if self.ntk is not None else float("nan")

    @property
    def ntk_mean_se(self) -> float:
        return float(self.ntk.std(ddof=1) / math.sqrt(len(self.ntk))) if self.ntk is not None else float("nan")

    @property
    def ntk_rel_std(self) -> float:
        """The NTK's spread across draws: its standard deviation over its mean."""
        return float(self.ntk.std(ddof=1) / self.ntk.mean()) if self.ntk is not None else float("nan")

    def log_growth(self, first: int = 1, last: int | None = None) -> tuple[float, float]:
        """``log(K^last / K^first) / (last - first)`` per layer (default: first hidden to last hidden layer) with
        its standard error (delta method, the two layers' per-draw means paired)."""
        last = len(self.layers) - 1 if last is None else last
        if last <= first:
            raise ValueError(f"need last > first, got first={first}, last={last} (a depth of at least 2)")
        a, b = self.per_draw_k[first - 1], self.per_draw_k[last - 1]
        ma, mb = a.mean(), b.mean()
        d = b / mb - a / ma  # the per-draw influence of log mb - log ma
        return float(math.log(mb / ma) / (last - first)), float(d.std(ddof=1) / math.sqrt(self.draws) / (last - first))

    def table(self) -> pd.DataFrame:
        """Per layer: ``K``, ``K_se``, ``excess_kurtosis``, ``excess_kurtosis_se`` and, where they exist, the closed
        forms ``K_theory``, ``excess_kurtosis_leading`` (leading order in 1/n) and ``excess_kurtosis_exact``."""
        c = self.config
        df = pd.DataFrame({"layer": self.layers, "K": self.K, "K_se": self.K_se, "excess_kurtosis": self.kurtosis,
                           "excess_kurtosis_se": self.kurtosis_se})
        if c["activation"] in CLOSED_FORM:
            df["K_theory"] = kernel_recursion(c["q0"], c["depth"], c["activation"], c["c_w"], c["c_b"], c["residual"])
            if c["residual"] is None:
                df["excess_kurtosis_leading"] = kurtosis_recursion(c["q0"], c["depth"], c["width"], c["activation"],
                                                                   c["c_w"], c["c_b"])
                if c["activation"] in _HOMOGENEOUS and c["c_b"] == 0:
                    df["excess_kurtosis_exact"] = exact_kurtosis(self.layers, c["width"], c["activation"])
        return df


def _sample(gen, draws: int, depth: int, width: int, c_w: float, c_b: float, dtype, device=None):
    """One chunk's parameters: the first layer's ``W^1 x`` direction ``u`` ``[D, n]`` and per later layer a weight
    ``[D, out, in]`` (standard normal, scaled in the forward pass) and a bias ``[D, out]``."""
    device = gen.device if device is None else device
    u = torch.randn(draws, width, generator=gen, dtype=dtype, device=device)
    b1 = torch.randn(draws, width, generator=gen, dtype=dtype, device=device)
    ws, bs = [], []
    for l in range(depth):
        out = width if l < depth - 1 else 1
        ws.append(torch.randn(draws, out, width, generator=gen, dtype=dtype, device=device))
        bs.append(torch.randn(draws, out, generator=gen, dtype=dtype, device=device))
    return u, b1, ws, bs


def _forward(u, b1, ws, bs, q0, c_w, c_b, act, residual, ntk: bool, batched: bool | None):
    """Preactivations per layer ``[D, n_l]`` and, with ``ntk``, the NTK ``[D]``. ``batched=False``: the same
    computation draw by draw in a Python loop (the benchmark's and the tests' reference)."""
    if batched is False:
        zs_all, th_all = [], []
        for d in range(u.shape[0]):
            zs, th = _forward(u[d:d + 1], b1[d:d + 1], [w[d:d + 1] for w in ws], [b[d:d + 1] for b in bs], q0,
                              c_w, c_b, act, residual, ntk, batched=None)
            zs_all.append(zs)
            th_all.append(th)
        zs = [torch.cat([z[l] for z in zs_all]) for l in range(len(zs_all[0]))]
        return zs, (torch.cat(th_all) if ntk else None)
    sw, sb = math.sqrt(c_w / u.shape[1]), math.sqrt(c_b)
    with torch.enable_grad() if ntk else torch.no_grad():
        if ntk:
            u = u.detach().requires_grad_()  # a leaf, so that the graph exists; the NTK needs d f / d pre only
        z = math.sqrt(c_w * q0) * u + sb * b1  # W^1 x + b^1: i.i.d. N(0, c_w q0 + c_b) per neuron
        zs, pres, norms = [z], [z], [torch.full((u.shape[0],), q0, dtype=u.dtype, device=u.device)]
        depth = len(ws)
        for l in range(depth):
            h = act(z)
            if batched is None:  # one draw: a matrix-vector product
                pre = (ws[l][0] @ h[0] * sw + sb * bs[l][0]).unsqueeze(0)
            else:
                pre = torch.bmm(ws[l], h.unsqueeze(2)).squeeze(2) * sw + sb * bs[l]
            if ntk:
                pres.append(pre)
                norms.append((h * h).mean(1).detach())  # |h|^2 / fan_in
            z = residual[0] * z + residual[1] * pre if residual is not None and l < depth - 1 else pre
            zs.append(z)
        if not ntk:
            return [t.detach() for t in zs], None
        # pre_i = sum_j W_ij h_j + bias_i: d f / d bias_i = g_i and d f / d W_ij = g_i h_j, so the layer adds
        # |g|^2 (lambda_b = 1) + |g|^2 |h|^2 / fan_in (lambda_W / fan_in, lambda_W = 1)
        gs = torch.autograd.grad(z.sum(), pres)
        th = sum((g * g).sum(1) * (1 + nrm) for g, nrm in zip(gs, norms))
        return [t.detach() for t in zs], th.detach()


def measure(x, depth: int, width: int, activation: str = "relu", c_w: float | None = None, c_b: float = 0.0,
            residual: tuple[float, float] | None = None, draws: int = 1000, seed: int = 0, ntk: bool = False,
            neuron: int | None = None, batched: bool = True, chunk: int | None = None,
            dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> InitStats:
    """Draw ``draws`` networks and measure their forward statistics at the input ``x`` (one input).

    Args:
        x: the input, a tensor of any shape (flattened; its mean square is what matters), or that mean square.
        depth, width: hidden layers and their neurons; activation: one of ``ACTIVATIONS``.
        c_w, c_b: weights ``N(0, c_w / fan_in)``, biases ``N(0, c_b)``; ``c_w=None``: critical (closed-form
            activations only).
        residual: ``(xi, gamma)``: ``z^{l+1} = xi z^l + gamma (W s(z^l) + b)`` between hidden layers.
        draws, seed: independent networks and the seed of their parameters.
        ntk: also the empirical NTK of the output, ``sum_biases (df/db)^2 + sum_weights (df/dW)^2 / fan_in``.
        neuron: the kurtosis of this neuron alone (the output has one); ``None`` pools every neuron of a layer
            (the same marginal by symmetry: a lower-variance estimate of the same number).
        batched: all draws as one computation (``torch.bmm``); ``False``: a Python loop over draws, the same
            parameters and numbers (the reference).
        chunk: draws per batch (memory); the parameters are drawn chunk by chunk, so change ``chunk`` and the
            draws change. Default: about 32 M weights per chunk.
        dtype, device: of the parameters (default CPU); the random numbers differ between devices.
    Returns: :class:`InitStats`."""
    _check_activation(activation)
    if c_w is None:
        if activation not in CLOSED_FORM:
            raise ValueError(f"activation {activation!r} is measured only, no closed form (no known critical c_w "
                             "here): pass c_w explicitly")
        c_w = critical_point(activation)[1]
    _check_net(depth, width, c_w, c_b, residual)
    if not isinstance(draws, (int, np.integer)) or draws < 2:
        raise ValueError(f"draws must be a whole number >= 2 (standard errors need two), got {draws!r}")
    if neuron is not None and not 0 <= neuron < width:
        raise ValueError(f"neuron must be in 0 .. {width - 1}, got {neuron}")
    q0 = _q0(x)
    chunk = chunk or max(1, min(draws, 32_000_000 // max(1, width * width * depth)))
    gen = torch.Generator(device=torch.device(device or "cpu")).manual_seed(seed)
    act = ACTIVATIONS[activation]
    k_parts, m2_parts, m4_parts, th_parts = [], [], [], []
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        u, b1, ws, bs = _sample(gen, d, depth, width, c_w, c_b, dtype)
        zs, th = _forward(u, b1, ws, bs, q0, c_w, c_b, act, residual, ntk, batched)
        z = [t.double() for t in zs]
        k_parts.append(torch.stack([(t * t).mean(1) for t in z]))
        pick = [t if (neuron is None or t.shape[1] == 1) else t[:, neuron:neuron + 1] for t in z]
        m2_parts.append(torch.stack([(t * t).mean(1) for t in pick]).cpu())
        m4_parts.append(torch.stack([(t ** 4).mean(1) for t in pick]).cpu())
        k_parts[-1] = k_parts[-1].cpu()
        if ntk:
            th_parts.append(th.double().cpu())
    config = dict(depth=int(depth), width=int(width), activation=activation, c_w=float(c_w), c_b=float(c_b),
                  residual=None if residual is None else tuple(float(v) for v in residual), draws=int(draws),
                  seed=int(seed), q0=q0, neuron=neuron)
    return InitStats(config, torch.cat(m2_parts, 1).numpy(), torch.cat(m4_parts, 1).numpy(),
                     torch.cat(k_parts, 1).numpy(), torch.cat(th_parts).numpy() if ntk else None)


__all__ = ["ACTIVATIONS", "CLOSED_FORM", "InitStats", "critical_point", "exact_kurtosis", "gauss_mean",
           "kernel_recursion", "kurtosis_recursion", "measure", "ntk_recursion", "residual_critical_cw"]
