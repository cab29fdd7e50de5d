"""Hessian-vector products over a dataset, Lanczos, Hutchinson and stochastic Lanczos quadrature."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

_BN = (nn.modules.batchnorm._BatchNorm,)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def _select(model: nn.Module, params) -> list[tuple[str, nn.Parameter]]:
    named = list(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    elif params == "bn":
        bn_names = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, _BN)
                    for p, _ in mod.named_parameters(recurse=False)}
        chosen = [(n, p) for n, p in named if n in bn_names]
    elif callable(params):
        chosen = [(n, p) for n, p in named if params(n, p)]
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        chosen = [(n, p) for n, p in named if any(n == w or n.startswith(w + ".") for w in wanted)]
        unmatched = [w for w in wanted if not any(n == w or n.startswith(w + ".") for n, _ in named)]
        if unmatched:
            raise ValueError(f"params: {unmatched} match no parameter name or module prefix of "
                             f"{type(model).__name__}; names look like {named[0][0] if named else '(none)'}")
    if not chosen:
        raise ValueError("params selects no parameters: pass None (all), 'bn', a list of names or module prefixes, "
                         "or a function (name, param) -> bool")
    return chosen


@dataclass
class HessianResult:
    values: np.ndarray
    vectors: torch.Tensor | None
    products: int
    converged: bool
    residuals: np.ndarray
    bn: str
    dim: int


@dataclass
class TraceResult:
    estimate: float
    stderr: float
    samples: int
    products: int
    bn: str
    per_sample: np.ndarray = field(repr=False, default=None)


@dataclass
class DensityResult:
    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray      # (probes, m) Ritz values of each probe's Lanczos run
    weights: np.ndarray    # (probes, m) their quadrature weights (each row sums to 1)
    products: int
    bn: str

    def moment(self, p: int) -> float:
        """SLQ estimate of mean(λ^p) over the spectrum (tr(H^p) / dim)."""
        return float(np.mean((self.weights * self.nodes ** p).sum(1)))


class HessianOperator:
    """The Hessian of the mean loss over ``batches`` with respect to the selected parameters,
    as a matrix-free operator on flat float64 vectors. Use as a context manager, or call the
    functions below, which do so: inside, the model is in the requested mode; outside it is
    exactly as before.

    Args:
        model: any ``nn.Module``.
        loss_fn: ``loss_fn(model(x), y) -> scalar`` mean loss of a batch.
        batches: a list of ``(x, y)``; each batch is weighted by ``len(x)``.
        params: ``None`` (all trainable), ``"bn"`` (BatchNorm's γ and β), names or module
            prefixes (``"layer1.0"``), or ``fn(name, param) -> bool``.
        bn: ``"eval"`` (running statistics, default) or ``"train"`` (each batch's statistics).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, batches: Sequence, params=None, bn: str = "eval"):
        if bn not in ("eval", "train"):
            raise ValueError(f"bn must be 'eval' or 'train', got {bn!r}")
        batches = list(batches) if not isinstance(batches, list) else batches
        if not batches:
            raise ValueError("batches is empty: pass a list of (inputs, targets) batches to average the Hessian over")
        for i, b in enumerate(batches):
            if not isinstance(b, (tuple, list)) or len(b) != 2 or len(b[0]) == 0:
                raise ValueError(f"batches[{i}] must be a non-empty (inputs, targets) pair")
        self.model, self.loss_fn, self.batches, self.bn = model, loss_fn, batches, bn
        self.named = _select(model, params)
        self.params = [p for _, p in self.named]
        self.dim = sum(p.numel() for p in self.params)
        self.weights = [len(b[0]) for b in batches]
        total = sum(self.weights)
        self.weights = [w / total for w in self.weights]
        self.products = 0
        self._saved = None
        self._depth = 0

    # -- leaving the model exactly as it was --------------------------------------------
    def __enter__(self):
        self._depth += 1
        if self._depth > 1:
            return self
        m = self.model
        self._saved = {
            "training": {name: mod.training for name, mod in m.named_modules()},
            "requires_grad": {n: p.requires_grad for n, p in m.named_parameters()},
            "buffers": {n: b.detach().clone() for n, b in m.named_buffers()},
        }
        if any(isinstance(mod, _DROPOUT) and mod.training and mod.p > 0 for mod in m.modules()):
            warnings.warn("the model is in train mode with active dropout; dropout is turned off for the curvature "
                          "computation and restored afterwards", UserWarning, stacklevel=3)
        m.eval()
        if self.bn == "train":
            for mod in m.modules():
                if isinstance(mod, _BN):
                    mod.train()
        chosen = {id(p) for p in self.params}
        for p in m.parameters():
            p.requires_grad_(id(p) in chosen)
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth > 0:
            return False
        s, m = self._saved, self.model
        with torch.no_grad():
            for n, b in m.named_buffers():
                if n in s["buffers"]:
                    b.copy_(s["buffers"][n])
        for n, p in m.named_parameters():
            p.requires_grad_(s["requires_grad"][n])
        for name, mod in m.named_modules():
            mod.training = s["training"][name]
        self._saved = None
        return False

    # -- products ----------------------------------------------------------------------
    def _unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(v[i:i + p.numel()].view_as(p).to(p.dtype))
            i += p.numel()
        return out

    def _grads(self, x, y, create_graph: bool):
        out = self.model(x)
        loss = self.loss_fn(out, y)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar tensor (the batch's mean loss), got "
                             f"{getattr(loss, 'shape', type(loss))}")
        grads = torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)
        unused = [n for (n, _), g in zip(self.named, grads) if g is None]
        if unused:
            raise ValueError(f"the loss does not depend on {len(unused)} selected parameters, e.g. {unused[:3]}; "
                             "leave them out with params=")
        return loss, grads

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v`` of length ``dim`` (float64 result)."""
        if self._saved is None:
            with self:
                return self.matvec(v)
        if v.shape != (self.dim,):
            raise ValueError(f"v must have shape ({self.dim},), the number of selected parameters; got {tuple(v.shape)}")
        dev = self.params[0].device
        vs = self._unflatten(v.to(dev))
        total = torch.zeros(self.dim, dtype=torch.float64, device=dev)
        for i, ((x, y), w) in enumerate(zip(self.batches, self.weights)):
            _, grads = self._grads(x.to(dev), y.to(dev) if isinstance(y, torch.Tensor) else y, create_graph=True)
            dot = sum((g * u).sum() for g, u in zip(grads, vs))
            hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            flat = torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1).double()
                              for h, p in zip(hv, self.params)])
            if not torch.isfinite(flat).all():
                raise FloatingPointError(f"a Hessian-vector product was not finite on batch {i} "
                                         f"(parameters {[n for n, _ in self.named][:3]}...): check the loss and inputs")
            total += w * flat
        self.products += 1
        return total

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss (flat, float64)."""
        if self._saved is None:
            with self:
                return self.gradient()
        dev = self.params[0].device
        total = torch.zeros(self.dim, dtype=torch.float64, device=dev)
        for (x, y), w in zip(self.batches, self.weights):
            _, grads = self._grads(x.to(dev), y.to(dev) if isinstance(y, torch.Tensor) else y, create_graph=False)
            total += w * torch.cat([g.reshape(-1).double() for g in grads])
        return total


def _rademacher(dim: int, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.randint(0, 2, (dim,), generator=gen, dtype=torch.int8) * 2 - 1).double().to(device)


def _lanczos(op: HessianOperator, v0: torch.Tensor, steps: int, top_k: int | None = None, tol: float = 0.0):
    """Lanczos with full reorthogonalization. Returns (alphas, betas, Q) with Q (m, dim); stops early
    when the top_k Ritz pairs' residuals fall below tol (relative) or the Krylov space is exhausted."""
    dim = op.dim
    q = v0 / torch.linalg.norm(v0)
    Q = [q]
    alphas, betas = [], []
    prev, beta = torch.zeros_like(q), 0.0
    for j in range(min(steps, dim)):
        w = op.matvec(Q[-1])
        a = float(w @ Q[-1])
        w = w - a * Q[-1] - beta * prev
        Qm = torch.stack(Q)
        for _ in range(2):  # full reorthogonalization, twice is enough
            w = w - Qm.T @ (Qm @ w)
        alphas.append(a)
        beta = float(torch.linalg.norm(w))
        if top_k is not None and tol > 0 and len(alphas) >= top_k:
            theta, s = _tridiag_eig(alphas, betas)
            top = np.argsort(-theta)[:top_k]
            res = np.abs(beta * s[-1, top])
            if np.all(res <= tol * np.maximum(np.abs(theta[top]), 1e-12)):
                return alphas, betas, torch.stack(Q), beta
        if beta < 1e-10 * max(1.0, abs(a)) or len(Q) == dim:
            return alphas, betas, torch.stack(Q), beta
        betas.append(beta)
        prev = Q[-1]
        Q.append(w / beta)
    return alphas, betas[:len(alphas) - 1], torch.stack(Q[:len(alphas)]), beta


def _tridiag_eig(alphas: list[float], betas: list[float]):
    m = len(alphas)
    T = np.diag(np.asarray(alphas, dtype=np.float64))
    if m > 1:
        b = np.asarray(betas[:m - 1], dtype=np.float64)
        T += np.diag(b, 1) + np.diag(b, -1)
    return np.linalg.eigh(T)


def eigenvalues(model: nn.Module, loss_fn: Callable, batches: Iterable, top_k: int = 5, *, params=None,
                bn: str = "eval", max_steps: int = 100, tol: float = 1e-4, vectors: bool = False,
                seed: int = 0) -> HessianResult:
    """The ``top_k`` largest (algebraic) Hessian eigenvalues, descending, by Lanczos with full
    reorthogonalization, stopping when every wanted Ritz pair's residual is below ``tol`` relative
    to its value. ``products`` counts Hessian-vector products; ``converged`` says whether the
    residual test passed within ``max_steps``."""
    op = HessianOperator(model, loss_fn, batches, params, bn)
    if not 1 <= top_k <= op.dim:
        raise ValueError(f"top_k must lie in 1..{op.dim} (the number of selected parameters), got {top_k}")
    gen = torch.Generator().manual_seed(seed)
    with op:
        dev = op.params[0].device
        alphas, betas, Q, beta = _lanczos(op, _rademacher(op.dim, gen, dev), max_steps, top_k, tol)
    theta, s = _tridiag_eig(alphas, betas)
    order = np.argsort(-theta)[:top_k]
    res = np.abs(beta * s[-1, order])
    exhausted = len(alphas) >= op.dim
    converged = bool(exhausted or np.all(res <= tol * np.maximum(np.abs(theta[order]), 1e-12)))
    vecs = None
    if vectors:
        vecs = torch.from_numpy(s[:, order]).to(Q).T @ Q
        vecs = vecs / torch.linalg.norm(vecs, dim=1, keepdim=True)
    return HessianResult(theta[order], vecs, op.products, converged, res, bn, op.dim)


def trace(model: nn.Module, loss_fn: Callable, batches: Iterable, n_samples: int = 50, *, params=None,
          bn: str = "eval", seed: int = 0) -> TraceResult:
    """Hutchinson's estimate of tr(H) with Rademacher probes, and its standard error."""
    if n_samples < 2:
        raise ValueError("n_samples must be at least 2 to report a standard error")
    op = HessianOperator(model, loss_fn, batches, params, bn)
    gen = torch.Generator().manual_seed(seed)
    with op:
        dev = op.params[0].device
        samples = np.array([float(z @ op.matvec(z)) for z in (_rademacher(op.dim, gen, dev)
                                                               for _ in range(n_samples))])
    return TraceResult(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(n_samples)), n_samples,
                       op.products, bn, samples)


