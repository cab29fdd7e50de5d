"""HaloNet: blocked local self-attention in place of the 3x3 convolution.

Vaswani, Ramachandran, Srinivas, Parmar, Hechtman & Shlens, *Scaling Local Self-Attention for
Parameter Efficient Visual Backbones*, CVPR 2021, https://arxiv.org/abs/2103.12731.

The image is cut into non-overlapping ``block x block`` query blocks. Every query of a block
attends to the same keys: its block grown by ``halo`` pixels on every side, a window of
``w = block + 2 * halo`` pixels a side (section 3.1 of the paper). For a query at pixel ``i``
and a key at pixel ``j`` of its window::

    a_ij = softmax_j( s q_i . k_j + s q_i . (r_h[y_j - y_i] + r_w[x_j - x_i]) ),   out_i = sum_j a_ij v_j

with ``s = d ** -0.5`` and optional 2-D relative position embeddings ``r_h``, ``r_w`` (one row per
offset, ``2 * (block + halo) - 1`` offsets, shared by the heads). Window pixels outside the image
are padding: they are masked out of the softmax (weight exactly 0), not attended as zeros.

Layout of :func:`halo_attention`: ``q, k, v`` are ``[batch, heads, H, W, d]``. The key/value
neighbourhoods are gathered once with ``Tensor.unfold`` (a strided view of the padded image, then
one copy), and all blocks attend in one batched matrix product: the attention matrix has
``H * W * w^2`` entries per head instead of global attention's ``(H * W)^2``.

Model ``halonet``: a CIFAR ResNet (conv stem, three stages of residual blocks) whose two 3x3
convolutions per block are :class:`HaloAttention` layers; a stride-2 block attends at full
resolution and then average-pools 2x2 (as BoTNet and HaloNet's strided blocks keep the attention
local). Its default width (28) puts it within 10% of ResNet-20's 0.27M parameters. ``attn_stages`` picks
the stages that attend; the others keep ResNet-20's basic blocks (two 3x3 convolutions), as the paper's
convolution-attention hybrids put convolutions in the early, high-resolution stages, where attention is
slowest (its section 4, "convolution-attention hybrids": convolutions in the first stages of HaloNet H7
train about twice as fast at a few tenths of a point of ImageNet accuracy). ``attn_stages=(3,)`` at width 22
has 96% of ResNet-20's parameters; ``attn_stages=()`` *is* a CIFAR ResNet-20 of base width ``width``
(the same modules and parameter names). Hook points, in
forward order: ``stem``, ``layerS``, ``layerS.B``, ``layerS.B.attn1.hook_pattern`` (attention
weights ``[batch, heads, blocks, block^2, w^2]``), ``layerS.B.hook_relu1``,
``layerS.B.attn2.hook_pattern``, ``layerS.B.hook_branch``, ``layerS.B.hook_out``, ``hook_pool`` (the
convolution blocks have the same names without the ``attnN.hook_pattern``).

Helpers: :func:`window_to_image` puts one query's weights back on the image (what a query block attends
to), :func:`time_per_image` measures training and inference cost per image against a baseline in one process.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint
from .resnet_cifar import BasicBlock

__all__ = ["halo_attention", "halo_attention_naive", "window_to_image", "time_per_image", "HaloAttention", "HaloBlock",
           "HaloNet", "halonet"]


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, halo: int, rel_h, rel_w) -> None:
    if not all(isinstance(t, torch.Tensor) and t.ndim == 5 for t in (q, k, v)):
        raise ValueError("q, k and v must be tensors of shape [batch, heads, H, W, d]; "
                         "move the channels last with x.view(B, heads, d, H, W).permute(0, 1, 3, 4, 2)")
    if q.shape[:4] != k.shape[:4] or k.shape[:4] != v.shape[:4] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q, k, v must share [batch, heads, H, W] and q, k their last size; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be an integer >= 1 (the side of a query block), got {block!r}")
    if isinstance(halo, bool) or not isinstance(halo, int) or halo < 0:
        raise ValueError(f"halo must be an integer >= 0 (pixels added on every side of a block), got {halo!r}")
    h, w = q.shape[2:4]
    if h % block or w % block:
        ok = [b for b in range(1, min(h, w) + 1) if h % b == 0 and w % b == 0]
        raise ValueError(f"the {h}x{w} image is not divisible into {block}x{block} blocks; block sizes that divide "
                         f"it: {ok}; or pad/resize the image to sides that are multiples of {block}")
    if halo > max(h, w):
        raise ValueError(f"halo {halo} is larger than the {h}x{w} image: the extra pixels are all padding; "
                         f"halo = {max(h, w) - block} already lets every block see the whole image")
    if (rel_h is None) != (rel_w is None):
        raise ValueError("give both rel_h and rel_w (relative position embeddings) or neither")
    if rel_h is not None:
        want = (2 * (block + halo) - 1, q.shape[-1])
        if tuple(rel_h.shape) != want or tuple(rel_w.shape) != want:
            raise ValueError(f"rel_h and rel_w must have shape {want} (2 * (block + halo) - 1 offsets, q's size d), "
                             f"got {tuple(rel_h.shape)} and {tuple(rel_w.shape)}")


def _windows(x: torch.Tensor, block: int, halo: int) -> torch.Tensor:
    """[..., H, W, d] -> [..., blocks, w*w, d]: each block's (block + 2 halo)^2 neighbourhood, zero padded."""
    win = block + 2 * halo
    x = F.pad(x, (0, 0, halo, halo, halo, halo))                    # [..., H+2h, W+2h, d]
    x = x.unfold(-3, win, block).unfold(-3, win, block)               # [..., nh, nw, d, win, win] (a view)
    x = x.movedim(-3, -1)                                             # [..., nh, nw, win, win, d]
    return x.reshape(*x.shape[:-5], -1, win * win, x.shape[-1])       # one copy


