r"""Poincaré ResNet: a residual network that lives on the Poincaré ball from the pixels to the logits.

van Spengler, Berkhout & Mettes, *Poincaré ResNet*, ICCV 2023, https://arxiv.org/abs/2303.14027.

Every activation is a point of the Poincaré ball of curvature ``-c`` (``c > 0``),
``D_c^n = {x in R^n : c ||x||^2 < 1}``, with conformal factor ``lambda_x = 2 / (1 - c ||x||^2)``.
geoopt holds the ball's parameters (``geoopt.ManifoldParameter`` on a ``geoopt.PoincareBall``) and
optimizes them (``RiemannianSGD``, ``RiemannianAdam``); the gyrovector operations are written out
here for ``c > 0`` because geoopt's, written for every sign of curvature around ``torch.norm``, are
tens of times slower on ``[batch, channels, h, w]`` activations on a CPU (the tests check that they
agree with geoopt's). This file adds the layers geoopt lacks. With ``sc = sqrt(c)``:

* Möbius addition (the hyperbolic "+", geoopt's ``mobius_add`` with ``k = -c``)::

      x (+) y = ((1 + 2c<x,y> + c||y||^2) x + (1 - c||x||^2) y) / (1 + 2c<x,y> + c^2 ||x||^2 ||y||^2)

* maps between the ball and the tangent space at the origin::

      exp_0(v) = tanh(sc ||v||) v / (sc ||v||),       log_0(y) = artanh(sc ||y||) y / (sc ||y||)

* Poincaré fully connected layer (Shimizu, Mukuta & Harada, HNN++, ICLR 2021), weights
  ``z_k in R^n`` and biases ``r_k`` for the outputs ``k = 1..m``::

      v_k(x) = (2 ||z_k|| / sc) asinh(lambda_x sc <x, z_k/||z_k||> cosh(2 sc r_k) - (lambda_x - 1) sinh(2 sc r_k))
      w_k    = sinh(sc v_k) / sc,        y = w / (1 + sqrt(1 + c ||w||^2))

  ``v_k`` is (up to the factor ``||z_k||``) the signed distance of ``x`` to the k-th Poincaré
  hyperplane, so the same ``v`` serves as the logits of the classifier (Poincaré multinomial
  logistic regression, :class:`PoincareMLR`).
* beta-concatenation (HNN++) of points ``x_i in D^{n_i}`` into one point of ``D^n``, ``n = sum n_i``::

      concat(x_1..x_N) = exp_0([ (beta_n / beta_{n_i}) log_0(x_i) ]_i),      beta_a = B(a/2, 1/2)

  which keeps the expected norm of the concatenated tangent vector.
* Poincaré 2-D convolution: every ``K x K`` patch of ``C_in``-dimensional pixels is beta-concatenated
  into one point of ``D^{K^2 C_in}`` and mapped by the Poincaré FC layer to ``D^{C_out}``. Because
  ``exp_0`` only rescales the concatenated tangent vector ``u``, the layer needs only a Euclidean
  convolution of ``log_0(x)`` with the unit-norm kernels and a convolution of the pixel norms:
  with ``n = ||u||`` of the patch, ``lambda sc <x, z_k/||z_k||> = sinh(2 sc n) <u, z_k/||z_k||> / n`` and
  ``lambda - 1 = cosh(2 sc n)`` (:func:`poincare_conv2d`; ``fused=False`` runs the literal unfold,
  beta-concatenate, FC path, and the tests check the two agree).
* Poincaré ReLU: ``exp_0(relu(log_0(x)))``.
* Poincaré residual connection: ``y = s(x) (+) F(x)``, Möbius addition of the block's branch to its
  shortcut (the identity, or a strided Poincaré 1x1 convolution and batch norm).
* Poincaré midpoint (the paper's cheap batch mean; Ungar's gyromidpoint, geoopt's ``weighted_midpoint``)::

      m = (1/2) (x) ( sum_i lambda_{x_i} x_i / sum_i (lambda_{x_i} - 1) ),   (1/2) (x) y = exp_0(log_0(y) / 2)

* Fréchet mean ``argmin_mu sum_i d(mu, x_i)^2`` by Karcher flow, ``mu <- exp_mu(mean_i log_mu(x_i))``
  for ``iters`` steps from the origin (:func:`frechet_mean`), the expensive mean the paper replaces.
* Poincaré batch normalization (after Lou et al. 2020): with the batch mean ``mu`` (midpoint or
  Fréchet), ``v_i = log_0((-mu) (+) x_i)`` (the parallel transport of ``log_mu(x_i)`` to the
  origin) and ``sigma^2 = mean_i ||v_i||^2``::

      y_i = b (+) exp_0(g * v_i / sqrt(sigma^2 + eps))

  with a per-channel gain ``g`` and a bias ``b`` on the ball (a ``geoopt.ManifoldParameter``);
  running mean (moved along the geodesic) and variance for evaluation.
* Identity-based initialization (the paper's fix for the collapse to the origin): the FC layer
  ``D^n -> D^n`` with ``Z = I/2`` and ``r = 0`` is *exactly* the identity. For a ``K x K``
  convolution we put ``I / (2 rho)``, ``rho = beta_{K^2 C_in} / beta_{C_in}``, on the kernel's centre
  tap and zeros elsewhere: the identity to first order in ``||x||`` (our adaptation; the 1x1
  convolutions are exact). Where a layer widens (``m > n``), the outputs without an input to copy get
  the standard initialization, so that no channel starts dead.
  ``init="standard"`` is HNN++'s ``z ~ N(0, (2 n m)^-1)``, under which a layer shrinks norms by about
  ``sqrt(2 / n)``, so a deep stack collapses to the origin.

As ``c -> 0`` every layer becomes its Euclidean counterpart: ``(+)`` becomes ``+``, the FC layer
``y = 2 Z^T x - 2 r ||z||``, the convolution a Euclidean one with kernel ``2 rho Z``, the midpoint
and the Fréchet mean the mean.

The network (:class:`PoincareResNet`, depth ``6n + 2`` as the CIFAR ResNets): pixels are mapped
to the ball by ``exp_0`` per position, a Poincaré 3x3 stem convolution, batch norm and ReLU, three
stages of ``n`` basic blocks (``W``, ``2W``, ``4W`` channels, stride 2 at stages 2 and 3), the
Poincaré midpoint over the feature map and a Poincaré MLR. Its parameters are Euclidean except the
batch-norm biases (points on the ball); train it with :func:`riemannian_optimizer`
(``wb.fit(model, ..., optimizer=riemannian_optimizer())``), which runs geoopt's ``RiemannianSGD``.
With a Euclidean optimizer the biases are projected back into the ball in every forward pass.

Hook points, in forward order: ``stem``, ``layerS`` (a stage), ``layerS.B`` (a block),
``layerS.B.hook_relu1``, ``layerS.B.hook_branch`` (the branch before the Möbius addition),
``layerS.B.hook_out``, ``hook_pool`` (the pooled point). Every activation is a point on the ball,
``[batch, channels, h, w]`` with the ball's coordinates along ``channels``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .count import eval_forward
from .hooks import HookPoint

__all__ = ["INITS", "BATCHNORMS", "check_curvature", "mobius_add", "expmap0", "logmap0", "beta_ratio", "beta_concat",
           "poincare_fc", "poincare_mlr", "poincare_conv2d", "poincare_relu", "poincare_midpoint", "frechet_mean",
           "PoincareLinear", "PoincareMLR", "PoincareConv2d", "PoincareBatchNorm2d", "PoincareBasicBlock",
           "PoincareResNet", "riemannian_optimizer", "norms_through_depth", "ball_norms", "poincare_dist",
           "compare_batch_means", "time_steps"]

INITS = ("identity", "standard")
BATCHNORMS = ("midpoint", "frechet")
_MAX_T = 15.0   # sc * (tangent norm) is clamped here: tanh(15) is 1 in float32, cosh stays finite


# ---------------------------------------------------------------------------------------------------------------
# the ball's operations, with the curvature -c given by a positive float c
# ---------------------------------------------------------------------------------------------------------------
def check_curvature(c) -> float:
    """``c`` as a float, or a ValueError: the ball of curvature ``-c`` needs ``c > 0``."""
    try:
        value = float(c)
    except (TypeError, ValueError):
        raise TypeError(f"curvature must be a positive number (the ball has curvature -c), got {c!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"curvature must be a positive number c > 0 (the ball of curvature -c has radius "
                         f"1/sqrt(c)); got {c!r}. Use a small c (say 1e-3) to approach the Euclidean network")
    return value


def _sqnorm(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.pow(2).sum(dim, keepdim=True)  # (a reduction over a strided dim is far faster than torch.norm's)


def _norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    return _sqnorm(x, dim).clamp_min(1e-30).sqrt()


def _max_norm(dtype: torch.dtype) -> float:
    return 1 - (4e-3 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-5)  # geoopt's margins


# The ball's operations are written out below for c > 0 (they agree with geoopt's, which the tests check):
# geoopt's versions handle every sign of curvature and call torch.norm, which is tens of times slower than
# the sum of squares on [batch, channels, h, w] activations reduced over channels on a CPU.
def mobius_add(x: torch.Tensor, y: torch.Tensor, c: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Möbius addition ``x (+) y`` on the ball of curvature ``-c`` (as geoopt's ``mobius_add``)."""
    x2, y2, xy = _sqnorm(x, dim), _sqnorm(y, dim), (x * y).sum(dim, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    return num / (1 + 2 * c * xy + c * c * x2 * y2).clamp_min(1e-15)


def expmap0(v: torch.Tensor, c: float = 1.0, dim: int = -1) -> torch.Tensor:
    """``exp_0(v) = tanh(sqrt(c)||v||) v / (sqrt(c)||v||)``: from the tangent space at the origin to the ball."""
    sc = math.sqrt(c)
    n = _norm(v, dim)
    return v * (torch.tanh((sc * n).clamp_max(_MAX_T)) / (sc * n))


def logmap0(x: torch.Tensor, c: float = 1.0, dim: int = -1) -> torch.Tensor:
    """``log_0(x) = artanh(sqrt(c)||x||) x / (sqrt(c)||x||)``, the inverse of :func:`expmap0` (as geoopt's)."""
    sc = math.sqrt(c)
    n = _norm(x, dim)
    return x * (torch.atanh((sc * n).clamp_max(1 - 1e-7)) / (sc * n))


def _project(x: torch.Tensor, c: float, dim: int = -1) -> torch.Tensor:
    """Points pulled inside the ball of radius ``(1 - eps) / sqrt(c)`` (as geoopt's ``project``)."""
    limit = _max_norm(x.dtype) / math.sqrt(c)
    n = _norm(x, dim)
    return x * (limit / n).clamp_max(1.0)


def _half(x: torch.Tensor, c: float, dim: int) -> torch.Tensor:
    """Möbius scalar multiplication by 1/2: ``tanh(artanh(sqrt(c)||x||) / 2) x / (sqrt(c)||x||)``."""
    sc = math.sqrt(c)
    n = _norm(x, dim)
    return x * (torch.tanh(torch.atanh((sc * n).clamp_max(1 - 1e-7)) / 2) / (sc * n))


def _logmap(mu: torch.Tensor, x: torch.Tensor, c: float, dim: int) -> torch.Tensor:
    """``log_mu(x) = (2 / (sqrt(c) lambda_mu)) artanh(sqrt(c)||a||) a / ||a||`` with ``a = (-mu) (+) x``."""
    sc = math.sqrt(c)
    a = mobius_add(-mu, x, c, dim)
    n = _norm(a, dim)
    lam = 2 / (1 - c * _sqnorm(mu, dim)).clamp_min(1e-15)
    return a * (2 / (sc * lam) * torch.atanh((sc * n).clamp_max(1 - 1e-7)) / n)


def _expmap(mu: torch.Tensor, u: torch.Tensor, c: float, dim: int) -> torch.Tensor:
    """``exp_mu(u) = mu (+) tanh(sqrt(c) lambda_mu ||u|| / 2) u / (sqrt(c)||u||)``."""
    sc = math.sqrt(c)
    n = _norm(u, dim)
    lam = 2 / (1 - c * _sqnorm(mu, dim)).clamp_min(1e-15)
    return mobius_add(mu, u * (torch.tanh((sc * lam * n / 2).clamp_max(_MAX_T)) / (sc * n)), c, dim)


def ball_norms(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The Euclidean norm of each point along ``dim`` (distance to the origin: ``2 artanh(sqrt(c) norm) / sqrt(c)``)."""
    return x.norm(dim=dim)


def beta_ratio(n: int, n_i: int) -> float:
    """``B(n/2, 1/2) / B(n_i/2, 1/2)``: the scale beta-concatenation gives a part of ``n_i`` of ``n`` coordinates."""
    if n < 1 or n_i < 1:
        raise ValueError(f"beta_ratio needs positive dimensions, got n={n}, n_i={n_i}")

    def log_beta(a: float) -> float:
        return math.lgamma(a / 2) + math.lgamma(0.5) - math.lgamma(a / 2 + 0.5)

    return math.exp(log_beta(n) - log_beta(n_i))


def beta_concat(xs: Sequence[torch.Tensor], c: float = 1.0, dim: int = -1) -> torch.Tensor:
    """beta-concatenation (HNN++) of ball points along ``dim``: ``exp_0(cat((beta_n / beta_{n_i}) log_0(x_i)))``."""
    if not xs:
        raise ValueError("beta_concat needs at least one tensor")
    n = sum(x.shape[dim] for x in xs)
    parts = [logmap0(x, c, dim) * beta_ratio(n, x.shape[dim]) for x in xs]
    return expmap0(torch.cat(parts, dim=dim), c, dim)


# ---------------------------------------------------------------------------------------------------------------
# the Poincaré fully connected layer, its MLR, the convolution
# ---------------------------------------------------------------------------------------------------------------
def _fc_v(p: torch.Tensor, q: torch.Tensor, z_norm: torch.Tensor, r: torch.Tensor, sc: float) -> torch.Tensor:
    """``v_k`` from ``p = lambda sc <x, z_k/||z_k||>`` and ``q = lambda - 1`` (both broadcast over outputs)."""
    two_r = 2 * sc * r
    return (2 / sc) * z_norm * torch.asinh(p * torch.cosh(two_r) - q * torch.sinh(two_r))


def _fc_point(v: torch.Tensor, sc: float, dim: int) -> torch.Tensor:
    """``y = w / (1 + sqrt(1 + c||w||^2))`` with ``w = sinh(sc v) / sc`` (``sc v`` clamped so nothing overflows)."""
    s = torch.sinh((sc * v).clamp(-_MAX_T, _MAX_T))
    return s / (sc * (1 + torch.sqrt(1 + s.pow(2).sum(dim, keepdim=True))))


def _lambda(x: torch.Tensor, c: float, dim: int) -> torch.Tensor:
    return 2 / (1 - c * x.pow(2).sum(dim, keepdim=True)).clamp_min(1e-15)


def _fc_parts(x: torch.Tensor, z: torch.Tensor, c: float):
    """``(p, q, ||z_k||)`` of the FC formula for points ``x [..., n]`` and weights ``z [n, m]``."""
    lam = _lambda(x, c, -1)  # [..., 1]
    z_norm = z.norm(dim=0).clamp_min(1e-15)  # [m]
    return lam * math.sqrt(c) * (x @ z) / z_norm, lam - 1, z_norm


def poincare_mlr(x: torch.Tensor, z: torch.Tensor, r: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """The Poincaré FC layer's ``v_k(x)`` for points ``x [..., n]``: the logits of Poincaré MLR (HNN++)."""
    p, q, z_norm = _fc_parts(x, z, c)
    return _fc_v(p, q, z_norm, r, math.sqrt(c))


def poincare_fc(x: torch.Tensor, z: torch.Tensor, r: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """Poincaré fully connected layer (HNN++) on points ``x [..., n]``: weights ``z [n, m]``, biases ``r [m]``."""
    return _fc_point(poincare_mlr(x, z, r, c), math.sqrt(c), -1)


def _conv_weight(z: torch.Tensor, cin: int, k: int) -> torch.Tensor:
    """``z [k*k*cin, cout]`` (rows in F.unfold's order: channel, then kernel row, then column) as a conv kernel."""
    return z.t().reshape(z.shape[1], cin, k, k)


def poincare_conv2d(x: torch.Tensor, z: torch.Tensor, r: torch.Tensor, c: float = 1.0, kernel_size: int = 3,
                    stride: int = 1, padding: int = 0, fused: bool = True) -> torch.Tensor:
    """Poincaré 2-D convolution of ball points ``x [batch, cin, h, w]`` (coordinates along dim 1).

    Every ``kernel_size`` x ``kernel_size`` patch is beta-concatenated into one point and mapped by
    the Poincaré FC layer with ``z [k*k*cin, cout]`` and ``r [cout]``. ``fused=True`` computes the
    same with two Euclidean convolutions (see the module docstring); ``fused=False`` unfolds the
    patches and runs :func:`beta_concat` and :func:`poincare_fc` literally (slower, for checks).
    Zero padding pads with the origin.
    """
    b, cin, h, w = x.shape
    k = kernel_size
    rho = beta_ratio(k * k * cin, cin)
    sc = math.sqrt(c)
    u = logmap0(x, c, dim=1)  # [b, cin, h, w], tangent vectors at the origin
    if not fused:
        patches = F.unfold(u * rho, k, padding=padding, stride=stride)  # [b, k*k*cin, L]
        pts = expmap0(patches.transpose(1, 2), c, dim=-1)  # [b, L, k*k*cin]
        y = poincare_fc(pts, z, r, c)  # [b, L, cout]
        ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
        return y.transpose(1, 2).reshape(b, z.shape[1], ho, wo)
    z_norm = z.norm(dim=0).clamp_min(1e-15)  # [cout]
    uz = F.conv2d(u, _conv_weight(z / z_norm, cin, k), stride=stride, padding=padding) * rho  # <u~, z_k/||z_k||>
    sq = F.conv2d(u.pow(2).sum(1, keepdim=True), u.new_ones(1, 1, k, k), stride=stride, padding=padding)
    n = (sq * rho * rho).clamp_min(1e-30).sqrt()  # [b, 1, ho, wo]: the patch's tangent norm
    t = (sc * n).clamp_max(_MAX_T)
    p = torch.sinh(2 * t) / n * uz  # lambda sc <x~, z_k/||z_k||>
    v = _fc_v(p, torch.cosh(2 * t), z_norm[:, None, None], r[:, None, None], sc)  # [b, cout, ho, wo]
    return _fc_point(v, sc, dim=1)


def poincare_relu(x: torch.Tensor, c: float = 1.0, dim: int = 1) -> torch.Tensor:
    """``exp_0(relu(log_0(x)))``."""
    return expmap0(F.relu(logmap0(x, c, dim)), c, dim)


# ---------------------------------------------------------------------------------------------------------------
# means on the ball
# ---------------------------------------------------------------------------------------------------------------
def _reduce_dims(x: torch.Tensor, dim: int, reducedim) -> tuple[int, list[int]]:
    dim = dim % x.dim()
    reduce = sorted({d % x.dim() for d in ([reducedim] if isinstance(reducedim, int) else reducedim)})
    if dim in reduce or not reduce:
        raise ValueError(f"reducedim {reducedim} must name batch dimensions other than the coordinates' dim {dim}")
    return dim, reduce


def poincare_midpoint(x: torch.Tensor, c: float = 1.0, dim: int = -1, reducedim: Sequence[int] | int = 0,
                      keepdim: bool = False) -> torch.Tensor:
    """The Poincaré midpoint of the points ``x`` (coordinates along ``dim``) over the dims ``reducedim``.

    ``m = (1/2) (x) (sum_i lambda_i x_i / sum_i (lambda_i - 1))``, as geoopt's ``weighted_midpoint``
    with equal weights; a closed form, one pass over the points.
    """
    dim, reduce = _reduce_dims(x, dim, reducedim)
    lam = 2 / (1 - c * _sqnorm(x, dim)).clamp_min(1e-15)
    two_mean = (lam * x).sum(reduce, keepdim=True) / (lam - 1).sum(reduce, keepdim=True).clamp_min(1e-15)
    m = _half(two_mean, c, dim)
    return m if keepdim else m.squeeze(reduce) if len(reduce) > 1 else m.squeeze(reduce[0])


def frechet_mean(x: torch.Tensor, c: float = 1.0, dim: int = -1, reducedim: Sequence[int] | int = 0,
                 iters: int = 5, keepdim: bool = False) -> torch.Tensor:
    """Fréchet mean ``argmin_mu mean_i d(mu, x_i)^2`` of the points ``x`` (coordinates along ``dim``) over the dims
    ``reducedim``.

    ``iters`` steps of Riemannian gradient descent (Karcher flow) from the origin,
    ``mu <- exp_mu(eta mean_i log_mu(x_i))``. The Hessian of ``d(., x_i)^2 / 2`` has eigenvalues between
    1 and ``sqrt(c) d_i coth(sqrt(c) d_i)`` on a ball of curvature ``-c``; the step
    ``eta = 1 / mean_i(sqrt(c) d_i coth(sqrt(c) d_i))`` is one over that bound at ``mu``, which keeps the
    iteration from overshooting where the plain unit step of Karcher flow oscillates or diverges
    (spread-out points). Gradients flow through every step: the cost the paper's midpoint batch norm avoids.
    """
    dim, reduce = _reduce_dims(x, dim, reducedim)
    if int(iters) < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    sc = math.sqrt(c)
    mu = x.new_zeros([1 if d in reduce else s for d, s in enumerate(x.shape)])
    for _ in range(int(iters)):
        a = mobius_add(-mu, x, c, dim)  # x seen from mu
        n = _norm(a, dim)
        half_d = torch.atanh((sc * n).clamp_max(1 - 1e-7))  # sqrt(c) d(mu, x) / 2
        lam = 2 / (1 - c * _sqnorm(mu, dim)).clamp_min(1e-15)
        grad = (a * (2 / (sc * lam) * half_d / n)).mean(reduce, keepdim=True)  # mean_i log_mu(x_i)
        sd = (2 * half_d).clamp_min(1e-6)
        eta = 1 / (sd / torch.tanh(sd)).mean(reduce, keepdim=True)  # 1 / mean_i(sqrt(c) d_i coth(sqrt(c) d_i))
        mu = _project(_expmap(mu, eta * grad, c, dim), c, dim)
    return mu if keepdim else mu.squeeze(reduce) if len(reduce) > 1 else mu.squeeze(reduce[0])


# ---------------------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------------------
def _check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    return init


def _standard_(z: torch.Tensor) -> None:
    n, m = z.shape
    nn.init.normal_(z, 0.0, (2 * n * m) ** -0.5)


class PoincareLinear(nn.Module):
    """Poincaré fully connected layer ``D^n -> D^m`` (HNN++); ``init="identity"`` is exactly the identity if n == m."""

    def __init__(self, in_features: int, out_features: int, c: float = 1.0, init: str = "identity"):
        super().__init__()
        self.c, self.init = check_curvature(c), _check_init(init)
        self.in_features, self.out_features = in_features, out_features
        self.z = nn.Parameter(torch.empty(in_features, out_features))
        self.r = nn.Parameter(torch.zeros(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.r.zero_()
            _standard_(self.z)
            if self.init == "identity":  # I/2 where an input coordinate is there to copy
                n = min(self.in_features, self.out_features)
                self.z[:, :n] = 0.5 * torch.eye(self.in_features, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., in]
        return _project(poincare_fc(x, self.z, self.r, self.c), self.c)  # [..., out]

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, c={self.c}, init={self.init!r}"


class PoincareMLR(PoincareLinear):
    """Poincaré multinomial logistic regression: the logits ``v_k(x)`` of points ``x [..., n]``."""

    def __init__(self, in_features: int, num_classes: int, c: float = 1.0):
        super().__init__(in_features, num_classes, c=c, init="standard")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., in] -> [..., classes]
        return poincare_mlr(x, self.z, self.r, self.c)


class PoincareConv2d(nn.Module):
    """Poincaré 2-D convolution: beta-concatenated patches through the Poincaré FC layer (:func:`poincare_conv2d`)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None,
                 c: float = 1.0, init: str = "identity"):
        super().__init__()
        self.c, self.init = check_curvature(c), _check_init(init)
        self.cin, self.cout, self.kernel_size, self.stride = cin, cout, kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.z = nn.Parameter(torch.empty(kernel_size * kernel_size * cin, cout))  # rows: channel, kernel row, column
        self.r = nn.Parameter(torch.zeros(cout))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.r.zero_()
            _standard_(self.z)
            if self.init == "identity":  # I / (2 rho) on the centre tap where an input channel is there to copy
                k, n = self.kernel_size, min(self.cin, self.cout)
                rho = beta_ratio(k * k * self.cin, self.cin)
                centre = (k // 2) * k + k // 2
                self.z[:, :n] = 0.0
                self.z[centre::k * k, :n] = torch.eye(self.cin, n) / (2 * rho)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, cin, h, w] -> [b, cout, h/stride, w/stride]
        y = poincare_conv2d(x, self.z, self.r, self.c, self.kernel_size, self.stride, self.padding)
        return _project(y, self.c, dim=1)

    def extra_repr(self) -> str:
        return (f"{self.cin}, {self.cout}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, c={self.c}, init={self.init!r}")


class PoincareBatchNorm2d(nn.Module):
    """Poincaré batch normalization over ``[batch, channels, h, w]`` points (coordinates along channels).

    ``mean="midpoint"``: the batch's Poincaré midpoint (the paper's); ``"frechet"``: its Fréchet mean by
    ``iters`` steps of Karcher flow. See the module docstring for the formula.
    """

    def __init__(self, channels: int, c: float = 1.0, mean: str = "midpoint", iters: int = 5, momentum: float = 0.1,
                 eps: float = 1e-5):
        super().__init__()
        if mean not in BATCHNORMS:
            raise ValueError(f"unknown batch norm {mean!r}; choose one of {', '.join(BATCHNORMS)}")
        self.c, self.mean, self.iters, self.momentum, self.eps = check_curvature(c), mean, iters, momentum, eps
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels))  # the gain g, per channel, in the tangent space
        import geoopt  # imported here: it costs half a second, and only Poincaré models need it

        self.bias = geoopt.ManifoldParameter(torch.zeros(channels), manifold=geoopt.PoincareBall(c=self.c))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(()))

    def batch_mean(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, C, h, w] -> [1, C, 1, 1]
        if self.mean == "midpoint":
            return poincare_midpoint(x, self.c, dim=1, reducedim=(0, 2, 3), keepdim=True)
        return frechet_mean(x, self.c, dim=1, reducedim=(0, 2, 3), iters=self.iters, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, C, h, w], coordinates along C
        if self.training:
            mu = _project(self.batch_mean(x), self.c, dim=1)  # [1, C, 1, 1]
        else:
            mu = self.running_mean.view(1, -1, 1, 1)
        v = logmap0(mobius_add(-mu, x, self.c, dim=1), self.c, dim=1)  # log_mu(x) moved to the origin
        if self.training:
            var = v.pow(2).sum(1).mean()
            with torch.no_grad():  # running mean: a step of `momentum` along the geodesic towards the batch mean
                old = self.running_mean
                step = _logmap(old, mu.detach().flatten(), self.c, -1) * self.momentum
                self.running_mean.copy_(_project(_expmap(old, step, self.c, -1), self.c))
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var.detach())
        else:
            var = self.running_var
        y = expmap0(v * (self.weight / torch.sqrt(var + self.eps)).view(1, -1, 1, 1), self.c, dim=1)
        bias = _project(self.bias, self.c).view(1, -1, 1, 1)
        return _project(mobius_add(bias, y, self.c, dim=1), self.c, dim=1)

    def extra_repr(self) -> str:
        iters = f", iters={self.iters}" if self.mean == "frechet" else ""
        return f"{self.channels}, c={self.c}, mean={self.mean!r}{iters}"


class PoincareReLU(nn.Module):
    def __init__(self, c: float = 1.0):
        super().__init__()
        self.c = check_curvature(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return poincare_relu(x, self.c, dim=1)


class PoincareBasicBlock(nn.Module):
    """``relu(s(x) (+) bn2(conv2(relu(bn1(conv1(x))))))`` on the ball."""

    def __init__(self, cin: int, cout: int, stride: int = 1, c: float = 1.0, init: str = "identity",
                 bn: str = "midpoint", frechet_iters: int = 5):
        super().__init__()
        self.c = c
        self.conv1 = PoincareConv2d(cin, cout, 3, stride, c=c, init=init)
        self.bn1 = PoincareBatchNorm2d(cout, c, bn, frechet_iters)
        self.relu = PoincareReLU(c)
        self.conv2 = PoincareConv2d(cout, cout, 3, 1, c=c, init=init)
        self.bn2 = PoincareBatchNorm2d(cout, c, bn, frechet_iters)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(PoincareConv2d(cin, cout, 1, stride, padding=0, c=c, init=init),
                                          PoincareBatchNorm2d(cout, c, bn, frechet_iters))
        self.hook_relu1 = HookPoint()
        self.hook_branch = HookPoint()
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, cin, h, w] on the ball
        out = self.hook_relu1(self.relu(self.bn1(self.conv1(x))))  # [b, cout, h/stride, w/stride]
        out = self.hook_branch(self.bn2(self.conv2(out)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.hook_out(self.relu(_project(mobius_add(skip, out, self.c, dim=1), self.c, dim=1)))


class PoincareResNet(WorkbenchModel):
    """CIFAR-style ResNet on the Poincaré ball; see the module docstring."""

    min_input_size = 4  # the feature map halves twice; WorkbenchModel.check_input refuses smaller images

    def __init__(self, depth: int = 8, num_classes: int = 10, in_chans: int = 3, width: int = 8, curvature: float = 0.1,
                 init: str = "identity", bn: str = "midpoint", frechet_iters: int = 5):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        if width < 1 or num_classes < 1 or in_chans < 1:
            raise ValueError(f"width, num_classes and in_chans must be positive, got {width}, {num_classes}, "
                             f"{in_chans}")
        c = check_curvature(curvature)
        _check_init(init)
        if bn not in BATCHNORMS:
            raise ValueError(f"unknown bn {bn!r}; choose one of {', '.join(BATCHNORMS)}")
        if int(frechet_iters) < 1:
            raise ValueError(f"frechet_iters must be at least 1, got {frechet_iters}")
        n = (depth - 2) // 6
        self.depth, self.blocks_per_stage, self.width, self.c = depth, n, width, c
        self.curvature, self.init, self.bn = c, init, bn
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = nn.Sequential(PoincareConv2d(in_chans, width, 3, 1, c=c, init=init),
                                  PoincareBatchNorm2d(width, c, bn, frechet_iters), PoincareReLU(c))
        stages, cin = [], width
        for s, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(PoincareBasicBlock(cin, cout, stride, c, init, bn, frechet_iters))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.hook_pool = HookPoint()
        self.fc = PoincareMLR(cin, num_classes, c)
        self.hook_layers = ("stem",) + tuple(
            name for s in (1, 2, 3) for name in [f"layer{s}"] + [f"layer{s}.{b}" for b in range(n)]
        )

    def to_ball(self, x: torch.Tensor) -> torch.Tensor:
        """Images to points: ``exp_0`` of each pixel's channel vector."""
        return expmap0(x, self.c, dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(self.to_ball(x))  # [batch, W, h, w] on the ball
        x = self.layer1(x)              # [batch, W, h, w]
        x = self.layer2(x)              # [batch, 2W, h/2, w/2]
        x = self.layer3(x)              # [batch, 4W, h/4, w/4]
        return self.hook_pool(_project(poincare_midpoint(x, self.c, dim=1, reducedim=(2, 3)), self.c))  # [batch, 4W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


# ---------------------------------------------------------------------------------------------------------------
# registered entry points
# ---------------------------------------------------------------------------------------------------------------
def _make(depth: int):
    def entry(num_classes: int = 10, in_chans: int = 3, width: int = 8, curvature: float = 0.1,
              init: str = "identity", bn: str = "midpoint", frechet_iters: int = 5) -> PoincareResNet:
        return PoincareResNet(depth, num_classes, in_chans, width, curvature, init, bn, frechet_iters)
    entry.__name__ = f"poincare_resnet{depth}"
    entry.__doc__ = (f"Poincaré ResNet of depth {depth} ({(depth - 2) // 6} blocks per stage), base width ``width``, "
                     "on the ball of curvature ``-curvature``.")
    return register_model(entry)


for _depth in (8, 14, 20, 32):
    _make(_depth)


@register_model
def poincare_resnet(depth: int = 8, num_classes: int = 10, in_chans: int = 3, width: int = 8, curvature: float = 0.1,
                    init: str = "identity", bn: str = "midpoint", frechet_iters: int = 5) -> PoincareResNet:
    """Poincaré ResNet of any depth 6n+2: ``init`` in :data:`INITS`, ``bn`` in :data:`BATCHNORMS`."""
    return PoincareResNet(depth, num_classes, in_chans, width, curvature, init, bn, frechet_iters)


# ---------------------------------------------------------------------------------------------------------------
# training and analysis helpers
# ---------------------------------------------------------------------------------------------------------------
def riemannian_optimizer(kind: str = "sgd", momentum: float = 0.9, nesterov: bool = False,
                         betas: tuple[float, float] = (0.9, 0.999), stabilize: int | None = None
                         ) -> Callable[[list], torch.optim.Optimizer]:
    """An ``optimizer=`` for :func:`workbench.fit` / ``train_model``: geoopt's ``RiemannianSGD`` or ``RiemannianAdam``.

    Parameters on a manifold (``geoopt.ManifoldParameter``, the batch-norm biases here) take
    Riemannian steps that stay on the ball; the others take the usual Euclidean steps. ``fit`` sets the
    learning rate of every group at every step and the weight decay per group, as for its own optimizers.

    >>> wb.fit(model, train, optimizer=riemannian_optimizer("sgd", momentum=0.9), lr=0.05)  # doctest: +SKIP
    """
    kinds = ("sgd", "adam")
    if kind not in kinds:
        raise ValueError(f"unknown Riemannian optimizer {kind!r}; choose one of {', '.join(kinds)}")

    def make(groups):
        import geoopt

        if kind == "sgd":
            return geoopt.optim.RiemannianSGD(groups, lr=0.1, momentum=momentum, nesterov=nesterov and momentum > 0,
                                              stabilize=stabilize)
        return geoopt.optim.RiemannianAdam(groups, lr=1e-3, betas=betas, stabilize=stabilize)

    make.__qualname__ = f"riemannian_optimizer({kind!r})"
    make.cache_key = (f"riemannian_optimizer(kind={kind!r}, momentum={momentum!r}, nesterov={nesterov!r}, "
                      f"betas={tuple(betas)!r}, stabilize={stabilize!r})")
    return make


@torch.no_grad()
def norms_through_depth(x: torch.Tensor, depth: int = 20, width: int | None = None, init: str = "identity",
                        c: float = 1.0, kernel_size: int = 3, seed: int = 0) -> list[float]:
    """Mean norm of the points after each of ``depth`` Poincaré convolutions (no batch norm, no skip).

    ``x [batch, cin, h, w]`` are images, mapped to the ball by ``exp_0``; the first layer goes to
    ``width`` channels (default ``cin``), the others keep it. Returns ``depth + 1`` numbers, the input's first.
    The paper's first roadblock: under ``init="standard"`` the norms fall towards 0 (the origin), under
    ``init="identity"`` they stay.
    """
    c = check_curvature(c)
    _check_init(init)
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        cin = x.shape[1]
        width = cin if width is None else width
        h = expmap0(x, c, dim=1)
        norms = [float(ball_norms(h).mean())]
        for i in range(depth):
            layer = PoincareConv2d(cin if i == 0 else width, width, kernel_size, 1, c=c, init=init).to(x)
            h = layer(h)
            norms.append(float(ball_norms(h).mean()))
    finally:
        torch.set_rng_state(gen_state)
    return norms


def poincare_dist(x: torch.Tensor, y: torch.Tensor, c: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Geodesic distance ``d(x, y) = (2 / sqrt(c)) artanh(sqrt(c) ||(-x) (+) y||)`` (as geoopt's ``dist``)."""
    sc = math.sqrt(c)
    return (2 / sc) * torch.atanh((sc * _norm(mobius_add(-x, y, c, dim), dim)).clamp_max(1 - 1e-7)).squeeze(dim)


@torch.no_grad()
def compare_batch_means(model: nn.Module, x: torch.Tensor, other: torch.Tensor | None = None, iters: int = 5,
                        reference_iters: int = 50):
    """At every :class:`PoincareBatchNorm2d` of ``model``, on its input for the batch ``x``: how far the
    Poincaré midpoint lies from the Fréchet mean, against the spread of the points.

    Returns a DataFrame, one row per batch norm: ``points``, ``spread`` (the root mean squared
    distance of the points to their Fréchet mean), ``midpoint_distance`` and ``frechet_distance`` (the
    midpoint's and the ``iters``-step Fréchet mean's distance to the converged mean of
    ``reference_iters`` steps), ``relative`` (the midpoint's distance over the spread) and
    ``variance_ratio`` (the batch variance about the midpoint over that about the Fréchet mean). With a
    second batch ``other`` (same size), ``batch_to_batch``: the distance between the two batches' Fréchet
    means, the noise batch norm's statistics carry anyway. The model runs in eval mode (its train flag
    is restored).
    """
    import pandas as pd

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PoincareBatchNorm2d)]
    if not layers:
        raise ValueError("the model has no PoincareBatchNorm2d layer (create a poincare_resnet* model)")

    def bn_inputs(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}
        handles = [m.register_forward_pre_hook(lambda mod, args, n=n: seen.__setitem__(n, args[0])) for n, m in layers]
        eval_forward(model, batch, handles)
        return seen

    inputs, others = bn_inputs(x), (bn_inputs(other) if other is not None else {})
    rows = []
    for name, m in layers:
        pts = inputs[name].double()
        kw = dict(dim=1, reducedim=(0, 2, 3), keepdim=True)
        mid = poincare_midpoint(pts, m.c, **kw)
        fre = frechet_mean(pts, m.c, iters=iters, **kw)
        ref = frechet_mean(pts, m.c, iters=reference_iters, **kw)
        var_ref = float(poincare_dist(ref, pts, m.c, dim=1).pow(2).mean())
        var_mid = float(poincare_dist(mid, pts, m.c, dim=1).pow(2).mean())
        d_mid = float(poincare_dist(mid, ref, m.c, dim=1).max())
        row = dict(layer=name, points=pts.numel() // pts.shape[1], spread=var_ref ** 0.5, midpoint_distance=d_mid,
                   frechet_distance=float(poincare_dist(fre, ref, m.c, dim=1).max()),
                   relative=d_mid / max(var_ref ** 0.5, 1e-30), variance_ratio=var_mid / max(var_ref, 1e-300))
        if other is not None:
            ref2 = frechet_mean(others[name].double(), m.c, iters=reference_iters, **kw)
            row["batch_to_batch"] = float(poincare_dist(ref, ref2, m.c, dim=1).max())
        rows.append(row)
    return pd.DataFrame(rows)


def time_steps(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, repeats: int = 5):
    """Seconds per training step (forward, cross-entropy, backward) of each model on the batch ``(x, y)``.

    The models take turns within each repeat (after one warm-up step each), so that a slower or
    busier stretch of the machine hits them all alike: compare them by ratios of the medians. The
    models' batch-norm running statistics move as in training. Returns a DataFrame with columns
    ``model``, ``repeat``, ``seconds``.
    """
    import time

    import pandas as pd

    if not models or repeats < 1:
        raise ValueError("time_steps needs at least one model and repeats >= 1")

    def sync() -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    def step(m: nn.Module) -> float:
        m.train()
        m.zero_grad(set_to_none=True)
        sync()
        t0 = time.perf_counter()
        F.cross_entropy(m(x), y).backward()
        sync()
        return time.perf_counter() - t0

    for m in models.values():
        step(m)
    rows = [dict(model=name, repeat=r, seconds=step(m)) for r in range(repeats) for name, m in models.items()]
    for m in models.values():
        m.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)
