"""A small Vision Transformer for 32x32 images.

Dosovitskiy et al., *An Image is Worth 16x16 Words*, ICLR 2021,
https://arxiv.org/abs/2010.11929. The image is cut into ``patch x patch``
patches, each linearly embedded; a class token and learned position embeddings
are added and ``depth`` pre-norm blocks follow::

    x = x + attn(ln1(x));  x = x + mlp(ln2(x))

For 32x32 inputs a patch of 4 gives 64 tokens. Hook points: ``hook_embed``,
``blocks.i`` (a block's output), ``blocks.i.hook_attn`` and ``blocks.i.hook_mlp``
(the two residual branches), ``blocks.i.attn.hook_pattern`` (the attention weights
``[batch, heads, 1+T, 1+T]``), ``hook_pool`` (the class token after the final norm).

**Spatial masks** (keyword-only ``attn_mask``), each acting on the patch-to-patch part of the
attention matrix (the class token's row and column are left alone):

* ``"none"``: plain attention through ``F.scaled_dot_product_attention`` (the default).
* ``"manhattan"``: RMT's fixed decay (Fan et al., https://arxiv.org/abs/2309.11523), one
  ``gamma_h`` per head (:func:`workbench.models.retention.head_gammas`), multiplied into the
  softmax weights *after* normalising, as the paper writes it: ``softmax(S) * D``.
* ``"elm"``: paper 32's element-wise learnable mask (Li & Zhang, https://arxiv.org/abs/2309.05375),
  one value per (head, query patch, key patch), initialized to 1 (``heads * T * T`` parameters a block).
* ``"gmm"``: paper 32's Gaussian mixture mask, ``sum_k alpha_k exp(-d^2 / (2 sigma_k^2))`` of the
  Euclidean patch distance ``d`` with ``gmm_kernels`` Gaussians (5, the authors' default) per head and
  two learnable numbers each (``2 * K * heads`` parameters a block). Initialized to ``alpha_k = 1/K``
  and widths ``sigma_k = 2^(k-1)`` patches (0.5 to 8: our choice, deterministic; the authors draw
  ``alpha ~ N(0, 2^2)``, ``sigma ~ N(10, 10^2)``).

ELM and GMM multiply the scaled scores *before* the softmax, ``softmax(S * M)``, as the authors'
released code does. The weights are computed explicitly only when a mask is used or a hook is
attached to ``hook_pattern``; otherwise the fast fused path runs, bit-identical to the unmasked model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel, init_transformer_weights
from .hooks import HookPoint
from .retention import gaussian_mixture_mask, head_gammas, manhattan_decay

__all__ = ["ATTN_MASKS", "Attention", "Block", "VisionTransformer", "vit_tiny"]

ATTN_MASKS = ("none", "manhattan", "elm", "gmm")


def _check_attn_mask(attn_mask: str, grid: int | None) -> None:
    if attn_mask not in ATTN_MASKS:
        raise ValueError(f"unknown attn_mask {attn_mask!r}; valid values: {', '.join(map(repr, ATTN_MASKS))}")
    if attn_mask != "none" and (isinstance(grid, bool) or not isinstance(grid, int) or grid < 1):
        raise ValueError(f"attn_mask={attn_mask!r} needs grid, the number of patches per side (img_size // patch), "
                         f"got {grid!r}")


class Attention(nn.Module):
    """Multi-head self-attention over ``[batch, 1 + grid^2, dim]`` tokens (class token first) with an
    optional spatial mask on the patch-to-patch weights (see the module docstring)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, *, attn_mask: str = "none",
                 grid: int | None = None, gmm_kernels: int = 5):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        _check_attn_mask(attn_mask, grid)
        self.heads, self.dropout, self.attn_mask, self.grid = heads, dropout, attn_mask, grid
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.hook_pattern = HookPoint()
        t = (grid or 0) ** 2
        if attn_mask == "manhattan":
            self.register_buffer("gammas", head_gammas(heads), persistent=False)
        elif attn_mask == "elm":
            self.elm = nn.Parameter(torch.ones(heads, t, t))
        elif attn_mask == "gmm":
            if isinstance(gmm_kernels, bool) or not isinstance(gmm_kernels, int) or gmm_kernels < 1:
                raise ValueError(f"gmm_kernels must be a positive integer (the paper uses 5), got {gmm_kernels!r}")
            self.gmm_alpha = nn.Parameter(torch.full((heads, gmm_kernels), 1.0 / gmm_kernels))
            self.gmm_sigma = nn.Parameter(2.0 ** (torch.arange(gmm_kernels, dtype=torch.float) - 1).repeat(heads, 1))

    def patch_mask(self) -> torch.Tensor:
        """The mask on the patch-to-patch weights, ``[heads, T, T]`` (``T = grid^2``)."""
        if self.attn_mask == "manhattan":
            return manhattan_decay(self.grid, self.grid, self.gammas)
        if self.attn_mask == "elm":
            return self.elm
        if self.attn_mask == "gmm":
            return gaussian_mixture_mask(self.grid, self.grid, self.gmm_alpha, self.gmm_sigma)
        raise ValueError("attn_mask='none' has no mask")

    def _full_mask(self, t: int, like: torch.Tensor) -> torch.Tensor:
        if t != self.grid ** 2 + 1:
            raise ValueError(f"attention with attn_mask={self.attn_mask!r} was built for a {self.grid}x{self.grid} "
                             f"patch grid plus a class token ({self.grid ** 2 + 1} tokens), got {t} tokens; build it "
                             f"with grid = img_size // patch of the input")
        m = self.patch_mask().to(like)
        return F.pad(m, (1, 0, 1, 0), value=1.0)                   # [heads, 1+T, 1+T]: class token unmasked

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, tokens, dim]
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        hooked = self.hook_pattern._forward_hooks or self.hook_pattern._forward_pre_hooks
        if self.attn_mask == "none" and not hooked:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # [batch, heads, tokens, dim/heads]
        else:
            s = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5    # [batch, heads, tokens, tokens]
            if self.attn_mask in ("elm", "gmm"):
                s = s * self._full_mask(t, s)
            a = s.softmax(-1)
            if self.attn_mask == "manhattan":
                a = a * self._full_mask(t, a)
            a = F.dropout(self.hook_pattern(a), p, self.training)
            out = a @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, *, attn_mask: str = "none",
                 grid: int | None = None, gmm_kernels: int = 5):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout, attn_mask=attn_mask, grid=grid, gmm_kernels=gmm_kernels)
        self.ln2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.hook_attn = HookPoint()
        self.hook_mlp = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.hook_attn(self.attn(self.ln1(x)))
        return x + self.hook_mlp(self.mlp(self.ln2(x)))


