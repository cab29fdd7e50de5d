"""Restoration and generation backbones: MIRNet's multi-scale residual block, DPENet's two stages, and a small
diffusion transformer with a multi-resolution variant.

* ``mirnet_tiny`` (Zamir et al., *Learning Enriched Features for Real Image Restoration and Enhancement*,
  arXiv:2003.06792): multi-scale residual blocks, each running three streams in parallel (full, 1/2 and 1/4
  resolution) of convolutions with channel attention, the streams exchanging information through **selective
  kernel feature fusion** (SKFF: the streams summed, pooled to a channel descriptor, and a softmax across
  streams choosing, per channel, how much of each to take); a residual connection around every block and
  around the network (it predicts the correction to the degraded image).
* ``dpenet_tiny`` (paper 56, heavy rain removal with detail restoration): stage one removes rain with
  dilated residual blocks densely connected (each block sees every earlier block's output; dilations 1, 2, 4
  widen the field cheaply) and subtracts the predicted rain layer; stage two, a detail-reconstruction network
  of residual blocks, adds back the detail that removing rain smoothed away. ``stages=1`` is the rain-removal
  stage alone. ``hook_stage1`` holds the first stage's output.
* ``residual_denoiser``: the single-resolution baseline: residual blocks at full resolution and a global
  residual (DnCNN-like residual learning, no BatchNorm).
* ``dit_tiny``: a diffusion transformer in miniature (Peebles & Xie, arXiv:2212.09748): the noisy image cut
  into patches, transformer blocks conditioned on the timestep by adaptive layer normalization (scale, shift
  and gate from the time embedding), the noise predicted per patch. ``multires=True`` is the DiMR idea (Liu et
  al., arXiv:2406.09416) in miniature: a first transformer on coarse patches (twice the side), its tokens
  upsampled to condition a second one on fine patches, and **time-dependent layer normalization** (TD-LN: the
  normalization's scale and shift interpolated between two learned vectors by a learned function of ``t``,
  far fewer parameters than adaLN's per-block MLPs).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint


class _ChannelAttention(nn.Module):
    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(c, max(c // r, 1), 1), nn.ReLU(), nn.Conv2d(max(c // r, 1), c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))


class _DAU(nn.Module):
    """Conv, ReLU, conv, then channel attention; residual."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.att = _ChannelAttention(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.att(self.body(x))


