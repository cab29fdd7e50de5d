"""Reading attention weights as convolution kernels: the effective kernel around a query, and how far a
head looks.

Li & Zhang, *Toward a Deeper Understanding: RetNet Viewed through Convolution*, 2023,
https://arxiv.org/abs/2309.05375, read a spatial mask on the attention matrix as a convolution: when the
weight token ``n`` gives token ``m`` depends only on their offset ``m - n``, attention *is* a depthwise
convolution of V with that kernel. In general the weights also depend on the content (``softmax(Q K^T)``),
so every query, in every image, gets its own kernel. :func:`effective_kernel` lays one query's row of
weights (or all rows, averaged by offset) out on the grid of offsets::

    K_n[dy + h - 1, dx + w - 1] = A[n, m]    for the key m at offset (dy, dx) from the query n

so that ``(A V)[n] = sum over offsets of K_n[offset] * V[n + offset]``, with zeros where ``n + offset``
falls outside the grid (zero padding). :func:`mean_attention_distance` is the weighted mean distance in
patches between a query and what it attends to (Dosovitskiy et al., https://arxiv.org/abs/2010.11929,
figure 7), averaged over the queries: the receptive field of a head, in one number.

Both take weights ``[..., T, T]`` (queries x keys, row-major tokens of an ``h x w`` grid), such as the ViT's
``blocks.i.attn.hook_pattern`` (``cls_token=True``: the class token's row and column are left out) or RMT's
full-form ``hook_pattern``; a decomposed RMT's ``hook_pattern_w`` ``[batch, heads, H, W, W]`` is a
``1 x W`` grid.
"""
from __future__ import annotations

import torch

__all__ = ["effective_kernel", "mean_attention_distance", "DISTANCE_METRICS"]

DISTANCE_METRICS = ("euclidean", "manhattan")


def _grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    hw = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else tuple(grid)
    if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
        raise ValueError(f"grid must be a positive int or a pair (h, w) of positive ints, got {grid!r}")
    return hw


def _patches(pattern: torch.Tensor, h: int, w: int, cls_token: bool) -> torch.Tensor:
    t = h * w + int(cls_token)
    if pattern.ndim < 2 or pattern.shape[-2:] != (t, t):
        extra = " plus a class token" if cls_token else ""
        raise ValueError(f"attention weights on a {h}x{w} grid{extra} must end in [{t}, {t}] (queries x keys), got "
                         f"shape {tuple(pattern.shape)}; pass the grid the weights were computed on, and "
                         f"cls_token=True when the first token is a class token")
    return pattern[..., 1:, 1:] if cls_token else pattern


def _positions(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return ys.flatten(), xs.flatten()                                          # [T], row-major


def effective_kernel(pattern: torch.Tensor, grid: int | tuple[int, int], query: tuple[int, int] | None = None, *,
                     cls_token: bool = False) -> torch.Tensor:
    """The attention weights of one query (or of every query, averaged by offset) as a convolution kernel.

    Args:
        pattern: attention weights ``[..., T, T]`` (``T = h w``, or ``h w + 1`` with ``cls_token``).
        grid: ``h`` (a square grid) or ``(h, w)``.
        query: ``(y, x)``: that query's kernel, zero at offsets that leave the grid. ``None``: at each
            offset, the mean weight over the queries for which that offset stays on the grid (the kernel a
            convolution would share between positions).
        cls_token: the first token is a class token; its row and column are dropped.

    Returns:
        ``[..., 2h - 1, 2w - 1]``: entry ``[dy + h - 1, dx + w - 1]`` is the weight on the key at offset
        ``(dy, dx)`` from the query; the centre is the query itself.

    >>> effective_kernel(torch.eye(4), 2).tolist()        # every token attends only to itself
    [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    h, w = _grid(grid)
    p = _patches(pattern, h, w, cls_token)
    ys, xs = _positions(h, w, p.device)
    dy, dx = ys[None, :] - ys[:, None], xs[None, :] - xs[:, None]             # [T, T]: key - query
    offset = (dy + h - 1) * (2 * w - 1) + (dx + w - 1)
    lead, size = p.shape[:-2], (2 * h - 1) * (2 * w - 1)
    if query is not None:
        if (len(query) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in query)
                or not (0 <= query[0] < h and 0 <= query[1] < w)):
            raise ValueError(f"query must be a position (y, x) with 0 <= y < {h} and 0 <= x < {w}, got {query!r}")
        n = query[0] * w + query[1]
        k = p.new_zeros(*lead, size).scatter(-1, offset[n].expand(*lead, h * w), p[..., n, :])
    else:
        flat = offset.flatten()
        sums = p.new_zeros(*lead, size).scatter_add(-1, flat.expand(*lead, flat.numel()), p.flatten(-2))
        k = sums / torch.bincount(flat, minlength=size).to(p.dtype)
    return k.view(*lead, 2 * h - 1, 2 * w - 1)


def mean_attention_distance(pattern: torch.Tensor, grid: int | tuple[int, int], *, cls_token: bool = False,
                            metric: str = "euclidean") -> torch.Tensor:
    """How far the queries look, in patches: ``mean_n sum_m A[n, m] d(n, m) / sum_m A[n, m]``.

    Each query's weights on the patches are normalised to sum to one first (so a decayed row that sums
    to less than one, or a row that gives weight to the class token, counts as the distribution it
    puts on the grid).

    Args:
        pattern: attention weights ``[..., T, T]``, as :func:`effective_kernel`.
        grid: ``h`` or ``(h, w)``.
        cls_token: the first token is a class token; its row and column are dropped.
        metric: ``"euclidean"`` or ``"manhattan"`` distance between patch positions.

    Returns:
        ``[...]``: one distance per leading index (for example ``[batch, heads]``); average it yourself.
        A query whose weights on the patches are all zero makes its entry NaN.

    >>> float(mean_attention_distance(torch.full((4, 4), 0.25), 2, metric="manhattan"))  # uniform on 2x2
    1.0
    """
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid values: {', '.join(map(repr, DISTANCE_METRICS))}")
    h, w = _grid(grid)
    p = _patches(pattern, h, w, cls_token)
    ys, xs = (v.to(p.dtype) for v in _positions(h, w, p.device))
    dy, dx = ys[None, :] - ys[:, None], xs[None, :] - xs[:, None]
    d = dy.abs() + dx.abs() if metric == "manhattan" else (dy ** 2 + dx ** 2).sqrt()         # [T, T]
    return ((p * d).sum(-1) / p.sum(-1)).mean(-1)
