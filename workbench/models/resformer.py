"""ResFormer: a Vision Transformer that takes images of any size, with a global-local positional embedding.

Tian, Wu, Dai, Hu, Qiao & Jiang, *ResFormer: Scaling ViTs with Multi-Resolution Training*, CVPR 2023,
https://arxiv.org/abs/2212.00776 (section 3.3 for the embedding; the multi-resolution training with its
scale-consistency loss is :class:`workbench.attention.MultiResolution`).

A plain ViT learns one positional embedding per token of its training grid; an image of another size
has another grid, and the usual fix is to interpolate the learned table to it (``pos="interp"``).
ResFormer adds to that interpolated *global* embedding a *local* one computed from the tokens
themselves by a depthwise convolution on the token grid, so part of the position signal is relative and
comes the same way at every size (``pos="global_local"``)::

    t    = patch_embed(x)                                  # [batch, dim, H/p, W/p]
    pos  = interpolate(P, size=(H/p, W/p), mode)           # P: learned [dim, base/p, base/p]; identity at base
    t    = t + pos + dwconv_kxk(t)                         # "global_local"; "interp" drops the last term
    z    = blocks([cls + p_cls, flatten(t)])               # the class token has its own embedding p_cls
    out  = head(norm(z)[:, 0])

The depthwise convolution starts at zero (as in the authors' code), so at initialization both variants
compute the same function. Differences from the authors' code: their global embedding is a sine-cosine
table of normalized coordinates smoothed by a depthwise convolution, and their local embedding is a
depthwise convolution of the attention's values inside every block; here the global table is learned
(the brief's "interpolate the learned embedding", so that ``pos="interp"`` is exactly the baseline ViT)
and the local term acts once on the tokens before the blocks (the blocks are :mod:`.vit`'s ``Block``).

Hook points: ``hook_embed`` (tokens with their embeddings, ``[batch, 1 + tokens, dim]``), ``blocks.i``,
``blocks.i.hook_attn``, ``blocks.i.hook_mlp``, ``hook_pool`` (the class token after the final norm).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel, init_transformer_weights
from .hooks import HookPoint
from .vit import Block

__all__ = ["ResFormer", "POS_MODES", "INTERPOLATIONS", "resformer_tiny"]

POS_MODES = ("global_local", "interp")
INTERPOLATIONS = ("bicubic", "bilinear")


class ResFormer(WorkbenchModel):
    """A ViT for images of any size whose sides are multiples of ``patch`` (see the module docstring).

    Args:
        base_size: the side (pixels) the learned global embedding's grid is made for (the training size).
        patch: patch side; every input side must be a multiple of it.
        pos: ``"global_local"`` (ResFormer) or ``"interp"`` (the plain ViT, its table interpolated).
        interpolation: ``"bicubic"`` or ``"bilinear"``, how the global table reaches another grid.
        local_kernel: the depthwise convolution's (odd) kernel size.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, base_size: int = 32, patch: int = 4, dim: int = 192,
                 depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 pos: str = "global_local", interpolation: str = "bicubic", local_kernel: int = 3):
        super().__init__()
        if pos not in POS_MODES:
            raise ValueError(f"pos must be one of {', '.join(POS_MODES)}, got {pos!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        if patch < 1 or base_size < patch or base_size % patch:
            raise ValueError(f"base_size ({base_size}) must be a positive multiple of patch ({patch})")
        if local_kernel < 1 or local_kernel % 2 == 0:
            raise ValueError(f"local_kernel must be a positive odd integer (3, 5, ...), got {local_kernel}")
        if num_classes < 1 or in_chans < 1 or depth < 1:
            raise ValueError(f"num_classes, in_chans and depth must be positive, got {num_classes}, {in_chans}, {depth}")
        self.num_classes, self.in_chans, self.patch, self.base_size = num_classes, in_chans, patch, base_size
        self.pos, self.interpolation = pos, interpolation
        self.min_input_size = patch  # img_size stays None: any size whose sides are multiples of patch
        grid = base_size // patch
        self.patch_embed = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02)  # the global table, [1, dim, g, g]
        self.hook_embed = HookPoint()
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.hook_pool = HookPoint()
        self.head = nn.Linear(dim, num_classes)
        self.hook_layers = tuple(f"blocks.{i}" for i in range(depth))
        self.apply(init_transformer_weights)
        # built last, so that both variants draw the same initial weights for everything they share
        self.local_pos = None
        if pos == "global_local":
            self.local_pos = nn.Conv2d(dim, dim, local_kernel, padding=local_kernel // 2, groups=dim)
            nn.init.zeros_(self.local_pos.weight)
            nn.init.zeros_(self.local_pos.bias)

    def check_size(self, h: int, w: int) -> None:
        """Refuse a side that is not a positive multiple of the patch, with the nearest valid sizes."""
        p = self.patch
        for side in (h, w):
            if side < p or side % p:
                lo, hi = max(p, side // p * p), max(p, -(-side // p) * p)
                near = f"{lo}" if lo == hi else f"{lo} or {hi}"
                raise ValueError(f"{type(self).__name__} cuts images into {p}x{p} patches, so each side must be a "
                                 f"positive multiple of {p}; got {h}x{w}: resize the images to {near} pixels a side")

    def global_pos(self, gh: int, gw: int) -> torch.Tensor:
        """The global table at a ``gh x gw`` token grid (``[1, dim, gh, gw]``; the table itself at the base grid)."""
        return F.interpolate(self.pos_embed, size=(gh, gw), mode=self.interpolation, align_corners=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.check_size(*x.shape[-2:])
        t = self.patch_embed(x)                                                     # [batch, dim, H/p, W/p]
        pos = self.global_pos(*t.shape[-2:])
        t = t + pos + self.local_pos(t) if self.local_pos is not None else t + pos
        t = t.flatten(2).transpose(1, 2)                                            # [batch, tokens, dim]
        cls = (self.cls_token + self.cls_pos).expand(t.shape[0], -1, -1)
        z = self.hook_embed(torch.cat([cls, t], 1))                                 # [batch, 1+tokens, dim]
        z = self.blocks(z)
        return self.hook_pool(self.norm(z)[:, 0])                                   # [batch, dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))                                  # [batch, classes]


@register_model
def resformer_tiny(num_classes: int = 10, in_chans: int = 3, base_size: int = 32, patch: int = 4, dim: int = 192,
                   depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, dropout: float = 0.0,
                   pos: str = "global_local", interpolation: str = "bicubic", local_kernel: int = 3) -> ResFormer:
    """ResFormer with ``vit_tiny``'s defaults (patch 4, width 192, 6 blocks of 3 heads, base grid 8x8 at 32 px);
    ``pos="interp"`` is the plain ViT whose learned embedding is interpolated to other sizes."""
    return ResFormer(num_classes, in_chans, base_size, patch, dim, depth, heads, mlp_ratio, dropout, pos,
                     interpolation, local_kernel)