class SKFF(nn.Module):
    """Selective kernel feature fusion of ``n`` same-shape streams ``[B, C, H, W]``."""

    def __init__(self, c: int, n: int, r: int = 4):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(c, max(c // r, 4), 1), nn.ReLU())
        self.select = nn.ModuleList(nn.Conv2d(max(c // r, 4), c, 1) for _ in range(n))

    def forward(self, streams: list[torch.Tensor]) -> torch.Tensor:
        z = self.squeeze(F.adaptive_avg_pool2d(sum(streams), 1))                  # [B, C/r, 1, 1]
        w = torch.softmax(torch.stack([s(z) for s in self.select], 0), 0)         # [n, B, C, 1, 1]
        return sum(wi * si for wi, si in zip(w, streams))


class MRB(nn.Module):
    """A multi-scale residual block: three streams, DAUs, SKFF exchange at each resolution, SKFF to the top."""

    def __init__(self, c: int):
        super().__init__()
        self.dau1 = nn.ModuleList(_DAU(c) for _ in range(3))
        self.exchange = nn.ModuleList(SKFF(c, 3) for _ in range(3))
        self.dau2 = nn.ModuleList(_DAU(c) for _ in range(3))
        self.final = SKFF(c, 3)
        self.out = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [x.shape[-2:], (x.shape[-2] // 2, x.shape[-1] // 2), (x.shape[-2] // 4, x.shape[-1] // 4)]
        s = [x, F.avg_pool2d(x, 2), F.avg_pool2d(x, 4)]
        s = [d(v) for d, v in zip(self.dau1, s)]
        s = [fuse([F.interpolate(v, size=sizes[i], mode="bilinear", align_corners=False) for v in s])
             for i, fuse in enumerate(self.exchange)]
        s = [d(v) for d, v in zip(self.dau2, s)]
        top = self.final([F.interpolate(v, size=sizes[0], mode="bilinear", align_corners=False) for v in s])
        return x + self.out(top)


class MIRNet(WorkbenchModel):
    def __init__(self, in_chans: int = 3, width: int = 16, blocks: int = 2):
        super().__init__()
        self.in_chans, self.num_classes, self.min_input_size = in_chans, in_chans, 4
        self.head = nn.Conv2d(in_chans, width, 3, padding=1)
        self.blocks = nn.Sequential(*[MRB(width) for _ in range(blocks)])
        self.hook_features = HookPoint()
        self.tail = nn.Conv2d(width, in_chans, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"MIRNet's streams halve the image twice: sides must be divisible by 4, got "
                             f"{tuple(x.shape[-2:])}")
        return x + self.tail(self.hook_features(self.blocks(self.head(x))))


@register_model
def mirnet_tiny(in_chans: int = 3, width: int = 16, blocks: int = 2) -> MIRNet:
    """MIRNet in miniature: multi-scale residual blocks with selective kernel feature fusion (a restorer)."""
    return MIRNet(in_chans, width, blocks)


class _DilatedDense(nn.Module):
    """Residual blocks of dilations 1, 2, 4, each fed the concatenation of all earlier outputs (1x1-reduced)."""

    def __init__(self, c: int, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.reduce = nn.ModuleList(nn.Conv2d(c * (i + 1), c, 1) for i in range(len(dilations)))
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=d, dilation=d), nn.ReLU(),
                                                  nn.Conv2d(c, c, 3, padding=d, dilation=d)) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for reduce, block in zip(self.reduce, self.blocks):
            h = reduce(torch.cat(outs, 1))
            outs.append(F.relu(h + block(h)))
        return outs[-1]


class DPENet(WorkbenchModel):
    def __init__(self, in_chans: int = 3, width: int = 16, stages: int = 2, detail_blocks: int = 3):
        super().__init__()
        if stages not in (1, 2):
            raise ValueError(f"stages is 1 (rain removal alone) or 2 (with detail reconstruction), got {stages!r}")
        self.in_chans, self.num_classes, self.stages = in_chans, in_chans, stages
        self.rain = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), _DilatedDense(width),
                                  _DilatedDense(width), nn.Conv2d(width, in_chans, 3, padding=1))
        self.hook_stage1 = HookPoint()
        if stages == 2:
            self.detail = nn.Sequential(nn.Conv2d(2 * in_chans, width, 3, padding=1), nn.ReLU(),
                                        *[m for _ in range(detail_blocks) for m in
                                          (nn.Conv2d(width, width, 3, padding=1), nn.ReLU())],
                                        nn.Conv2d(width, in_chans, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        derained = self.hook_stage1(x - self.rain(x))                          # stage one: subtract the rain
        if self.stages == 1:
            return derained
        return derained + self.detail(torch.cat([derained, x], 1))             # stage two: add back detail


@register_model
def dpenet_tiny(in_chans: int = 3, width: int = 16, stages: int = 2, detail_blocks: int = 3) -> DPENet:
    """Heavy rain removal in two stages: dilated dense residual rain removal, then detail reconstruction."""
    return DPENet(in_chans, width, stages, detail_blocks)


class _DenoiserBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualDenoiser(WorkbenchModel):
    """Head conv, ``blocks`` residual blocks of ``width`` channels at full resolution, tail conv; the output is
    the input plus the tail's correction (residual learning)."""

    def __init__(self, in_chans: int = 3, width: int = 32, blocks: int = 4):
        super().__init__()
        for name, v, least in (("width", width, 1), ("blocks", blocks, 0), ("in_chans", in_chans, 1)):
            if not (isinstance(v, int) and v >= least):
                raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
        self.in_chans, self.num_classes = in_chans, in_chans
        self.head = nn.Conv2d(in_chans, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_DenoiserBlock(width) for _ in range(blocks)])
        self.hook_features = HookPoint()
        self.tail = nn.Conv2d(width, in_chans, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x + self.tail(self.hook_features(self.blocks(self.head(x))))  # [B, C, H, W]


@register_model
def residual_denoiser(in_chans: int = 3, width: int = 32, blocks: int = 4) -> ResidualDenoiser:
    """A single-resolution residual denoiser (residual blocks, global residual; DnCNN-like, no BN)."""
    return ResidualDenoiser(in_chans, width, blocks)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embeddings ``[B, dim]`` of integer timesteps ``[B]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.cos(), a.sin()], 1)


class _TDLN(nn.Module):
    """Time-dependent layer norm: scale and shift interpolated between two learned vectors by sigmoid(a t / T + b).

    The two scale vectors start equal (ones) and the two shifts equal (zeros), so a new block is a plain layer
    norm; ``a = 4, b = -2`` make the weight run from 0.12 at ``t = 0`` to 0.88 at ``t = T``, so the two vectors
    of each pair get different gradients and part. (With ``a = b = 0`` the weight is 0.5 at every ``t``, each
    pair's gradients are equal, the vectors never part, ``a`` and ``b`` get no gradient, and the block is blind
    to the timestep for ever.)"""

    def __init__(self, d: int, steps: int):
        super().__init__()
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.gamma, self.beta = nn.Parameter(torch.ones(2, d)), nn.Parameter(torch.zeros(2, d))
        self.a, self.b = nn.Parameter(torch.full((1,), 4.0)), nn.Parameter(torch.full((1,), -2.0))
        self.steps = steps

    def forward(self, x: torch.Tensor, t: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.sigmoid(self.a * t.float() / self.steps + self.b)[:, None, None]      # [B, 1, 1]
        gamma = w * self.gamma[0] + (1 - w) * self.gamma[1]
        beta = w * self.beta[0] + (1 - w) * self.beta[1]
        return self.norm(x) * gamma + beta, torch.ones_like(w)


class _AdaLN(nn.Module):
    """adaLN-Zero: scale, shift and gate from the time embedding (zero-initialized: blocks start as identity)."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.mod = nn.Linear(d, 3 * d)
        nn.init.zeros_(self.mod.weight), nn.init.zeros_(self.mod.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift, gate = self.mod(F.silu(emb))[:, None].chunk(3, -1)
        return self.norm(x) * (1 + scale) + shift, gate


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, tdln: bool, steps: int):
        super().__init__()
        make = (lambda: _TDLN(d, steps)) if tdln else (lambda: _AdaLN(d))
        self.n1, self.n2 = make(), make()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h, g = self.n1(x, t, emb)
        x = x + g * self.attn(h, h, h, need_weights=False)[0]
        h, g = self.n2(x, t, emb)
        return x + g * self.mlp(h)


class DiT(WorkbenchModel):
    """``forward(x_t, t)`` -> predicted noise, the shape of ``x_t``."""

    def __init__(self, in_chans: int = 3, img_size: int = 32, patch: int = 4, width: int = 64, depth: int = 4,
                 heads: int = 4, multires: bool = False, steps: int = 1000):
        super().__init__()
        if img_size % (2 * patch if multires else patch):
            raise ValueError(f"img_size {img_size} must be divisible by the patch ({patch}"
                             f"{', and twice it for multires' if multires else ''})")
        self.in_chans, self.num_classes, self.img_size = in_chans, in_chans, img_size
        self.patch, self.width, self.multires, self.steps = patch, width, multires, steps
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.embed = nn.Conv2d(in_chans, width, patch, stride=patch)
        n = (img_size // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, width) * 0.02)
        self.blocks = nn.ModuleList(_Block(width, heads, multires, steps) for _ in range(depth))
        if multires:
            self.coarse_embed = nn.Conv2d(in_chans, width, 2 * patch, stride=2 * patch)
            self.coarse_pos = nn.Parameter(torch.randn(1, n // 4, width) * 0.02)
            self.coarse = nn.ModuleList(_Block(width, heads, True, steps) for _ in range(max(depth // 2, 1)))
        self.hook_features = HookPoint()
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, in_chans * patch * patch)
        self.hook_layers = (*(f"coarse.{i}" for i in range(len(self.coarse) if multires else 0)),
                            *(f"blocks.{i}" for i in range(depth)), "hook_features")
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)

    def example_args(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """A timestep for each image of ``x`` (t = 1), for passes that only measure (``wb.models.summary``)."""
        return (torch.ones(len(x), dtype=torch.long, device=x.device),)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b, c, h, w = x.shape
        emb = self.time(timestep_embedding(t, self.width))                       # [B, d]
        tok = self.embed(x).flatten(2).transpose(1, 2) + self.pos                # [B, n, d]
        if self.multires:
            coarse = self.coarse_embed(x).flatten(2).transpose(1, 2) + self.coarse_pos
            for blk in self.coarse:
                coarse = blk(coarse, t, emb)
            g = h // (2 * self.patch)
            up = F.interpolate(coarse.transpose(1, 2).reshape(b, self.width, g, g), scale_factor=2, mode="nearest")
            tok = tok + up.flatten(2).transpose(1, 2)                            # the coarse pass conditions the fine
        for blk in self.blocks:
            tok = blk(tok, t, emb)
        y = self.out(self.out_norm(self.hook_features(tok)))                     # [B, n, c*p*p]
        p, g = self.patch, h // self.patch
        return y.view(b, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


@register_model
def dit_tiny(in_chans: int = 3, img_size: int = 32, patch: int = 4, width: int = 64, depth: int = 4, heads: int = 4,
             multires: bool = False, steps: int = 1000) -> DiT:
    """A small diffusion transformer (adaLN-Zero); ``multires=True``: a coarse pass conditioning the fine one and
    time-dependent layer normalization (DiMR in miniature). ``forward(x_t, t)`` predicts the noise."""
    return DiT(in_chans, img_size, patch, width, depth, heads, multires, steps)
