"""A small Vision Transformer for 32x32 images.

Dosovitskiy et al., *An Image is Worth 16x16 Words*, ICLR 2021,
https://arxiv.org/abs/2010.11929. The image is cut into ``patch x patch``
patches, each linearly embedded; a class token and learned position embeddings
are added and ``depth`` pre-norm blocks follow::

    x = x + attn(ln1(x));  x = x + mlp(ln2(x))

For 32x32 inputs a patch of 4 gives 64 tokens. Hook points: ``hook_embed``,
``blocks.i`` (a block's output), ``blocks.i.hook_attn`` and ``blocks.i.hook_mlp``
(the two residual branches), ``hook_pool`` (the class token after the final norm).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, tokens, dim]
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # [batch, heads, tokens, dim/heads]
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
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
                 dim: int = 192, depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        if img_size % patch:
            raise ValueError(f"img_size ({img_size}) must be divisible by patch ({patch})")
        self.in_chans, self.num_classes, self.img_size = in_chans, num_classes, img_size
        self.patch_embed = nn.Conv2d(in_chans, dim, patch, stride=patch)
        n_tokens = (img_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens + 1, dim) * 0.02)
        self.hook_embed = HookPoint()
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.hook_pool = HookPoint()
        self.head = nn.Linear(dim, num_classes)
        self.hook_layers = tuple(f"blocks.{i}" for i in range(depth))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)               # [batch, tokens, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)  # [batch, 1+tokens, dim]
        x = self.hook_embed(x + self.pos_embed)
        x = self.blocks(x)
        return self.head(self.hook_pool(self.norm(x)[:, 0]))              # [batch, classes]


@register_model
def vit_tiny(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, patch: int = 4, dim: int = 192,
             depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, dropout: float = 0.0) -> VisionTransformer:
    """ViT for 32x32 images: patch 4, width 192, 6 blocks of 3 heads (about 1.8M parameters)."""
    return VisionTransformer(num_classes, in_chans, img_size, patch, dim, depth, heads, mlp_ratio, dropout)
