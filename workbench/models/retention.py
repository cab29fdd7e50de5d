"""Attention with an explicit spatial prior: RMT's Manhattan self-attention, and decay masks as convolutions.

Fan, Huang, Chen, He & Yang, *RMT: Retentive Networks Meet Vision Transformers*, CVPR 2024,
https://arxiv.org/abs/2309.11523. RetNet's temporal decay (Sun et al., https://arxiv.org/abs/2307.08621)
becomes a spatial one: token ``n`` at ``(x_n, y_n)`` weights token ``m`` by ``gamma`` to the power of
their Manhattan distance::

    D[n, m]  = gamma ** (|x_n - x_m| + |y_n - y_m|)
    MaSA(X)  = (softmax(Q K^T / sqrt(d)) * D) V                       (* elementwise)

**Normalisation.** The paper multiplies the softmax by ``D`` *after* normalising, so a row of weights sums
to less than one; this is the default here. RMT's released code instead adds ``log D`` to the scores
before the softmax, which renormalises each row: ``softmax(S + log D) = softmax(S) * D / rowsum``.
``renormalize=True`` gives that form.

**Decomposed form.** Attend along each row with the 1-D decay ``D^W[x, x'] = gamma^|x - x'|``, then along
each column with ``D^H`` (the paper's order: ``A_W`` acts on V first)::

    out = (softmax(Q_H K_H^T / sqrt(d)) * D^H) ((softmax(Q_W K_W^T / sqrt(d)) * D^W) V)

at cost ``O(HW (H + W))`` instead of ``O((HW)^2)``. RMT uses it in the early, high-resolution stages.

**Per-head decay** (RMT's code, class ``RetNetRelPos2d``): ``gamma_h = 1 - 2^(-a - b h / heads)`` for head
``h = 0 .. heads-1``, with ``a = 2`` (``init_value``, every RMT model) and ``b`` the ``heads_range``
(4 in RMT-T's first two stages, 6 later). RetNet's own choice is ``gamma_h = 1 - 2^(-5 - h)``.

**Local context enhancement (LCE)**: a 5x5 depthwise convolution of V added to the attention output
before the output projection; **CPE**: a 3x3 depthwise convolution added at the start of every block.
Left out of RMT: the rotary position embedding on Q and K, the depthwise convolution inside the FFN,
layer scale and stochastic depth.

**Paper 32.** Li & Zhang, *Toward a Deeper Understanding: RetNet Viewed through Convolution*, 2023,
https://arxiv.org/abs/2309.05375: a decay mask is a convolution in disguise. When all scores are equal
(``q = k = 0``) the softmax is ``1 / N`` everywhere and MaSA is *exactly* a depthwise convolution of V
with the kernel ``gamma^(|i| + |j|) / N``, zero padded (:func:`decay_as_conv_kernel`; the tests check it
against ``F.conv2d``). Its masks for a ViT, the element-wise learnable mask (ELM) and the Gaussian mixture
mask (:func:`gaussian_mixture_mask`), live in :mod:`workbench.models.vit` (``attn_mask=``).

``rmt_tiny`` is a small RMT for 32x32 images: a convolutional stem to 16x16 tokens, three stages (16x16
decomposed, 8x8 decomposed, 4x4 full MaSA, a strided 3x3 convolution between stages), global average
pooling and a linear classifier. ``decay=False`` sets every ``gamma`` to 1: plain softmax attention (axial
in the decomposed stages) with exactly the same parameters, for a with/without-prior comparison.

Hook points: ``stem``, ``blocks.I`` (a block's output), ``blocks.I.hook_attn`` and ``blocks.I.hook_mlp``
(the residual branches), ``blocks.I.attn.hook_pattern`` (full form, ``[batch, heads, HW, HW]``) or
``blocks.I.attn.hook_pattern_w`` / ``hook_pattern_h`` (decomposed, ``[batch, heads, H, W, W]`` and
``[batch, heads, W, H, H]``), ``hook_pool``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel, init_transformer_weights
from .hooks import HookPoint

__all__ = ["head_gammas", "manhattan_decay", "axis_decay", "decay_as_conv_kernel", "gaussian_mixture_mask",
           "check_gammas", "ManhattanAttention", "RMTBlock", "RMT", "rmt_tiny"]

GammaLike = float | Sequence[float] | torch.Tensor


def check_gammas(gamma: GammaLike) -> torch.Tensor:
    """``gamma`` as a float tensor (a scalar or one value per head), refused unless every value lies in (0, 1]."""
    g = torch.as_tensor(gamma, dtype=torch.get_default_dtype()) if not torch.is_tensor(gamma) else gamma
    if g.ndim > 1 or not torch.is_floating_point(g):
        raise ValueError(f"gamma must be a float or a 1-D float tensor (one value per head), got {gamma!r}")
    bad = ~((g > 0) & (g <= 1))
    if bad.any():
        raise ValueError(f"gamma must lie in (0, 1] (1 = no decay, near 0 = attend only to oneself), got "
                         f"{g.detach().cpu().tolist()}")
    return g


def head_gammas(heads: int, init_value: float = 2.0, heads_range: float = 4.0) -> torch.Tensor:
    """RMT's per-head decays ``gamma_h = 1 - 2^(-init_value - heads_range * h / heads)``, ``[heads]``.

    >>> head_gammas(2).tolist()
    [0.75, 0.9375]
    """
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ValueError(f"heads must be a positive integer, got {heads!r}")
    return 1 - 2.0 ** (-init_value - heads_range * torch.arange(heads, dtype=torch.float64) / heads).to(
        torch.get_default_dtype())


def _pow(gamma: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    # gamma [] or [heads], dist [...]: gamma ** dist, one map per head when gamma is a vector
    return gamma.reshape(-1, *([1] * dist.ndim)).to(dist.dtype) ** dist if gamma.ndim else gamma.to(dist.dtype) ** dist


def axis_decay(n: int, gamma: GammaLike) -> torch.Tensor:
    """The 1-D decay ``gamma^|i - j|``: ``[n, n]``, or ``[heads, n, n]`` for one gamma per head."""
    g = check_gammas(gamma)
    i = torch.arange(n, dtype=g.dtype, device=g.device)
    return _pow(g, (i[:, None] - i[None, :]).abs())


def _grid(h: int, w: int, dtype, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device),
                            indexing="ij")
    return torch.stack([ys.flatten(), xs.flatten()], -1)  # [h*w, 2], row-major token order


def manhattan_decay(h: int, w: int, gamma: GammaLike) -> torch.Tensor:
    """RMT's 2-D decay ``D[n, m] = gamma^(|x_n - x_m| + |y_n - y_m|)`` on an ``h x w`` grid of tokens in
    row-major order: ``[h*w, h*w]``, or ``[heads, h*w, h*w]`` for one gamma per head."""
    g = check_gammas(gamma)
    p = _grid(h, w, g.dtype, g.device)
    return _pow(g, (p[:, None, :] - p[None, :, :]).abs().sum(-1))


def decay_as_conv_kernel(gamma: GammaLike, radius: int) -> torch.Tensor:
    """The decay as a convolution kernel ``K[i, j] = gamma^(|i| + |j|)`` for ``|i|, |j| <= radius``:
    ``[2r+1, 2r+1]`` (or ``[heads, 2r+1, 2r+1]``). With constant attention scores, full-form MaSA on an
    ``H x W`` grid equals ``F.conv2d(V, K / (H W), padding=radius)`` per channel once ``radius >= max(H, W) - 1``
    (without renormalisation; zero padding stands for the tokens that do not exist)."""
    g = check_gammas(gamma)
    i = torch.arange(-radius, radius + 1, dtype=g.dtype, device=g.device).abs()
    return _pow(g, i[:, None] + i[None, :])


def gaussian_mixture_mask(h: int, w: int, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Paper 32's Gaussian mixture mask on an ``h x w`` patch grid: ``[heads, h*w, h*w]``::

        M_h[n, m] = sum_k alpha[h, k] * exp(-d(n, m)^2 / (2 (sigma[h, k]^2 + 1e-5)))

    with ``d`` the Euclidean distance between patch positions, ``alpha`` and ``sigma`` ``[heads, K]`` (two
    learnable numbers per Gaussian). The ``1e-5`` keeps a zero width finite, as in the authors' code.
    """
    if alpha.shape != sigma.shape or alpha.ndim != 2:
        raise ValueError(f"alpha and sigma must both be [heads, K], got {tuple(alpha.shape)} and {tuple(sigma.shape)}")
    p = _grid(h, w, alpha.dtype, alpha.device)
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)                       # [T, T]
    g = torch.exp(-d2 / (2 * (sigma[..., None, None] ** 2 + 1e-5)))          # [heads, K, T, T]
    return (alpha[..., None, None] * g).sum(1)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


