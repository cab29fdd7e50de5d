"""Residual vector quantization (RVQ): a vector coded by a stack of codebooks, each quantizing what the ones
before it left over.

For ``x`` and codebooks ``C_1 .. C_D``: ``r_0 = x``; at depth ``d`` the code ``k_d = argmin_k ||r_{d-1} - C_d[k]||``
and ``r_d = r_{d-1} - C_d[k_d]``; the reconstruction is ``sum_d C_d[k_d]``. One level is plain vector
quantization (VQ-VAE, van den Oord et al., arXiv:1711.00937); ResGen (Kim et al., arXiv:2412.10208) generates
such stacked codes depth by depth. ``vector-quantize-pytorch``'s ``ResidualVQ`` is the reference: with the same
codebooks, :func:`residual_quantize` gives its codes and reconstructions (tested).

:class:`ResidualVQ` is the trainable layer: codebooks updated by exponential moving averages of the vectors
assigned to each code (the VQ-VAE-2 update), a straight-through gradient to the encoder, and the commitment
loss ``beta ||x - sg(q)||^2`` returned beside the codes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["residual_quantize", "ResidualVQ"]


def residual_quantize(x: torch.Tensor, codebooks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``[..., D]`` and the reconstruction ``[..., dim]`` of vectors ``x`` ``[..., dim]`` under codebooks
    ``[D, K, dim]`` (nearest code in Euclidean distance at each depth, on the running residual)."""
    if codebooks.ndim != 3 or codebooks.shape[-1] != x.shape[-1]:
        raise ValueError(f"codebooks must be [depth, size, dim] with dim = {x.shape[-1]} (the vectors' last axis), "
                         f"got {tuple(codebooks.shape)}")
    flat = x.reshape(-1, x.shape[-1])
    residual, recon, codes = flat, torch.zeros_like(flat), []
    for book in codebooks:
        d = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(1)[None])  # [n, K]
        k = d.argmin(1)
        chosen = book[k]
        codes.append(k)
        recon = recon + chosen
        residual = residual - chosen
    return torch.stack(codes, -1).view(*x.shape[:-1], len(codebooks)), recon.view_as(x)


class ResidualVQ(nn.Module):
    """A trainable residual quantizer of ``depth`` codebooks of ``size`` codes of width ``dim``.

    ``forward(x)`` (``x``: ``[..., dim]``) returns ``(quantized, codes, commitment_loss)``: ``quantized`` with a
    straight-through gradient to ``x``; in training mode the codebooks move towards the mean of the residuals
    assigned to each code (decay ``decay``, Laplace-smoothed counts).
    """

    def __init__(self, dim: int, depth: int = 4, size: int = 256, decay: float = 0.99, beta: float = 0.25,
                 seed: int = 0):
        super().__init__()
        for name, v in (("dim", dim), ("depth", depth), ("size", size)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if size == 1:
            raise ValueError("a codebook of size one gives every vector code 0 and carries no information: use "
                             "size >= 2 (codes per level; e.g. 256)")
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        g = torch.Generator().manual_seed(seed)
        books = torch.randn(depth, size, dim, generator=g) / (torch.arange(depth) + 1.0).view(-1, 1, 1)
        self.register_buffer("codebooks", books)
        self.register_buffer("counts", torch.ones(depth, size))
        self.register_buffer("sums", books.clone())
        self.decay, self.beta = decay, beta

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        codes, q = residual_quantize(x.detach().float(), self.codebooks)
        if self.training:
            self._update(x.detach().float(), codes)
        commit = self.beta * F.mse_loss(x.float(), q.detach())
        return x + (q - x).detach(), codes, commit

    @torch.no_grad()
    def _update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        flat, c = x.reshape(-1, x.shape[-1]), codes.reshape(-1, codes.shape[-1])
        residual = flat
        for d in range(self.codebooks.shape[0]):
            onehot = F.one_hot(c[:, d], self.codebooks.shape[1]).float()        # [n, K]
            self.counts[d].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
            self.sums[d].mul_(self.decay).add_(onehot.T @ residual, alpha=1 - self.decay)
            n = self.counts[d].sum()
            smoothed = (self.counts[d] + 1e-5) / (n + self.codebooks.shape[1] * 1e-5) * n
            self.codebooks[d].copy_(self.sums[d] / smoothed[:, None])
            residual = residual - self.codebooks[d][c[:, d]]