def _edge_bias(size: int, block: int, halo: int, device, dtype) -> torch.Tensor:
    """[size / block, w]: 0 where a window row (or column) lies inside the image, -inf on the padding.
    The window's mask is separable: pixel (u, v) is inside iff row u and column v are."""
    inside = F.pad(torch.ones(1, 1, size, device=device, dtype=dtype), (halo, halo))[0, 0]
    inside = inside.unfold(0, block + 2 * halo, block)                # [size / block, w]
    return torch.zeros_like(inside).masked_fill_(inside == 0, float("-inf"))


def _window_bias(qb: torch.Tensor, rel_h: torch.Tensor | None, rel_w: torch.Tensor | None, h: int, w: int,
                 block: int, halo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits' additive terms that depend on a key's row only and on its column only:
    ``q . r_h[dy]`` plus -inf on padded rows, and likewise for columns; each ``[..., nh, nw, block^2, w]``
    for queries ``qb`` ``[..., nh, nw, block, block, d]``. Broadcasting both onto the content logits
    (one out-of-place add, one in place) avoids a separate ``[..., block^2, w^2]`` bias and mask: on a CPU
    the time goes to allocating and touching tensors of that size, not to the arithmetic."""
    win, nh, nw = block + 2 * halo, h // block, w // block
    mh = _edge_bias(h, block, halo, qb.device, qb.dtype)[:, None, None, None, :]   # [nh, 1, 1, 1, w]
    mw = _edge_bias(w, block, halo, qb.device, qb.dtype)[None, :, None, None, :]   # [1, nw, 1, 1, w]
    if rel_h is None:
        return mh.expand(nh, nw, block, block, win).flatten(2, 3), mw.expand(nh, nw, block, block, win).flatten(2, 3)
    i = torch.arange(block, device=qb.device)
    idx = torch.arange(win, device=qb.device)[None, :] - i[:, None] + block - 1   # [block, w]: dy + block + halo - 1
    lh = torch.einsum("...ijd,iud->...iju", qb, rel_h[idx]) + mh                 # [..., nh, nw, block, block, w]
    lw = torch.einsum("...ijd,jvd->...ijv", qb, rel_w[idx]) + mw
    return lh.flatten(-3, -2), lw.flatten(-3, -2)


def halo_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, halo: int,
                   rel_h: torch.Tensor | None = None, rel_w: torch.Tensor | None = None,
                   pattern_hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   return_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Blocked local self-attention (HaloNet, https://arxiv.org/abs/2103.12731, section 3.1).

    Args:
        q, k: ``[batch, heads, H, W, d]``; v: ``[batch, heads, H, W, dv]``.
        block: side of the non-overlapping query blocks; must divide H and W.
        halo: pixels added on every side of a block to form its key window (0: no overlap).
        rel_h, rel_w: optional relative position embeddings ``[2 * (block + halo) - 1, d]``,
            row ``dy + block + halo - 1`` for a key ``dy`` rows below the query.
        pattern_hook: applied to the attention weights before they weigh the values (a HookPoint).
        return_weights: also return the weights ``[batch, heads, blocks, block^2, w^2]``
            (blocks in row-major order, window pixels row-major, ``w = block + 2 * halo``).

    Returns:
        ``[batch, heads, H, W, dv]`` (and the weights).

    Cost: the weights take ``H W (block + 2 halo)^2`` floats per head. On a CPU the batched matrix
    products over many tiny per-block matrices and the passes over the weights dominate, so a Python
    loop over blocks (:func:`halo_attention_naive`), whose working set stays in cache, can be faster
    there (``benchmarks/bench_attention.py`` measures it); against global attention with a block mask
    this is several times faster.

    Example:
        >>> q = k = v = torch.randn(2, 4, 8, 8, 16)
        >>> halo_attention(q, k, v, block=4, halo=1).shape
        torch.Size([2, 4, 8, 8, 16])
    """
    _check(q, k, v, block, halo, rel_h, rel_w)
    bsz, heads, h, w, d = q.shape
    nh, nw = h // block, w // block
    qb = q.reshape(bsz, heads, nh, block, nw, block, d).transpose(3, 4) * d ** -0.5  # [B, heads, nh, nw, b, b, d]
    kw, vw = _windows(k, block, halo), _windows(v, block, halo)       # [B, heads, nb, w^2, d]
    logits = qb.reshape(bsz, heads, nh * nw, block * block, d) @ kw.transpose(-1, -2)  # [B, heads, nb, block^2, w^2]
    bh, bw = _window_bias(qb, rel_h, rel_w, h, w, block, halo)          # [.., nh, nw, block^2, w] each
    win = block + 2 * halo
    logits = logits.view(bsz, heads, nh, nw, block * block, win, win)
    recording = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, rel_h, rel_w))
    # out of place once under autograd (an in-place add on a view would cost a full copy in backward)
    logits = logits + bh[..., :, None] if recording else logits.add_(bh[..., :, None])
    logits = logits.add_(bw[..., None, :]).view(bsz, heads, nh * nw, block * block, win * win)
    attn = logits.softmax(-1)
    if pattern_hook is not None:
        attn = pattern_hook(attn)
    out = attn @ vw                                                    # [B, heads, nb, block^2, dv]
    out = out.view(bsz, heads, nh, nw, block, block, -1).permute(0, 1, 2, 4, 3, 5, 6).reshape(bsz, heads, h, w, -1)
    return (out, attn) if return_weights else out