class ManhattanAttention(nn.Module):
    """Manhattan self-attention (MaSA) with optional local context enhancement.

    Args:
        dim, heads: width and number of heads (``dim % heads == 0``).
        decomposed: attend along rows, then columns, with 1-D decays (else full 2-D attention).
        lce: add a 5x5 depthwise convolution of V to the output.
        gammas: one decay per head in (0, 1]; ``None``: :func:`head_gammas` with ``init_value``, ``heads_range``.
        decay: ``False`` sets every gamma to 1 (plain softmax attention, same parameters).
        renormalize: divide each row of decayed weights by its sum (RMT's code) instead of the paper's form.

    ``forward(x)`` takes ``[batch, C, H, W]`` and returns the same shape, or tokens ``[batch, H*W, C]`` in
    row-major order with ``grid=(H, W)``.
    """

    def __init__(self, dim: int, heads: int, decomposed: bool = False, lce: bool = True, *,
                 gammas: GammaLike | None = None, init_value: float = 2.0, heads_range: float = 4.0,
                 decay: bool = True, renormalize: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        g = head_gammas(heads, init_value, heads_range) if gammas is None else check_gammas(gammas).reshape(-1)
        if g.numel() != heads:
            raise ValueError(f"gammas needs one value per head ({heads}), got {g.numel()}")
        self.heads, self.decomposed, self.renormalize = heads, decomposed, renormalize
        self.register_buffer("gammas", g.clone() if decay else torch.ones_like(g), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.lce = nn.Conv2d(dim, dim, 5, padding=2, groups=dim) if lce else None
        self.proj = nn.Linear(dim, dim)
        if decomposed:
            self.hook_pattern_w, self.hook_pattern_h = HookPoint(), HookPoint()
        else:
            self.hook_pattern = HookPoint()

    def _weights(self, s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        a = s.softmax(-1) * d
        return a / a.sum(-1, keepdim=True) if self.renormalize else a

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        image = x.ndim == 4
        if image:
            b, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)                                   # [batch, H*W, C]
        elif x.ndim == 3 and grid is not None:
            (b, n, c), (h, w) = x.shape, grid
            if h * w != n:
                raise ValueError(f"grid {h}x{w} has {h * w} tokens but the input has {n}; pass grid=(H, W) "
                                 f"with H * W = {n} (row-major token order)")
            t = x
        else:
            raise ValueError(f"ManhattanAttention expects [batch, C, H, W], or tokens [batch, H*W, C] with "
                             f"grid=(H, W); got shape {tuple(x.shape)} and grid={grid}")
        hd = c // self.heads
        q, k, v = self.qkv(t).view(b, h, w, 3, self.heads, hd).permute(3, 0, 4, 1, 2, 5)  # [batch, heads, H, W, hd]
        q = q * hd ** -0.5
        g = self.gammas
        if self.decomposed:
            a_w = self.hook_pattern_w(self._weights(q @ k.transpose(-1, -2), axis_decay(w, g)[:, None]))
            v1 = (a_w @ v).transpose(2, 3)                                     # rows done: [batch, heads, W, H, hd]
            s_h = q.transpose(2, 3) @ k.transpose(2, 3).transpose(-1, -2)      # [batch, heads, W, H, H]
            a_h = self.hook_pattern_h(self._weights(s_h, axis_decay(h, g)[:, None]))
            out = (a_h @ v1).transpose(2, 3)                                   # [batch, heads, H, W, hd]
        else:
            qf, kf, vf = (z.flatten(2, 3) for z in (q, k, v))                  # [batch, heads, H*W, hd]
            a = self.hook_pattern(self._weights(qf @ kf.transpose(-1, -2), manhattan_decay(h, w, g)))
            out = (a @ vf).view(b, self.heads, h, w, hd)
        out = out.permute(0, 2, 3, 1, 4).reshape(b, h * w, c)                  # [batch, H*W, C]
        if self.lce is not None:
            v_img = v.permute(0, 1, 4, 2, 3).reshape(b, c, h, w)               # [batch, C, H, W]
            out = out + self.lce(v_img).flatten(2).transpose(1, 2)
        out = self.proj(out)
        return out.transpose(1, 2).reshape(b, c, h, w) if image else out


class RMTBlock(nn.Module):
    """``x = x + cpe(x); x = x + MaSA(ln(x)); x = x + mlp(ln(x))`` on ``[batch, C, H, W]``; a strided 3x3
    convolution with BatchNorm (RMT's patch merging) first when ``downsample``."""

    def __init__(self, dim_in: int, dim: int, heads: int, decomposed: bool, mlp_ratio: float = 3.0, *,
                 downsample: bool = False, lce: bool = True, init_value: float = 2.0, heads_range: float = 4.0,
                 decay: bool = True):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(dim_in, dim, 3, 2, 1), nn.BatchNorm2d(dim)) if downsample else None
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = ManhattanAttention(dim, heads, decomposed, lce, init_value=init_value, heads_range=heads_range,
                                       decay=decay)
        self.ln2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.hook_attn, self.hook_mlp = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down is not None:
            x = self.down(x)
        x = x + self.cpe(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)                                       # [batch, H*W, C]
        t = t + self.hook_attn(self.attn(self.ln1(t), grid=(h, w)))
        t = t + self.hook_mlp(self.mlp(self.ln2(t)))
        return t.transpose(1, 2).reshape(b, c, h, w)


class RMT(WorkbenchModel):
    """A small RMT: conv stem (stride 2), stages of MaSA blocks, average pooling, linear head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, dims: Sequence[int] = (32, 64, 128),
                 depths: Sequence[int] = (2, 2, 2), heads: Sequence[int] = (2, 4, 8),
                 decomposed: Sequence[bool] = (True, True, False), heads_ranges: Sequence[float] = (4, 4, 6),
                 init_value: float = 2.0, mlp_ratio: float = 3.0, lce: bool = True, decay: bool = True):
        super().__init__()
        n = len(dims)
        if not n or any(len(s) != n for s in (depths, heads, decomposed, heads_ranges)):
            raise ValueError(f"dims, depths, heads, decomposed and heads_ranges need one entry per stage, got "
                             f"{list(dims)}, {list(depths)}, {list(heads)}, {list(decomposed)}, {list(heads_ranges)}")
        if any(d < 1 for d in depths):
            raise ValueError(f"every stage needs at least one block, got depths={list(depths)}")
        self.in_chans, self.num_classes, self.img_size = in_chans, num_classes, None
        self.min_input_size = 2 ** n  # the stem's stride 2, then one more halving per later stage
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0] // 2, 3, 1, 1), nn.BatchNorm2d(dims[0] // 2), nn.GELU(),
                                  nn.Conv2d(dims[0] // 2, dims[0], 3, 2, 1), nn.BatchNorm2d(dims[0]))
        blocks, prev = [], dims[0]
        for s in range(n):
            for i in range(depths[s]):
                blocks.append(RMTBlock(prev, dims[s], heads[s], decomposed[s], mlp_ratio, downsample=s > 0 and i == 0,
                                       lce=lce, init_value=init_value, heads_range=heads_ranges[s], decay=decay))
                prev = dims[s]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(prev)
        self.hook_pool = HookPoint()
        self.head = nn.Linear(prev, num_classes)
        self.hook_layers = ("stem",) + tuple(f"blocks.{i}" for i in range(len(blocks)))
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.blocks(self.stem(x))                                          # [batch, C, H/8, W/8]
        return self.head(self.hook_pool(self.norm(x.mean((2, 3)))))            # [batch, classes]


@register_model
def rmt_tiny(num_classes: int = 10, in_chans: int = 3, dims: Sequence[int] = (32, 64, 128),
             depths: Sequence[int] = (2, 2, 2), heads: Sequence[int] = (2, 4, 8),
             decomposed: Sequence[bool] = (True, True, False), heads_ranges: Sequence[float] = (4, 4, 6),
             init_value: float = 2.0, mlp_ratio: float = 3.0, lce: bool = True, decay: bool = True) -> RMT:
    """A small RMT for 32x32 images (about 0.5M parameters): 16x16, 8x8 and 4x4 tokens, widths 32/64/128,
    two blocks each, decomposed MaSA in the first two stages and full MaSA in the last (as RMT-T).

    Its parameter-matched ViT is ``vit_tiny(dim=96, depth=7, heads=3)`` (within 5%; the test checks 15%).
    ``decay=False`` is the same network without the spatial prior (every gamma 1).
    """
    return RMT(num_classes, in_chans, dims, depths, heads, decomposed, heads_ranges, init_value, mlp_ratio, lce, decay)
