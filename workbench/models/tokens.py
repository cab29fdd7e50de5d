"""A masked generator of residual-VQ token stacks, predicting each token or the collective embedding (ResGen).

Kim et al., *Efficient Generative Modeling with Residual Vector Quantization-Based Tokens* (ResGen,
arXiv:2412.10208). An image becomes a grid of ``g x g`` positions, each holding a stack of ``D`` residual-VQ
codes (``wb.create_model("rvq_autoencoder").encode``). Generation starts with every code masked and reveals them
coarse to fine; at every position the codes are known up to some depth (``known[b, i, j]`` in ``0..D``: the
first ``known`` levels are given, the rest masked).

Input at each position: the sum of the known levels' code vectors (the partial reconstruction) projected to the
model's width, plus a learned embedding of how many levels are known, plus a learned position; then a small
pre-norm transformer over the ``g * g`` positions. Output (``head``):

* ``"tokens"`` (predict each token, MaskGIT-style over the stack): logits ``[B, g, g, D, K]`` for every level;
  a sampler draws each masked level from its own distribution, so revealing many levels in one step draws them
  independently.
* ``"collective"`` (ResGen's idea): a diagonal Gaussian ``(mean, log_var)`` ``[B, g, g, dim]`` over the **sum of
  the masked levels' code vectors**; a sampler draws one vector and residual-quantizes it against the remaining
  codebooks, so all masked levels of a position come out of one draw, mutually consistent.

The codebooks are a frozen buffer (``load_codebooks``: the autoencoder's). The training task and the sampler are
:class:`workbench.dense.MaskedTokens` and :func:`workbench.dense.sample_tokens`.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint

TOKEN_HEADS = ("tokens", "collective")


class TokenStackGenerator(WorkbenchModel):
    def __init__(self, grid: int = 8, depth: int = 4, size: int = 64, dim: int = 16, width: int = 64,
                 layers: int = 2, heads: int = 4, head: str = "collective"):
        super().__init__()
        for name, v in (("grid", grid), ("depth", depth), ("size", size), ("dim", dim), ("width", width),
                        ("layers", layers), ("heads", heads)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if size < 2:
            raise ValueError("a codebook of size one codes nothing: size must be at least 2")
        if head not in TOKEN_HEADS:
            raise ValueError(f"head is one of {', '.join(TOKEN_HEADS)}, got {head!r}")
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.grid, self.depth, self.size, self.dim, self.head = grid, depth, size, dim, head
        self.register_buffer("codebooks", torch.zeros(depth, size, dim))
        self.codebooks_loaded = False
        self.embed = nn.Linear(dim, width)
        self.known_embed = nn.Embedding(depth + 1, width)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.hook_features = HookPoint()
        self.out = nn.Linear(width, depth * size if head == "tokens" else 2 * dim)

    def load_codebooks(self, codebooks: torch.Tensor) -> "TokenStackGenerator":
        """Copy the quantizer's codebooks ``[depth, size, dim]`` (e.g. ``autoencoder.quantizer.codebooks``)."""
        if tuple(codebooks.shape) != tuple(self.codebooks.shape):
            raise ValueError(f"codebooks must be [depth, size, dim] = {list(self.codebooks.shape)} (the model's "
                             f"depth, size and dim), got {list(codebooks.shape)}: create the model with the "
                             "autoencoder's depth, size and dim")
        self.codebooks.copy_(codebooks.detach())
        self.codebooks_loaded = True
        return self

    def check_tokens(self, codes: torch.Tensor, known: torch.Tensor) -> None:
        want = (self.grid, self.grid, self.depth)
        if not (isinstance(codes, torch.Tensor) and codes.ndim == 4 and tuple(codes.shape[1:]) == want):
            got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"codes must be [batch, {self.grid}, {self.grid}, {self.depth}] (grid, grid, depth of "
                             f"the model), got {got}")
        if codes.dtype != torch.long or int(codes.min()) < 0 or int(codes.max()) >= self.size:
            raise ValueError(f"codes are int64 ids in 0..{self.size - 1} (the codebook size)")
        if tuple(known.shape) != tuple(codes.shape[:3]) or int(known.min()) < 0 or int(known.max()) > self.depth:
            raise ValueError(f"known must be [batch, {self.grid}, {self.grid}] with values in 0..{self.depth} (how many "
                             "levels of each position are given)")

    def partial_sum(self, codes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """``sum_{d < known} C_d[codes_d]`` ``[B, g, g, dim]``: what the known levels reconstruct."""
        levels = torch.arange(self.depth, device=codes.device)
        vecs = self.codebooks[levels, codes]                                  # [B, g, g, D, dim]
        keep = (levels < known[..., None]).to(vecs.dtype)[..., None]           # [B, g, g, D, 1]
        return (vecs * keep).sum(-2)

    def forward(self, codes: torch.Tensor, known: torch.Tensor):
        self.check_tokens(codes, known)
        b, g = codes.shape[0], self.grid
        h = self.embed(self.partial_sum(codes, known)) + self.known_embed(known)  # [B, g, g, width]
        h = self.blocks(h.view(b, g * g, -1) + self.pos)
        h = self.hook_features(self.norm(h))
        y = self.out(h).view(b, g, g, -1)
        if self.head == "tokens":
            return y.view(b, g, g, self.depth, self.size)
        mean, log_var = y.split(self.dim, -1)
        return mean, log_var.clamp(-10.0, 6.0)


@register_model
def rvq_generator(grid: int = 8, depth: int = 4, size: int = 64, dim: int = 16, width: int = 64, layers: int = 2,
                  heads: int = 4, head: str = "collective") -> TokenStackGenerator:
    """A masked transformer over a grid of residual-VQ code stacks: ``head="tokens"`` predicts every level's code,
    ``head="collective"`` the sum of the masked levels' vectors (ResGen). Load the autoencoder's codebooks with
    ``load_codebooks`` before training."""
    return TokenStackGenerator(grid, depth, size, dim, width, layers, heads, head)
