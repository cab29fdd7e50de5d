"""Generating residual-VQ token stacks: depth-wise masking, the masked-token task for ``wb.fit``, and the sampler.

ResGen (Kim et al., arXiv:2412.10208) in miniature, on the code stacks of ``wb.create_model("rvq_autoencoder")``
and the generator ``wb.create_model("rvq_generator")`` (see :mod:`workbench.models.tokens`).

**Depth-wise order.** The ``N = g * g * D`` codes of an image are revealed level by level: every position's
first level (positions in a random order), then every position's second, and so on. After ``r`` codes are
revealed, each position knows its first ``r // (g g)`` levels, and the first ``r % (g g)`` positions of the
order one more (:func:`depthwise_known`). Training masks the last ``n`` codes of that order with ``n`` drawn
from MaskGIT's cosine schedule (``n = ceil(cos(pi u / 2) N)``, ``u ~ U(0, 1)``); sampling reveals them in the
same order in ``steps`` calls of the model, ``N cos(pi s / (2 steps))`` codes still masked after step ``s``.

**Two heads** (:class:`MaskedTokens` trains either):

* ``"tokens"``: cross-entropy of every masked code; the sampler draws each newly revealed code from its own
  distribution (at ``temperature``), independently of the others revealed in the same step.
* ``"collective"``: the Gaussian negative log-likelihood of the sum of the masked levels' code vectors; the
  sampler draws one vector per position and residual-quantizes it with the codebooks of the levels still
  masked there, so the codes revealed together come from one draw.

Masks and draws are pure functions of ``(seed, step)``: a resumed run trains what the uninterrupted one did.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import TensorLoader, random_stream
from ..models.rvq import residual_quantize
from ..train.tasks import StepRandomness, Task

__all__ = ["TokenData", "TokenLoader", "encode_tokens", "depthwise_known", "MaskedTokens", "sample_tokens",
           "reveal_schedule"]

_MASK_STREAM = 0x70C


@dataclass
class TokenData:
    """Code stacks ``codes`` ``[N, g, g, D]`` (int64) of ``N`` images (``encode_tokens`` makes them)."""

    codes: torch.Tensor
    name: str = "tokens"
    split: str = "train"

    def __post_init__(self) -> None:
        c = self.codes
        if not (isinstance(c, torch.Tensor) and c.ndim == 4 and c.dtype == torch.long and c.shape[1] == c.shape[2]):
            got = f"{tuple(c.shape)} {c.dtype}" if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"codes must be int64 code stacks [N, g, g, depth] (autoencoder.encode), got {got}")

    def __len__(self) -> int:
        return len(self.codes)

    def to(self, device: torch.device | str) -> "TokenData":
        return TokenData(self.codes.to(device), self.name, self.split)


class TokenLoader(TensorLoader):
    """Batches ``(codes [B, g, g, D],)`` of a :class:`TokenData`, shuffled per epoch from ``seed``."""

    data_type, made_by = TokenData, "wb.dense.encode_tokens(autoencoder, images)"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor]:
        return (self.dataset.codes[idx],)


@torch.no_grad()
def encode_tokens(autoencoder: nn.Module, images: Any, batch_size: int = 500, split: str = "train") -> TokenData:
    """The code stacks of ``images`` (an ``ImageDataset``, normalized as the autoencoder was trained, or a float
    tensor ``[N, C, H, W]``) under a trained ``rvq_autoencoder``."""
    if not hasattr(autoencoder, "encode"):
        raise ValueError("encode_tokens needs a residual-VQ autoencoder: wb.create_model('rvq_autoencoder'), trained")
    x = images if isinstance(images, torch.Tensor) else images.normalize(images.images)
    was = autoencoder.training
    autoencoder.eval()
    try:
        dev = next(autoencoder.parameters()).device
        codes = torch.cat([autoencoder.encode(x[i:i + batch_size].to(dev)).cpu()
                           for i in range(0, len(x), batch_size)])
    finally:
        autoencoder.train(was)
    return TokenData(codes, getattr(images, "name", "tokens"), split)


def depthwise_known(masked: torch.Tensor, order: torch.Tensor, depth: int) -> torch.Tensor:
    """How many levels each position knows, ``[B, g, g]``, when the last ``masked[b]`` codes of the depth-wise
    order are masked; ``order`` ``[B, g * g]`` is each image's position order (a permutation)."""
    b, p = order.shape
    g = math.isqrt(p)
    if g * g != p:
        raise ValueError(f"order must list the g * g positions of a square grid, got {p}")
    total = p * depth
    if int(masked.min()) < 0 or int(masked.max()) > total:
        raise ValueError(f"masked counts lie in 0..{total} (grid {g}x{g}, depth {depth})")
    revealed = total - masked                                                # [B]
    full, extra = revealed // p, revealed % p
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(p, device=order.device).expand(b, p))  # rank of each position
    known = full[:, None] + (rank < extra[:, None]).long()
    return known.view(b, g, g)


def reveal_schedule(total: int, steps: int) -> list[int]:
    """Codes still masked after each of ``steps`` steps (MaskGIT's cosine), from ``total`` down to 0; every
    step reveals at least one code (so ``steps`` may not exceed ``total``)."""
    if not (isinstance(steps, int) and 1 <= steps <= total):
        raise ValueError(f"steps must lie in 1..{total} (one code revealed per step at least), got {steps!r}")
    left = [min(total - s, math.floor(total * math.cos(math.pi / 2 * s / steps))) for s in range(1, steps + 1)]
    left[-1] = 0
    for i in range(1, steps):
        left[i] = min(left[i], left[i - 1] - 1)
    return left