def halo_attention_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, halo: int,
                         rel_h: torch.Tensor | None = None, rel_w: torch.Tensor | None = None) -> torch.Tensor:
    """The obvious reference for :func:`halo_attention`: a Python loop over the blocks, each attending to
    its neighbourhood *cropped* to the image (no padding, no mask), relative offsets from pixel coordinates."""
    _check(q, k, v, block, halo, rel_h, rel_w)
    h, w, d = q.shape[2], q.shape[3], q.shape[-1]
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype, device=v.device)
    for y0 in range(0, h, block):
        for x0 in range(0, w, block):
            ys = range(max(0, y0 - halo), min(h, y0 + block + halo))
            xs = range(max(0, x0 - halo), min(w, x0 + block + halo))
            qq = q[:, :, y0:y0 + block, x0:x0 + block].flatten(2, 3) * d ** -0.5     # [B, heads, block^2, d]
            kk = k[:, :, ys.start:ys.stop, xs.start:xs.stop].flatten(2, 3)          # [B, heads, n, d]
            vv = v[:, :, ys.start:ys.stop, xs.start:xs.stop].flatten(2, 3)
            logits = qq @ kk.transpose(-1, -2)
            if rel_h is not None:
                dev = q.device
                qy, qx = torch.meshgrid(torch.arange(y0, y0 + block, device=dev),
                                        torch.arange(x0, x0 + block, device=dev), indexing="ij")
                ky, kx = torch.meshgrid(torch.tensor(ys, device=dev), torch.tensor(xs, device=dev), indexing="ij")
                dy = ky.flatten()[None, :] - qy.flatten()[:, None] + block + halo - 1   # [block^2, n]
                dx = kx.flatten()[None, :] - qx.flatten()[:, None] + block + halo - 1
                logits = logits + (qq[..., None, :] * (rel_h[dy] + rel_w[dx])).sum(-1)
            o = logits.softmax(-1) @ vv                                                # [B, heads, block^2, dv]
            out[:, :, y0:y0 + block, x0:x0 + block] = o.view(*o.shape[:2], block, block, -1)
    return out