class VisionTransformer(WorkbenchModel):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, img_size: int = 32, patch: int = 4,
                 dim: int = 192, depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, dropout: float = 0.0, *,
                 attn_mask: str = "none", gmm_kernels: int = 5):
        super().__init__()
        if img_size % patch:
            raise ValueError(f"img_size ({img_size}) must be divisible by patch ({patch})")
        _check_attn_mask(attn_mask, img_size // patch)
        self.in_chans, self.num_classes, self.img_size = in_chans, num_classes, img_size
        self.patch_embed = nn.Conv2d(in_chans, dim, patch, stride=patch)
        n_tokens = (img_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens + 1, dim) * 0.02)
        self.hook_embed = HookPoint()
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, dropout, attn_mask=attn_mask, grid=img_size // patch,
                                            gmm_kernels=gmm_kernels) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.hook_pool = HookPoint()
        self.head = nn.Linear(dim, num_classes)
        self.hook_layers = tuple(f"blocks.{i}" for i in range(depth))
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)               # [batch, tokens, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)  # [batch, 1+tokens, dim]
        x = self.hook_embed(x + self.pos_embed)
        x = self.blocks(x)
        return self.head(self.hook_pool(self.norm(x)[:, 0]))              # [batch, classes]


@register_model
def vit_tiny(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, patch: int = 4, dim: int = 192,
             depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, dropout: float = 0.0, *,
             attn_mask: str = "none", gmm_kernels: int = 5) -> VisionTransformer:
    """ViT for 32x32 images: patch 4, width 192, 6 blocks of 3 heads (about 1.8M parameters).

    ``attn_mask``: ``"none"``, ``"manhattan"`` (RMT's decay), ``"elm"`` or ``"gmm"`` (paper 32's masks,
    ``gmm_kernels`` Gaussians); see the module docstring.
    """
    return VisionTransformer(num_classes, in_chans, img_size, patch, dim, depth, heads, mlp_ratio, dropout,
                             attn_mask=attn_mask, gmm_kernels=gmm_kernels)