class MaskedTokens(StepRandomness, Task):
    """Masked code-stack modelling for ``rvq_generator`` (``head="tokens"`` or ``"collective"``, see the module
    docstring). A batch is ``(codes,)`` from a :class:`TokenLoader`. Metric ``loss``: per masked code
    (cross-entropy, nats) or per masked position and dimension (Gaussian NLL, nats)."""

    metric_names = ("loss",)

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not hasattr(model, "partial_sum"):
            raise ValueError("MaskedTokens trains a code-stack generator: wb.create_model('rvq_generator', ...)")
        if not getattr(model, "codebooks_loaded", False):
            raise ValueError("load the autoencoder's codebooks first: model.load_codebooks(autoencoder.quantizer."
                             "codebooks)")
        if not isinstance(dataset, TokenData):
            raise ValueError(f"MaskedTokens trains on code stacks: pass a wb.dense.TokenLoader of "
                             f"wb.dense.encode_tokens(...), got {type(dataset).__name__}")
        want = (model.grid, model.grid, model.depth)
        if tuple(dataset.codes.shape[1:]) != want:
            raise ValueError(f"the code stacks are {list(dataset.codes.shape[1:])}, the model was built for "
                             f"{list(want)}: create it with grid= and depth= of the autoencoder's codes")

    def draw_known(self, codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, g, _, d = codes.shape
        total = g * g * d
        u = torch.rand(b, generator=gen)
        masked = torch.ceil(torch.cos(math.pi / 2 * u) * total).long().clamp(1, total)
        order = torch.rand(b, g * g, generator=gen).argsort(1)
        return depthwise_known(masked, order, d).to(codes.device)

    def forward(self, model: nn.Module, batch: Any, state: Any = None):
        codes = batch[0]
        known = self.draw_known(codes, self.generator(state, _MASK_STREAM))
        return model(codes, known), known, model

    def loss(self, outputs, batch: Any, state: Any = None) -> torch.Tensor:
        out, known, model = outputs
        codes = batch[0]
        levels = torch.arange(codes.shape[-1], device=codes.device)
        masked = levels >= known[..., None]                                     # [B, g, g, D]
        if model.head == "tokens":
            return F.cross_entropy(out[masked].float(), codes[masked])
        mean, log_var = out
        full = torch.full_like(known, codes.shape[-1])
        target = model.partial_sum(codes, full) - model.partial_sum(codes, known)   # the masked levels' sum
        pos = masked.any(-1)                                                    # positions with something masked
        nll = 0.5 * (log_var + (target - mean).pow(2) * torch.exp(-log_var) + math.log(2 * math.pi))
        return nll[pos].float().mean()

    def metrics(self, outputs, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[0])
        return {"loss": loss.detach().double() * n}, n



@torch.no_grad()
def sample_tokens(model: nn.Module, n: int, steps: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``n`` code stacks ``[n, g, g, D]`` from a trained ``rvq_generator`` in ``steps`` calls of the model (the
    depth-wise order and the cosine schedule of the module docstring); decode them with the autoencoder's
    ``decode_codes``. ``temperature`` scales the logits' inverse (tokens) or the standard deviation (collective);
    0 takes the most likely code or the mean."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not getattr(model, "codebooks_loaded", False):
        raise ValueError("the generator has no codebooks: model.load_codebooks(autoencoder.quantizer.codebooks)")
    g, d = model.grid, model.depth
    total = g * g * d
    left = reveal_schedule(total, steps)
    dev = model.codebooks.device
    gen = random_stream(seed, _MASK_STREAM, 1)
    order = torch.rand(n, g * g, generator=gen).argsort(1)
    codes = torch.zeros(n, g, g, d, dtype=torch.long, device=dev)
    known = torch.zeros(n, g, g, dtype=torch.long, device=dev)
    levels = torch.arange(d, device=dev)
    was = model.training
    model.eval()
    try:
        for still in left:
            new_known = depthwise_known(torch.full((n,), still, dtype=torch.long), order, d).to(dev)
            proposal = _propose(model, codes, known, temperature, gen)              # [n, g, g, D]
            reveal = (levels >= known[..., None]) & (levels < new_known[..., None])
            codes = torch.where(reveal, proposal, codes)
            known = new_known
    finally:
        model.train(was)
    return codes


def _propose(model: nn.Module, codes: torch.Tensor, known: torch.Tensor, temperature: float,
             gen: torch.Generator) -> torch.Tensor:
    """Codes for every masked level of every position, from one call of the model."""
    out = model(codes, known)
    if model.head == "tokens":
        logits = out.float()                                                    # [n, g, g, D, K]
        if temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, -1).cpu()
        flat = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=gen)
        return flat.view(probs.shape[:-1]).to(codes.device)
    mean, log_var = out
    noise = torch.randn(mean.shape, generator=gen).to(mean.device)
    z = mean + temperature * torch.exp(0.5 * log_var) * noise                  # the masked levels' sum, drawn
    proposal = codes.clone()
    for k in known.unique().tolist():
        if k == model.depth:
            continue
        at = known == k
        proposal[at, k:] = residual_quantize(z[at].float(), model.codebooks[k:].float())[0]
    return proposal