def window_to_image(weights: torch.Tensor, h: int, w: int, block: int, halo: int, query: tuple[int, int]) -> torch.Tensor:
    """The attention weights of one query pixel, put back on the image: ``[..., H, W]``, zero outside its window.

    Args:
        weights: :func:`halo_attention`'s weights ``[..., blocks, block^2, (block + 2 halo)^2]`` (what a layer's
            ``hook_pattern`` sees), blocks row-major over an ``h x w`` image.
        query: the query pixel ``(y, x)``.

    Pixels of the window outside the image (padding) carry weight 0 and are dropped; every image pixel outside
    the window gets 0. With a halo that covers the image the result is a row of global attention's matrix.
    """
    win = block + 2 * halo
    if weights.ndim < 3 or tuple(weights.shape[-3:]) != ((h // block) * (w // block), block * block, win * win) \
            or h % block or w % block:
        raise ValueError(f"weights must be [..., blocks, block^2, (block + 2 halo)^2] = [..., {(h // block) * (w // block)}, "
                         f"{block * block}, {win * win}] for a {h}x{w} image with block {block} and halo {halo} "
                         f"(block must divide the sides); got {tuple(weights.shape)}")
    y, x = query
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"query {query} lies outside the {h}x{w} image: give (y, x) with 0 <= y < {h}, 0 <= x < {w}")
    by, bx = y // block, x // block
    row = weights[..., by * (w // block) + bx, (y % block) * block + x % block, :]          # [..., win^2]
    row = row.reshape(*row.shape[:-1], win, win)
    full = row.new_zeros(*row.shape[:-2], h + 2 * halo, w + 2 * halo)                     # the padded image
    y0, x0 = by * block, bx * block                                                        # window corner, padded coords
    full[..., y0:y0 + win, x0:x0 + win] = row
    return full[..., halo:halo + h, halo:halo + w]


def time_per_image(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, repeats: int = 3):
    """Seconds per image of each model, for training (forward, cross-entropy, backward) and inference
    (eval mode, no autograd) on the batch ``(x, y)``, and each relative to the first model.

    The models take turns within each round after a warm-up round, and the best round counts (as
    ``benchmarks/_timing.py``), so a busier stretch of a shared machine hits all of them alike: compare the
    ratios, not the absolute times. The models are left in eval mode with no gradients; their batch-norm
    statistics move as in training. Returns a DataFrame with columns ``model``, ``mode`` (``"train"``,
    ``"inference"``), ``seconds_per_image``, ``relative`` (to the first model, same mode).
    """
    import time

    import pandas as pd

    if not models or isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"time_per_image needs a non-empty dict of models and an integer repeats >= 1, "
                         f"got {len(models)} model(s) and repeats={repeats!r}")
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"x and y must hold the same non-zero number of images, got {x.shape[0]} and {y.shape[0]}")
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.device.type == "cuda" else (lambda: None)

    def train(m: nn.Module) -> None:
        m.train()
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()

    def infer(m: nn.Module) -> None:
        m.eval()
        with torch.no_grad():
            m(x)

    best = {(n, mode): float("inf") for n in models for mode in ("train", "inference")}
    for r in range(repeats + 1):
        for mode, fn in (("train", train), ("inference", infer)):
            for n, m in models.items():
                sync()
                t = time.perf_counter()
                fn(m)
                sync()
                if r:
                    best[n, mode] = min(best[n, mode], time.perf_counter() - t)
    for m in models.values():
        m.zero_grad(set_to_none=True)
        m.eval()
    first = next(iter(models))
    return pd.DataFrame([dict(model=n, mode=mode, seconds_per_image=t / x.shape[0], relative=t / best[first, mode])
                         for (n, mode), t in best.items()])


class HaloAttention(nn.Module):
    """HaloNet's attention layer: 1x1 projections to q, k, v, :func:`halo_attention`, heads concatenated.

    Args:
        dim_in, dim_out: channels in and out (``dim_out`` split among the heads for the values).
        heads: attention heads; must divide ``dim_out``.
        block, halo: query block side and halo width (the paper's ImageNet models: 8 and 3).
        dim_head: query/key size per head (default ``dim_out // heads``).
        stride: 1, or 2 to average-pool 2x2 after attending (for downsampling).
        rel_pos: learn 2-D relative position embeddings (as the paper).

    Input ``[batch, dim_in, H, W]``, output ``[batch, dim_out, H / stride, W / stride]``. ``hook_pattern``
    sees the attention weights ``[batch, heads, blocks, block^2, (block + 2 halo)^2]``.
    """

    def __init__(self, dim_in: int, dim_out: int, heads: int = 4, block: int = 4, halo: int = 2,
                 dim_head: int | None = None, stride: int = 1, rel_pos: bool = True):
        super().__init__()
        if heads < 1 or dim_out % heads:
            ok = [n for n in range(1, dim_out + 1) if dim_out % n == 0]
            raise ValueError(f"dim_out ({dim_out}) must be divisible by heads ({heads}); heads that divide it: {ok}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be an integer >= 1, got {block!r}")
        if not isinstance(halo, int) or halo < 0:
            raise ValueError(f"halo must be an integer >= 0, got {halo!r}")
        self.heads, self.block, self.halo, self.stride = heads, block, halo, stride
        self.dim_head = dim_head or dim_out // heads
        self.qk = nn.Conv2d(dim_in, 2 * heads * self.dim_head, 1, bias=False)
        self.v = nn.Conv2d(dim_in, dim_out, 1, bias=False)
        n_rel = 2 * (block + halo) - 1
        self.rel_h = nn.Parameter(torch.randn(n_rel, self.dim_head) * self.dim_head ** -0.5) if rel_pos else None
        self.rel_w = nn.Parameter(torch.randn(n_rel, self.dim_head) * self.dim_head ** -0.5) if rel_pos else None
        self.hook_pattern = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, dim_in, H, W]
        b, _, h, w = x.shape
        q, k = self.qk(x).view(b, 2, self.heads, self.dim_head, h, w).permute(1, 0, 2, 4, 5, 3)  # [B, heads, H, W, dh]
        v = self.v(x).view(b, self.heads, -1, h, w).permute(0, 1, 3, 4, 2)                      # [B, heads, H, W, dv]
        out = halo_attention(q, k, v, self.block, self.halo, self.rel_h, self.rel_w, pattern_hook=self.hook_pattern)
        out = out.permute(0, 1, 4, 2, 3).reshape(b, -1, h, w)                                   # [B, dim_out, H, W]
        return F.avg_pool2d(out, 2) if self.stride == 2 else out


