"""Hessian-vector products over a dataset, Lanczos, Hutchinson and stochastic Lanczos quadrature."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .._analysis import BN_TYPES as _BN, analysis_mode, check_bn_mode, weighted_batches


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
    error_estimates: np.ndarray | None = None


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


def _memory_budget(device: torch.device) -> int:
    """Bytes the reused gradient graphs may take: half the free GPU memory, or a quarter of the
    available RAM (at most 8 GiB) on a CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 << 30
    return int(min(avail // 4, 8 << 30))


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
        bn: ``"eval"`` (running statistics, default) or ``"train"`` (each batch's statistics;
            the running statistics are not updated).
        method: how a product is formed, chosen by measurement (``benchmarks/bench_hessian.py``):
            ``"reuse"`` keeps each batch's gradient graph and differentiates it again per
            product (about 2 gradients per product on a CPU, against 2.8 for ``"recompute"``
            and 4.4 for ``"func"``, ResNet-20, batch 256); ``"recompute"`` rebuilds the graph per
            product (least memory); ``"func"`` is forward-over-reverse ``torch.func``, which
            :meth:`matmat` vectorizes over a block of vectors with ``vmap`` (on a GPU a block of
            8 costs about one gradient per vector against 4-6 for a single product). ``"auto"``
            (default) reuses graphs when they fit in memory (measured on the first batch) and
            otherwise recomputes; on a GPU, blocks go through ``"func"``.
        block: how many vectors :meth:`matmat` multiplies at once where an algorithm allows
            (Hutchinson probes, density probes); default 8 on a GPU, 1 on a CPU (blocks do not
            pay there: 1.9x slower per vector measured).
    """

    METHODS = ("auto", "reuse", "recompute", "func")

    def __init__(self, model: nn.Module, loss_fn: Callable, batches: Sequence, params=None, bn: str = "eval",
                 method: str = "auto", block: int | None = None):
        check_bn_mode(bn)
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        if block is not None and (not isinstance(block, int) or block < 1):
            raise ValueError(f"block must be a positive integer (vectors per product), got {block!r}")
        batches, self.weights = weighted_batches(batches, "average the Hessian over")
        self.model, self.loss_fn, self.batches, self.bn = model, loss_fn, batches, bn
        self.named = _select(model, params)
        self.params = [p for _, p in self.named]
        self.dim = sum(p.numel() for p in self.params)
        self.products = 0
        self.method = self.requested = method
        self._checked = False
        self.device = self.params[0].device
        self.block = block if block is not None else (8 if self.device.type == "cuda" else 1)
        self.graph_bytes = None
        self._graphs: dict[int, tuple] = {}
        self._mode = analysis_mode(model, bn, self.params, stacklevel=4)

    # -- leaving the model exactly as it was (workbench._analysis) --------------------
    def __enter__(self):
        self._mode.__enter__()
        if self._mode._depth == 1:
            # attention's fused CPU/GPU kernels have no second derivative: use the plain one here
            from contextlib import ExitStack

            from torch.nn.attention import SDPBackend, sdpa_kernel
            self._stack = ExitStack()
            self._stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        return self

    def __exit__(self, *exc):
        if self._mode._depth == 1:
            self._graphs.clear()
            self._stack.close()
        return self._mode.__exit__(*exc)

    @property
    def _saved(self):
        return self._mode._saved

    # -- products ----------------------------------------------------------------------
    def _unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat ``(dim,)`` or ``(k, dim)`` tensor shaped like each selected parameter."""
        out, i = [], 0
        lead = v.shape[:-1]
        for p in self.params:
            out.append(v[..., i:i + p.numel()].reshape(*lead, *p.shape).to(p.dtype))
            i += p.numel()
        return out

    def _batch(self, i):
        x, y = self.batches[i]
        return x.to(self.device), (y.to(self.device) if isinstance(y, torch.Tensor) else y)

    def _check_loss(self, loss):
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar tensor (the batch's mean loss), got "
                             f"{getattr(loss, 'shape', type(loss))}")

    def _grads(self, x, y, create_graph: bool):
        out = self.model(x)
        loss = self.loss_fn(out, y)
        self._check_loss(loss)
        grads = torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)
        unused = [n for (n, _), g in zip(self.named, grads) if g is None]
        if unused:
            raise ValueError(f"the loss does not depend on {len(unused)} selected parameters, e.g. {unused[:3]}; "
                             "leave them out with params=")
        return loss, grads

    def _graph(self, i: int):
        """Batch ``i``'s gradient with its graph, kept for later products when ``method`` allows."""
        if i in self._graphs:
            return self._graphs[i]
        if self.method == "auto" and self.graph_bytes is None:
            self.graph_bytes = self._measure_graph(i)
            fits = self.graph_bytes * len(self.batches) <= _memory_budget(self.device)
            self.method = "reuse" if fits else "recompute"
        _, grads = self._grads(*self._batch(i), create_graph=True)
        if self.method == "reuse":
            self._graphs[i] = grads
        return grads

    def _measure_graph(self, i: int, probe: int = 8) -> int:
        """Bytes a batch's gradient graph keeps, from the tensors autograd saves on the first
        ``probe`` examples, scaled to the whole batch (an overestimate for the weights, which do
        not grow with the batch). Measured on a slice because saved-tensor hooks left on the
        graph itself slowed every later product by about 15% (measured on a CPU)."""
        x, y = self._batch(i)
        n = len(x)
        k = min(n, probe)
        if k < len(x) and isinstance(y, torch.Tensor) and len(y) == len(x):
            x, y = x[:k], y[:k]
        else:
            k = len(x)
        seen: dict[int, int] = {}

        def pack(t):
            if isinstance(t, torch.Tensor):
                try:
                    key = t.untyped_storage().data_ptr()
                    seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
                except (RuntimeError, NotImplementedError):
                    pass
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self._grads(x, y, create_graph=True)
        return int(sum(seen.values()) * n / k)

    def _finite(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        if not torch.isfinite(flat).all():
            raise FloatingPointError(f"a Hessian-vector product was not finite on batch {i} "
                                     f"(parameters {[n for n, _ in self.named][:3]}...): check the loss and inputs")
        return flat

    def _flat(self, parts, lead=()) -> torch.Tensor:
        return torch.cat([(h if h is not None else torch.zeros(*lead, *p.shape, dtype=p.dtype, device=p.device))
                          .reshape(*lead, -1).double() for h, p in zip(parts, self.params)], dim=-1)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v`` of length ``dim`` (float64 result)."""
        if self._saved is None:
            with self:
                return self.matvec(v)
        if v.shape != (self.dim,):
            raise ValueError(f"v must have shape ({self.dim},), the number of selected parameters; got {tuple(v.shape)}")
        if self.method == "func":
            return self.matmat(v[None])[0]
        vs = self._unflatten(v.to(self.device))
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        for i, w in enumerate(self.weights):
            grads = self._graph(i)
            hv = torch.autograd.grad(grads, self.params, grad_outputs=vs, retain_graph=self.method == "reuse",
                                     allow_unused=True)
            total += w * self._finite(self._flat(hv), i)
        self.products += 1
        return total

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V^T`` row by row for a ``(k, dim)`` block: ``k`` products, vectorized with
        ``torch.func.vmap`` when the method is ``"func"`` (or ``"auto"`` on a GPU with ``block > 1``),
        otherwise one at a time."""
        if self._saved is None:
            with self:
                return self.matmat(V)
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise ValueError(f"V must have shape (k, {self.dim}); got {tuple(V.shape)}")
        use_func = self.method == "func" or (self.requested == "auto" and self.device.type == "cuda" and len(V) > 1)
        if not use_func:
            return torch.stack([self.matvec(v) for v in V])
        if not self._checked:   # the same clear error as the other methods for parameters the loss ignores
            self._grads(*self._batch(0), create_graph=False)
            self._checked = True
        from torch.func import functional_call, grad, jvp, vmap

        names = [n for n, _ in self.named]
        primal = {n: p.detach() for n, p in self.named}
        total = torch.zeros(V.shape, dtype=torch.float64, device=self.device)
        tangents = dict(zip(names, self._unflatten(V.to(self.device))))
        for i, w in enumerate(self.weights):
            x, y = self._batch(i)

            def loss_of(sel):
                loss = self.loss_fn(functional_call(self.model, sel, (x,), strict=False), y)
                self._check_loss(loss)
                return loss

            def hvp(t):
                return jvp(grad(loss_of), (primal,), (t,))[1]

            out = vmap(hvp)(tangents)
            total += w * self._finite(self._flat([out[n] for n in names], (len(V),)), i)
        self.products += len(V)
        return total

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss (flat, float64); free when the gradient graphs are kept."""
        if self._saved is None:
            with self:
                return self.gradient()
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        for i, w in enumerate(self.weights):
            if self.method in ("auto", "reuse"):
                grads = [g.detach() for g in self._graph(i)]
            else:
                _, grads = self._grads(*self._batch(i), create_graph=False)
            total += w * self._flat(grads)
        return total


def _rademacher(dim: int, gen: torch.Generator, device, k: int | None = None) -> torch.Tensor:
    shape = (dim,) if k is None else (k, dim)
    return (torch.randint(0, 2, shape, generator=gen, dtype=torch.int8) * 2 - 1).double().to(device)


def _lanczos(op: HessianOperator, V0: torch.Tensor, steps: int, top_k: int | None = None, tol: float = 0.0):
    """Lanczos with full reorthogonalization, run for each row of ``V0`` (``(P, dim)``) in lockstep,
    so each step is one block product of ``P`` vectors. Returns per run ``(alphas, betas, Q, beta)``
    with ``Q`` ``(m, dim)`` and ``beta`` the last residual norm. With one run, stops early when the
    ``top_k`` Ritz pairs' residuals fall below ``tol`` (relative); every run stops when its Krylov
    space is exhausted."""
    P, dim = V0.shape
    Qs = [[v / torch.linalg.norm(v)] for v in V0]
    alphas, betas = [[] for _ in range(P)], [[] for _ in range(P)]
    prev = [torch.zeros_like(V0[0]) for _ in range(P)]
    last = [0.0] * P
    live = list(range(P))
    for _ in range(min(steps, dim)):
        W = op.matmat(torch.stack([Qs[r][-1] for r in live])) if len(live) > 1 else op.matvec(Qs[live[0]][-1])[None]
        still = []
        for w, r in zip(W, live):
            Q = Qs[r]
            a = float(w @ Q[-1])
            w = w - a * Q[-1] - last[r] * prev[r]
            Qm = torch.stack(Q)
            for _ in range(2):  # full reorthogonalization, twice is enough
                w = w - Qm.T @ (Qm @ w)
            alphas[r].append(a)
            beta = float(torch.linalg.norm(w))
            last[r] = beta
            done = beta < 1e-10 * max(1.0, abs(a)) or len(Q) == dim
            if not done and P == 1 and top_k is not None and tol > 0 and len(alphas[r]) >= top_k:
                theta, s = _tridiag_eig(alphas[r], betas[r])
                done = _converged(theta, s, beta, top_k, tol)[0]
            if done:
                continue
            betas[r].append(beta)
            prev[r] = Q[-1]
            Q.append(w / beta)
            still.append(r)
        live = still
        if not live:
            break
    return [(alphas[r], betas[r][:len(alphas[r]) - 1], torch.stack(Qs[r][:len(alphas[r])]), last[r])
            for r in range(P)]


def _converged(theta: np.ndarray, s: np.ndarray, beta: float, top_k: int, tol: float):
    """Whether the ``top_k`` largest Ritz values are accurate to ``tol`` (relative).

    A Ritz value ``theta`` with residual ``r = |beta s_m|`` lies within ``r`` of an eigenvalue
    (a rigorous bound), and within ``r^2 / gap`` when the rest of the spectrum is ``gap`` away
    (Kato-Temple); the gap is estimated from the other Ritz values, so ``min(r, r^2/gap)`` is an
    estimate of the error, not a bound. Converged when every estimate is at most ``tol |theta|``
    and every residual at most ``sqrt(tol) |theta|`` (so an optimistic gap estimate cannot end
    the run on its own). Returns ``(converged, residuals, estimates)``."""
    order = np.argsort(-theta)[:top_k]
    res = np.abs(beta * s[-1, order])
    bounds = res.copy()
    if len(theta) > 1:
        for j, i in enumerate(order):
            gap = np.min(np.abs(np.delete(theta, i) - theta[i]))
            if gap > 0:
                bounds[j] = min(res[j], res[j] ** 2 / gap)
    scale = np.maximum(np.abs(theta[order]), 1e-12)
    ok = bool(np.all(bounds <= tol * scale) and np.all(res <= math.sqrt(tol) * scale))
    return ok, res, bounds


def _tridiag_eig(alphas: list[float], betas: list[float]):
    m = len(alphas)
    T = np.diag(np.asarray(alphas, dtype=np.float64))
    if m > 1:
        b = np.asarray(betas[:m - 1], dtype=np.float64)
        T += np.diag(b, 1) + np.diag(b, -1)
    return np.linalg.eigh(T)


def _blocks(op: HessianOperator, Z: torch.Tensor) -> torch.Tensor:
    """``H Z^T`` for the rows of ``Z``, ``op.block`` rows per product call."""
    return torch.cat([op.matmat(Z[i:i + op.block]) for i in range(0, len(Z), op.block)])


def eigenvalues(model: nn.Module, loss_fn: Callable, batches: Iterable, top_k: int = 5, *, params=None,
                bn: str = "eval", max_steps: int = 100, tol: float = 1e-3, vectors: bool = False,
                seed: int = 0, start: str = "gradient", method: str = "auto") -> HessianResult:
    """The ``top_k`` largest (algebraic) Hessian eigenvalues, descending, by Lanczos with full
    reorthogonalization.

    Args:
        top_k: how many.
        tol: relative accuracy wanted of each eigenvalue: Lanczos stops when every wanted Ritz
            value's estimated error (from its residual, see ``_converged``) is below ``tol`` and
            its residual below ``sqrt(tol)``, relative to the value. ``converged`` in the result
            says whether that happened within ``max_steps``; ``residuals`` (each value lies within
            its residual of an eigenvalue) and ``error_estimates`` are reported.
        start: ``"gradient"`` (default) starts from the normalized gradient plus an equal-norm
            Rademacher vector: the gradient lies mostly in the top eigenspace (Gur-Ari et al.
            2018), which saves about two products on a ResNet-20, and it is free when the
            gradient graph is kept; the random part keeps every eigenvector reachable.
            ``"random"``: a Rademacher vector.
        seed: the random part of the start.
        method: how products are formed; see :class:`HessianOperator`.
        vectors: also return the unit eigenvectors (rows, flat over the selected parameters).
    """
    if start not in ("gradient", "random"):
        raise ValueError(f"start must be 'gradient' or 'random', got {start!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must lie in (0, 1) (relative accuracy of each eigenvalue), got {tol!r}")
    op = HessianOperator(model, loss_fn, batches, params, bn, method)
    if not isinstance(top_k, int) or not 1 <= top_k <= op.dim:
        raise ValueError(f"top_k must lie in 1..{op.dim} (the number of selected parameters), got {top_k}")
    gen = torch.Generator().manual_seed(seed)
    with op:
        v0 = _rademacher(op.dim, gen, op.device)
        if start == "gradient":
            g = op.gradient()
            gn = float(torch.linalg.norm(g))
            if gn > 0 and math.isfinite(gn):
                v0 = g / gn + v0 / math.sqrt(op.dim)
        [(alphas, betas, Q, beta)] = _lanczos(op, v0[None], max_steps, top_k, tol)
    theta, s = _tridiag_eig(alphas, betas)
    order = np.argsort(-theta)[:top_k]
    ok, res, estimates = _converged(theta, s, beta, top_k, tol)
    converged = bool(len(alphas) >= op.dim or ok)
    vecs = None
    if vectors:
        vecs = torch.from_numpy(s[:, order]).to(Q).T @ Q
        vecs = vecs / torch.linalg.norm(vecs, dim=1, keepdim=True)
    return HessianResult(theta[order], vecs, op.products, converged, res, bn, op.dim, estimates)


def trace(model: nn.Module, loss_fn: Callable, batches: Iterable, n_samples: int = 50, *, params=None,
          bn: str = "eval", seed: int = 0, estimator: str = "hutchinson", method: str = "auto",
          block: int | None = None) -> TraceResult:
    """An estimate of tr(H) from ``n_samples`` Hessian-vector products, with its standard error.

    ``estimator="hutchinson"``: the mean of ``z^T H z`` over Rademacher probes ``z``.
    ``estimator="hutch++"`` (Meyer et al. 2021): a third of the products sketch the dominant
    subspace ``Q`` (``H S`` for random ``S``), a third give ``tr(Q^T H Q)`` exactly, and the last
    third estimate the rest by Hutchinson on ``(I - QQ^T) H (I - QQ^T)``; when a few eigenvalues
    dominate the trace, as in trained networks, its error is far smaller at the same cost. The
    standard error is that of the Hutchinson part. Probes are multiplied in blocks of ``block``."""
    if estimator not in ("hutchinson", "hutch++"):
        raise ValueError(f"estimator must be 'hutchinson' or 'hutch++', got {estimator!r}")
    need = 2 if estimator == "hutchinson" else 6
    if not isinstance(n_samples, int) or n_samples < need:
        raise ValueError(f"n_samples must be at least {need} for {estimator} (to report a standard error), "
                         f"got {n_samples!r}")
    op = HessianOperator(model, loss_fn, batches, params, bn, method, block)
    gen = torch.Generator().manual_seed(seed)
    with op:
        if estimator == "hutchinson":
            Z = _rademacher(op.dim, gen, op.device, n_samples)
            samples = (Z * _blocks(op, Z)).sum(1).cpu().numpy()
            exact = 0.0
        else:
            k = n_samples // 3
            m = n_samples - 2 * k
            S = _rademacher(op.dim, gen, op.device, k)
            Q, _ = torch.linalg.qr(_blocks(op, S).T)          # (dim, k) orthonormal
            exact = float(torch.trace(Q.T @ _blocks(op, Q.T.contiguous()).T))
            G = _rademacher(op.dim, gen, op.device, m)
            G = G - (G @ Q) @ Q.T
            samples = (G * _blocks(op, G)).sum(1).cpu().numpy()
    n = len(samples)
    return TraceResult(float(exact + samples.mean()), float(samples.std(ddof=1) / math.sqrt(n)), n_samples,
                       op.products, bn, samples)


def density(model: nn.Module, loss_fn: Callable, batches: Iterable, *, steps: int = 60, probes: int = 4,
            params=None, bn: str = "eval", sigma: float | None = None, grid: int = 400,
            seed: int = 0, method: str = "auto", block: int | None = None) -> DensityResult:
    """The eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019): ``probes``
    Lanczos runs of ``steps`` steps (run in lockstep, ``block`` at a time, so each step is one
    block product), each Ritz value a Gaussian of width ``sigma`` weighted by its quadrature
    weight. The density integrates to one over the returned grid."""
    op = HessianOperator(model, loss_fn, batches, params, bn, method, block)
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    with op:
        V0 = _rademacher(op.dim, gen, op.device, probes)
        for i in range(0, probes, op.block):
            for alphas, betas, _, _ in _lanczos(op, V0[i:i + op.block], steps):
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