def density(model: nn.Module, loss_fn: Callable, batches: Iterable, *, steps: int = 60, probes: int = 4,
            params=None, bn: str = "eval", sigma: float | None = None, grid: int = 400,
            seed: int = 0) -> DensityResult:
    """The eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019): ``probes``
    Lanczos runs of ``steps`` steps, each Ritz value a Gaussian of width ``sigma`` weighted by its
    quadrature weight. The density integrates to one over the returned grid."""
    op = HessianOperator(model, loss_fn, batches, params, bn)
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    with op:
        dev = op.params[0].device
        for _ in range(probes):
            alphas, betas, _, _ = _lanczos(op, _rademacher(op.dim, gen, dev), steps)
            theta, s = _tridiag_eig(alphas, betas)
            nodes.append(theta)
            weights.append(s[0] ** 2)
    m = max(len(n) for n in nodes)
    N = np.array([np.pad(n, (0, m - len(n)), constant_values=n[-1]) for n in nodes])
    W = np.array([np.pad(w, (0, m - len(w))) for w in weights])
    lo, hi = N.min(), N.max()
    span = max(hi - lo, 1e-12)
    sigma = sigma if sigma is not None else span / 100
    xs = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid)
    dens = (W[..., None] * np.exp(-(xs - N[..., None]) ** 2 / (2 * sigma ** 2))).sum((0, 1))
    dens /= probes * sigma * math.sqrt(2 * math.pi)
    dens /= np.trapezoid(dens, xs) if hasattr(np, "trapezoid") else np.trapz(dens, xs)
    return DensityResult(xs, dens, N, W, op.products, bn)