class HaloBlock(nn.Module):
    """A CIFAR basic block with both 3x3 convolutions replaced by :class:`HaloAttention`::

        out = relu(bn2(attn2(relu(bn1(attn1(x))))) + shortcut(x))
    """

    def __init__(self, cin: int, cout: int, stride: int, heads: int, block: int, halo: int):
        super().__init__()
        # registered in forward order, so that hook_points lists them so
        self.attn1 = HaloAttention(cin, cout, heads, block, halo, stride=stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.hook_relu1 = HookPoint()
        self.attn2 = HaloAttention(cout, cout, heads, block, halo)
        self.bn2 = nn.BatchNorm2d(cout)
        self.hook_branch = HookPoint()
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        out = self.hook_relu1(F.relu(self.bn1(self.attn1(x))))   # [batch, cout, h/stride, w/stride]
        out = self.hook_branch(self.bn2(self.attn2(out)))
        return self.hook_out(F.relu(out + (x if self.shortcut is None else self.shortcut(x))))


class HaloNet(WorkbenchModel):
    """CIFAR-sized HaloNet; see the module docstring. Image sides must be multiples of ``4 * block``."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 28,
                 depths: tuple[int, int, int] = (3, 3, 3), block: int = 4, halo: int = 2, heads: int = 4,
                 attn_stages: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        if width < 1 or num_classes < 1 or in_chans < 1:
            raise ValueError(f"width, num_classes and in_chans must be positive, got {width}, {num_classes}, "
                             f"{in_chans}")
        if len(depths) != 3 or any(int(n) < 1 for n in depths):
            raise ValueError(f"depths must be three block counts >= 1 (one per stage), got {depths}")
        attn_stages = tuple(attn_stages)
        if any(isinstance(s, bool) or s not in (1, 2, 3) for s in attn_stages) or len(set(attn_stages)) < len(attn_stages):
            raise ValueError(f"attn_stages must name distinct stages among 1, 2, 3 (the ones that attend; the others "
                             f"use 3x3 convolutions), e.g. (1, 2, 3), (2, 3), (3,) or (); got {attn_stages!r}")
        for s in sorted(attn_stages):
            c = width * 2 ** (s - 1)
            if c % heads:
                what = f"width ({width})" if s == 1 else f"stage {s}'s channels ({c} = {2 ** (s - 1)} x width)"
                raise ValueError(f"{what} must be divisible by heads ({heads}); heads that divide it: "
                                 f"{[n for n in range(1, c + 1) if c % n == 0]}")
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be an integer >= 1, got {block!r}")
        self.in_chans, self.num_classes, self.block = in_chans, num_classes, block
        self.attn_stages = tuple(sorted(attn_stages))
        # the last attention stage (stride 2^(s-1)) needs at least one block; convolutions alone need nothing
        self.min_input_size = 2 ** (max(attn_stages) - 1) * block if attn_stages else None
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        stages, cin = [], width
        for s, (cout, n) in enumerate(zip((width, 2 * width, 4 * width), depths)):
            blocks = []
            for b in range(int(n)):
                ci, stride = (cin if b == 0 else cout), (2 if (s and b == 0) else 1)
                blocks.append(HaloBlock(ci, cout, stride, heads, block, halo) if s + 1 in attn_stages
                              else BasicBlock(ci, cout, stride))
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.hook_pool = HookPoint()
        self.fc = nn.Linear(cin, num_classes)
        self.hook_layers = ("stem",) + tuple(
            name for s, n in zip((1, 2, 3), depths)
            for name in [f"layer{s}"] + [f"layer{s}.{b}" for b in range(int(n))])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        m = self.min_input_size
        if m is not None and (x.shape[-2] % m or x.shape[-1] % m):
            st = m // self.block
            raise ValueError(f"HaloNet with block {self.block} needs image sides that are multiples of {m} "
                             f"(stride {st} of its last attention stage x block {self.block}: {m}, {2 * m}, "
                             f"{3 * m}, ...), "
                             f"got {x.shape[-2]}x{x.shape[-1]}; "
                             f"pad or resize the images, or create the model with a block that divides (side / 4)")
        x = self.stem(x)          # [batch, W, h, w]
        x = self.layer1(x)        # [batch, W, h, w]
        x = self.layer2(x)        # [batch, 2W, h/2, w/2]
        x = self.layer3(x)        # [batch, 4W, h/4, w/4]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


@register_model
def halonet(num_classes: int = 10, in_chans: int = 3, width: int = 28, depths: tuple[int, int, int] = (3, 3, 3),
            block: int = 4, halo: int = 2, heads: int = 4, attn_stages: tuple[int, ...] = (1, 2, 3)) -> HaloNet:
    """CIFAR HaloNet: ResNet-20's layout with local self-attention for the 3x3 convolutions of the stages in
    ``attn_stages`` (the others keep ResNet-20's basic blocks: the paper's convolution-attention hybrids).
    The defaults (width 28, block 4, halo 2, 4 heads, attention everywhere) have about ResNet-20's parameter
    count; so does ``attn_stages=(3,)`` at ``width=22``. ``attn_stages=()`` is a CIFAR ResNet-20 of base width
    ``width``, with ResNet-20's parameter names."""
    return HaloNet(num_classes, in_chans, width, tuple(depths), block, halo, heads, tuple(attn_stages))
