"""Centered kernel alignment and the CCA family.

Kornblith, Norouzi, Lee & Hinton, *Similarity of Neural Network Representations
Revisited*, ICML 2019, https://arxiv.org/abs/1905.00414. For representations
``X`` (n x p) and ``Y`` (n x q) of the same n examples, with Gram matrices
``K = k(X)`` and ``L = k(Y)`` and ``H`` the centering matrix::

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),   HSIC(K, L) ∝ tr(K H L H)

Linear CKA uses ``k(X) = X Xᵀ``; then ``tr(K H L H) = ||Yᶜᵀ Xᶜ||²_F`` with centered
features, the cheaper form when n > p + q. The debiased variant replaces HSIC by the
unbiased U-statistic of Song et al. (2012). Everything here is float64 unless
``differentiable=True``, which keeps the input dtype and the autograd graph (for use
inside a loss).
"""
from __future__ import annotations

import warnings

import torch


def flatten_examples(x: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` to ``(n, d)`` without a copy where possible.

    Linear kernels only see inner products between examples, which do not depend on the order
    of the features, so a channels-last feature map is flattened in its memory order.
    """
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        x = x.permute(0, 2, 3, 1)
    return x.reshape(x.shape[0], -1)


def _features(x: torch.Tensor, name: str, differentiable: bool) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (n, ...) with one row per example, got {tuple(x.shape)}")
    x = flatten_examples(x)
    return x if differentiable else x.detach().to(torch.float64)


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_n: int = 2) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} examples and Y has {y.shape[0]}: rows must be the same examples")
    if x.shape[0] < min_n:
        raise ValueError(f"need at least {min_n} examples, got {x.shape[0]}"
                         + ("; the unbiased estimator divides by n - 3" if min_n == 4 else ""))


class _Gram(torch.autograd.Function):
    """``X Xᵀ`` whose backward is one product, ``(G + Gᵀ) X``, instead of autograd's two."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (g + g.T) @ x


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """``X Xᵀ`` for ``X`` of shape (n, d)."""
    return _Gram.apply(x) if x.requires_grad else x @ x.T


class _CenteredGram(torch.autograd.Function):
    """``Xc Xcᵀ`` with ``Xc = X - mean(X)`` over examples, the matrix products in ``dtype``
    (float32 accumulation, as bfloat16 matmuls do on CPU and CUDA); the result is float32."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        xc = (x - x.mean(0)).to(dtype)
        ctx.save_for_backward(xc)
        ctx.x_dtype = x.dtype
        return (xc @ xc.T).to(torch.promote_types(dtype, torch.float32))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (xc,) = ctx.saved_tensors
        gx = ((g + g.T).to(xc.dtype) @ xc).to(ctx.x_dtype)
        return gx - gx.mean(0), None


def gram_centered(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The centered linear Gram matrix of float features ``x`` (n, d), computed from centered
    features so that low-precision products (``dtype=torch.bfloat16``) lose no accuracy to
    the cancellation that centering a raw Gram matrix would cause. Float32 or float64 out;
    differentiable in ``x``."""
    if x.requires_grad:
        return _CenteredGram.apply(x, dtype)
    xc = (x - x.mean(0)).to(dtype)
    return (xc @ xc.T).to(torch.promote_types(dtype, torch.float32))


def gram_rbf(x: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """RBF Gram matrix whose bandwidth is ``threshold`` times the median pairwise distance
    (``sigma² = threshold² · median of squared distances``, the median over all n² entries)."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    flat = d2.flatten()
    m = flat.numel()
    # the usual median (mean of the two middle values for an even count); torch.median takes the lower one
    med = flat.kthvalue(m // 2 + 1).values if m % 2 else (flat.kthvalue(m // 2).values + flat.kthvalue(m // 2 + 1).values) / 2
    if float(med) == 0:
        raise ValueError("the median pairwise distance is 0 (most examples identical): the RBF bandwidth is undefined")
    return torch.exp(-d2 / (2 * threshold ** 2 * med))


def center_gram(k: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Double-center a Gram matrix; ``unbiased=True`` gives the U-statistic form (zero diagonal)."""
    n = k.shape[0]
    k = k.clone()
    if unbiased:
        if n < 4:
            raise ValueError(f"the unbiased estimator needs at least 4 examples, got {n}")
        k.fill_diagonal_(0)
        means = k.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        k = k - means[:, None] - means[None, :]
        k.fill_diagonal_(0)
    else:
        means = k.mean(0)
        means = means - means.mean() / 2
        k = k - means[:, None] - means[None, :]
    return k


def _cka_from_centered(kc: torch.Tensor, lc: torch.Tensor) -> torch.Tensor:
    num = (kc * lc).sum()
    den = torch.sqrt((kc * kc).sum() * (lc * lc).sum())
    return _safe_ratio(num, den)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    if float(den.detach()) <= 0 or not torch.isfinite(den.detach()):
        warnings.warn("a representation is constant over the examples (zero variance): CKA is defined as 0 here",
                      RuntimeWarning, stacklevel=3)
        return num * 0.0
    return num / den


def cka(k: torch.Tensor, l: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """CKA of two Gram matrices."""
    return _cka_from_centered(center_gram(k, debiased), center_gram(l, debiased))


def linear_cka(x, y, debiased: bool = False, differentiable: bool = False) -> torch.Tensor:
    """Linear CKA of two representations of the same examples (inputs ``(n, ...)`` are flattened).

    Uses the feature form ``||Yᵀ X||²_F`` when n exceeds the feature counts, else the Gram form.

    Example (Kornblith et al.'s demo data gives 0.55761):
        >>> x = torch.randn(100, 10, dtype=torch.float64); y = x + torch.randn(100, 10, dtype=torch.float64)
        >>> 0 <= float(linear_cka(x, y)) <= 1
        True
    """
    x, y = _features(x, "X", differentiable), _features(y, "Y", differentiable)
    _check_pair(x, y, 4 if debiased else 2)
    n = x.shape[0]
    if debiased or n <= x.shape[1] + y.shape[1]:
        return cka(gram_linear(x), gram_linear(y), debiased)
    xc, yc = x - x.mean(0), y - y.mean(0)
    num = (yc.T @ xc).pow(2).sum()
    return _safe_ratio(num, torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))


def rbf_cka(x, y, threshold: float = 1.0, debiased: bool = False, differentiable: bool = False) -> torch.Tensor:
    """CKA with RBF kernels, bandwidth ``threshold`` x the median distance (Kornblith et al. 2019)."""
    x, y = _features(x, "X", differentiable), _features(y, "Y", differentiable)
    _check_pair(x, y, 4 if debiased else 2)
    return cka(gram_rbf(x, threshold), gram_rbf(y, threshold), debiased)


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of Song et al. (2012) from two Gram matrices (n >= 4)."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 examples (it divides by n - 3), got {n}")
    k = k - torch.diag(torch.diagonal(k))
    l = l - torch.diag(torch.diagonal(l))
    ones_k, ones_l = k.sum(1), l.sum(1)
    term = (k * l).sum() + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2 * (ones_k @ ones_l) / (n - 2)
    return term / (n * (n - 3))


class MinibatchCKA:
    """Linear CKA accumulated over batches with the unbiased HSIC (Nguyen, Raghu & Kornblith 2021,
    https://arxiv.org/abs/2010.15327): memory of one batch, whatever the dataset size.

    >>> acc = MinibatchCKA()
    >>> for xb, yb in batches:            # doctest: +SKIP
    ...     acc.update(xb, yb)
    >>> acc.compute()                     # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.xy = self.xx = self.yy = 0.0
        self.batches = 0

    def update(self, x, y) -> None:
        x, y = _features(x, "X", False), _features(y, "Y", False)
        _check_pair(x, y, 4)
        k, l = gram_linear(x), gram_linear(y)
        self.xy += hsic_unbiased(k, l)
        self.xx += hsic_unbiased(k, k)
        self.yy += hsic_unbiased(l, l)
        self.batches += 1

    def compute(self) -> torch.Tensor:
        if not self.batches:
            raise ValueError("no batch was added: call update(x, y) first")
        return _safe_ratio(torch.as_tensor(self.xy), torch.sqrt(torch.as_tensor(self.xx * self.yy).clamp_min(0)))


def cca_correlations(x, y, center: bool = True) -> torch.Tensor:
    """Canonical correlations (descending) of two representations, via QR."""
    x, y = _features(x, "X", False), _features(y, "Y", False)
    _check_pair(x, y)
    if center:
        x, y = x - x.mean(0), y - y.mean(0)
    qx, _ = torch.linalg.qr(x)
    qy, _ = torch.linalg.qr(y)
    return torch.linalg.svdvals(qx.T @ qy).clamp(0, 1)


def mean_squared_cca(x, y, center: bool = True) -> torch.Tensor:
    """R²_CCA: the mean squared canonical correlation (``center=False`` matches Kornblith et al.'s demo)."""
    x, y = _features(x, "X", False), _features(y, "Y", False)
    return cca_correlations(x, y, center).pow(2).sum() / min(x.shape[1], y.shape[1])


def _top_directions(x: torch.Tensor, keep: float) -> torch.Tensor:
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    energy = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    k = int((energy < keep).sum()) + 1
    return u[:, :k] * s[:k]


def svcca(x, y, keep: float = 0.99) -> torch.Tensor:
    """SVCCA (Raghu et al. 2017, https://arxiv.org/abs/1706.05806): mean canonical correlation after
    keeping the top singular directions that explain ``keep`` of each representation's variance."""
    x, y = _features(x, "X", False), _features(y, "Y", False)
    _check_pair(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    return cca_correlations(_top_directions(x, keep), _top_directions(y, keep), center=False).mean()


def pwcca(x, y) -> torch.Tensor:
    """Projection-weighted CCA (Morcos et al. 2018, https://arxiv.org/abs/1806.05759): canonical
    correlations weighted by how much of X each canonical variate accounts for."""
    x, y = _features(x, "X", False), _features(y, "Y", False)
    _check_pair(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    qx, _ = torch.linalg.qr(x)
    qy, _ = torch.linalg.qr(y)
    u, rho, _ = torch.linalg.svd(qx.T @ qy, full_matrices=False)
    variates = qx @ u                                  # canonical variates of X, (n, k)
    weights = (variates.T @ x).abs().sum(1)            # projection of X's neurons on each variate
    return (weights * rho.clamp(0, 1)).sum() / weights.sum()


def procrustes_distance(x, y) -> torch.Tensor:
    """Orthogonal Procrustes distance (Ding et al. 2021, https://arxiv.org/abs/2108.01661) between
    centered, Frobenius-normalized representations: ``2 - 2 ||Xᵀ Y||_*`` (0 for identical shapes up to rotation)."""
    x, y = _features(x, "X", False), _features(y, "Y", False)
    _check_pair(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    nx, ny = torch.linalg.norm(x), torch.linalg.norm(y)
    if float(nx) == 0 or float(ny) == 0:
        raise ValueError("a representation is constant over the examples: the Procrustes distance is undefined")
    return (2 - 2 * torch.linalg.svdvals((x / nx).T @ (y / ny)).sum()).clamp_min(0)
