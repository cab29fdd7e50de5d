"""Multi-stage Vision Transformers with residual spatial reduction, their search space and an
elastic weight-sharing supernet (ViT-ResNAS: Liao et al. 2021, *Searching for Efficient Multi-Stage
Vision Transformers*, https://arxiv.org/abs/2109.00642).

The network: a ``patch x patch`` patch embedding, a class token and learned position embeddings (as
:func:`wb.models.vit_tiny <workbench.models.vit.vit_tiny>`), then stages of pre-norm transformer blocks
(``wb.models.vit.Block``). Between stages a *residual spatial reduction* halves the token grid and
changes the width from ``C`` to ``C'``::

    main  = Conv2d(C, C', 2, stride 2)(LayerNorm(tokens) as a grid)    # patch merging
    skip  = Linear(C, C')(AvgPool 2x2(tokens as a grid))               # pooled and projected shortcut
    tokens' = main + skip;   cls' = Linear(C, C')(cls)

and a final LayerNorm, the class token and a linear classifier. An architecture gives each stage ``s``
(from 1) ``"stage{s}.depth"``, ``"stage{s}.width"`` (embedding dim), ``"stage{s}.heads"`` (head dim
``width / heads``) and ``"stage{s}.mlp_ratio"`` (MLP hidden units ``int(width * mlp_ratio)``, as in
``vit_tiny``). One stage of depth 6, width 192, 3 heads and ratio 2 is ``vit_tiny`` exactly
(:func:`vit_tiny_arch`), so a notebook can compare searched multi-stage models with it at equal
multiply-adds.

The supernet (:class:`ViTStagesSupernet`) holds each stage at its largest depth, width and MLP ratio.
A sub-network uses, in each stage, **the first ``depth`` blocks** and **the first ``width`` channels**
of every weight (rows and columns of each linear map, the first ``width`` entries of LayerNorms, class
token and position embeddings; of the ``qkv`` map the first ``width`` rows of each of q, k and v) and
**the first ``int(width * mlp_ratio)`` hidden units** of each MLP; heads split the kept channels.
:meth:`ViTStagesSupernet.subnet` copies exactly those slices into a standalone :class:`ViTStages`,
which then computes bit for bit what the supernet computes under that architecture.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import WorkbenchModel, init_transformer_weights
from ..models.hooks import HookPoint
from ..models.vit import Block
from .space import SearchSpace

__all__ = ["vit_stage_space", "vit_tiny_arch", "stages_of", "ResidualReduction", "ViTStages", "ViTStagesSupernet",
           "vit_stages_network"]

FIELDS = ("depth", "width", "heads", "mlp_ratio")


def vit_stage_space(depths: Sequence[Sequence[int]] = ((1, 2), (1, 2, 3), (1, 2)),
                    widths: Sequence[Sequence[int]] = ((32, 48), (64, 96), (128, 192)),
                    heads: Sequence[Sequence[int]] = ((1, 2), (2, 4), (4, 8)),
                    mlp_ratios: Sequence[Sequence[float]] = ((2.0, 4.0), (2.0, 4.0), (2.0, 4.0))) -> SearchSpace:
    """The space of multi-stage ViTs: per stage the choices of depth, width, heads and MLP ratio (one
    sequence of choices per stage in each argument). Every width of a stage must split into every head
    count of that stage."""
    n = len(depths)
    if not n or any(len(a) != n for a in (widths, heads, mlp_ratios)):
        raise ValueError(f"depths, widths, heads and mlp_ratios need one choice tuple per stage each, got "
                         f"{len(depths)}, {len(widths)}, {len(heads)}, {len(mlp_ratios)} stages")
    choices = {}
    for s in range(n):
        for field, values in zip(FIELDS, (depths[s], widths[s], heads[s], mlp_ratios[s])):
            choices[f"stage{s + 1}.{field}"] = tuple(values)
        bad = [(w, h) for w in widths[s] for h in heads[s] if w % h]
        if bad:
            raise ValueError(f"stage {s + 1}: width {bad[0][0]} does not split into {bad[0][1]} heads; make every "
                             "width of a stage a multiple of every head count of that stage")
    space = SearchSpace(choices)
    for k, v in space.choices.items():
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0 for x in v) or \
                (not k.endswith("mlp_ratio") and any(not isinstance(x, int) for x in v)):
            raise ValueError(f"choice {k!r} holds {v}; depths, widths and heads are whole numbers of at least 1, "
                             "MLP ratios positive numbers")
    return space


def vit_tiny_arch(depth: int = 6, width: int = 192, heads: int = 3, mlp_ratio: float = 2.0) -> dict[str, Any]:
    """The one-stage architecture of ``wb.models.vit_tiny`` (same parameters and multiply-adds)."""
    return {"stage1.depth": depth, "stage1.width": width, "stage1.heads": heads, "stage1.mlp_ratio": mlp_ratio}


def stages_of(arch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{"depth", "width", "heads", "mlp_ratio"}, ...]`` per stage of a flat architecture, checked."""
    if not isinstance(arch, Mapping):
        raise ValueError(f"an architecture is a dict such as {vit_tiny_arch()}, got {type(arch).__name__}")
    n = 0
    while f"stage{n + 1}.depth" in arch:
        n += 1
    known = {f"stage{s + 1}.{f}" for s in range(n) for f in FIELDS}
    unknown, missing = sorted(set(arch) - known), sorted(known - set(arch))
    if not n or unknown or missing:
        problem = f"unknown {unknown[:4]}" if unknown else f"missing {missing[:4] or ['stage1.depth']}"
        raise ValueError(f"a multi-stage ViT architecture gives each stage s = 1, 2, ... the keys "
                         f"stage{{s}}.depth, .width, .heads, .mlp_ratio; {problem}")
    out = []
    for s in range(n):
        st = {f: arch[f"stage{s + 1}.{f}"] for f in FIELDS}
        ints = [st[f] for f in ("depth", "width", "heads")]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in ints) or st["width"] % st["heads"] \
                or isinstance(st["mlp_ratio"], bool) or not st["mlp_ratio"] > 0:
            raise ValueError(f"stage {s + 1} is {st}: depth, width and heads are whole numbers of at least 1, width "
                             "a multiple of heads, mlp_ratio positive")
        out.append(st)
    return out


def _s(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """The leading ``sizes`` block of ``t``, contiguous (so a matmul sees the same layout as a full tensor)."""
    return t[tuple(slice(0, n) for n in sizes)].contiguous()


def _grid(tokens: torch.Tensor) -> torch.Tensor:
    b, n, c = tokens.shape
    side = math.isqrt(n)
    if side * side != n or side % 2:
        raise ValueError(f"a spatial reduction needs an even square grid of tokens, got {n}; use fewer stages or "
                         "a larger img_size / smaller patch")
    return tokens.transpose(1, 2).reshape(b, c, side, side)  # [batch, C, side, side]


class ResidualReduction(nn.Module):
    """Halve the token grid and go from ``c_in`` to ``c_out`` channels, with a pooled shortcut (see the
    module docstring); ``forward(x, c_in, c_out)`` uses the leading channels only (the supernet)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm = nn.LayerNorm(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 2, stride=2)
        self.proj = nn.Linear(c_in, c_out)
        self.cls_proj = nn.Linear(c_in, c_out)
        self.hook_main, self.hook_skip = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, c_in: int | None = None, c_out: int | None = None) -> torch.Tensor:
        ci, co = c_in or self.conv.in_channels, c_out or self.conv.out_channels
        # contiguous inputs to every linear map: torch's matmul picks its path by layout and requires_grad, and
        # the supernet's sliced weights must meet the path a standalone network's parameters meet
        cls, t = x[:, :1].contiguous(), x[:, 1:]                                     # [batch, 1 + n, ci]
        h = F.layer_norm(t, (ci,), _s(self.norm.weight, ci), _s(self.norm.bias, ci), self.norm.eps)
        main = F.conv2d(_grid(h), _s(self.conv.weight, co, ci), _s(self.conv.bias, co), stride=2)
        main = main.flatten(2).transpose(1, 2)                                        # [batch, n / 4, co]
        skip = F.avg_pool2d(_grid(t), 2).flatten(2).transpose(1, 2).contiguous()      # [batch, n / 4, ci]
        skip = F.linear(skip, _s(self.proj.weight, co, ci), _s(self.proj.bias, co))
        cls = F.linear(cls, _s(self.cls_proj.weight, co, ci), _s(self.cls_proj.bias, co))
        return torch.cat([cls, self.hook_main(main) + self.hook_skip(skip)], 1)


class ViTStages(WorkbenchModel):
    """The standalone multi-stage ViT of one architecture (see the module docstring). Hook points:
    ``hook_embed``, ``stages.s.i`` (a block, with ``.hook_attn`` and ``.hook_mlp``), ``reductions.s``
    (with ``.hook_main`` and ``.hook_skip``), ``hook_pool``."""

    def __init__(self, arch: Mapping[str, Any], *, num_classes: int = 10, in_chans: int = 3, img_size: int = 32,
                 patch: int = 4):
        super().__init__()
        st = stages_of(arch)
        side = img_size // patch if img_size % patch == 0 else 0
        if not side or side % 2 ** (len(st) - 1):
            raise ValueError(f"{len(st)} stages need a token grid (img_size / patch = {img_size} / {patch}) that is a "
                             f"whole multiple of {2 ** (len(st) - 1)}")
        self.arch, self.in_chans, self.num_classes, self.img_size = dict(arch), in_chans, num_classes, img_size
        self.patch = patch
        w0 = st[0]["width"]
        self.patch_embed = nn.Conv2d(in_chans, w0, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w0))
        self.pos_embed = nn.Parameter(torch.randn(1, side * side + 1, w0) * 0.02)
        self.hook_embed = HookPoint()
        self.stages = nn.ModuleList(nn.Sequential(*[Block(c["width"], c["heads"], c["mlp_ratio"], 0.0)
                                                    for _ in range(c["depth"])]) for c in st)
        self.reductions = nn.ModuleList(ResidualReduction(a["width"], b["width"]) for a, b in zip(st, st[1:]))
        self.norm = nn.LayerNorm(st[-1]["width"])
        self.hook_pool = HookPoint()
        self.head = nn.Linear(st[-1]["width"], num_classes)
        self.hook_layers = tuple(f"stages.{s}.{i}" for s, c in enumerate(st) for i in range(c["depth"])) + \
            tuple(f"reductions.{s}" for s in range(len(st) - 1))
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)                # [batch, tokens, width]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)  # [batch, 1 + tokens, width]
        x = self.hook_embed(x + self.pos_embed)
        for s, stage in enumerate(self.stages):
            if s:
                x = self.reductions[s - 1](x)                                 # [batch, 1 + tokens / 4, width']
            x = stage(x)
        return self.head(self.hook_pool(self.norm(x)[:, 0]))              # [batch, classes]


def _elastic_block(block: Block, x: torch.Tensor, width: int, heads: int, hidden: int) -> torch.Tensor:
    """``block`` (a ``wb.models.vit.Block`` at the largest width) run on its first ``width`` channels and
    ``hidden`` MLP units, ``heads`` heads: the computation of ``Block.forward`` on sliced weights."""
    w, big = width, block.ln1.normalized_shape[0]
    h = F.layer_norm(x, (w,), _s(block.ln1.weight, w), _s(block.ln1.bias, w), block.ln1.eps)
    a = block.attn
    qkv_w = a.qkv.weight.view(3, big, big)[:, :w, :w].reshape(3 * w, w)
    qkv_b = a.qkv.bias.view(3, big)[:, :w].reshape(3 * w)
    b, t, _ = h.shape
    q, k, v = F.linear(h, qkv_w, qkv_b).view(b, t, 3, heads, w // heads).permute(2, 0, 3, 1, 4)
    pattern = getattr(a, "hook_pattern", None)  # read the weights only when a hook asks, as Attention does
    if pattern is not None and (pattern._forward_hooks or pattern._forward_pre_hooks):
        out = pattern(((q @ k.transpose(-2, -1)) * (w // heads) ** -0.5).softmax(-1)) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v)                     # [batch, heads, tokens, w / heads]
    out = F.linear(out.transpose(1, 2).reshape(b, t, w), _s(a.proj.weight, w, w), _s(a.proj.bias, w))
    x = x + block.hook_attn(out)
    h = F.layer_norm(x, (w,), _s(block.ln2.weight, w), _s(block.ln2.bias, w), block.ln2.eps)
    fc1, act, drop, fc2 = block.mlp
    h = drop(act(F.linear(h, _s(fc1.weight, hidden, w), _s(fc1.bias, hidden))))
    return x + block.hook_mlp(F.linear(h, _s(fc2.weight, w, hidden), _s(fc2.bias, w)))


class ViTStagesSupernet(WorkbenchModel):
    """Elastic depth, width, heads and MLP ratio over :func:`vit_stage_space` (see the module docstring).

    Args:
        space: a :func:`vit_stage_space` (default: its laptop-sized defaults).
        num_classes, in_chans, img_size, patch: as for :class:`ViTStages`.
    The active architecture is the largest one until :meth:`set_arch` changes it.
    """

    def __init__(self, space: SearchSpace | None = None, *, num_classes: int = 10, in_chans: int = 3,
                 img_size: int = 32, patch: int = 4):
        super().__init__()
        self.space = space if space is not None else vit_stage_space()
        self.max_arch = {k: max(v) for k, v in self.space.choices.items()}
        big = {**self.max_arch, **{k: min(self.space[k]) for k in self.space if k.endswith("heads")}}
        self.config = dict(num_classes=num_classes, in_chans=in_chans, img_size=img_size, patch=patch)
        full = ViTStages(big, **self.config)  # the largest network; its modules become the shared weights
        self.in_chans, self.num_classes, self.img_size, self.patch = in_chans, num_classes, img_size, patch
        for name in ("patch_embed", "cls_token", "pos_embed", "hook_embed", "stages", "reductions", "norm",
                     "hook_pool", "head"):
            setattr(self, name, getattr(full, name))
        self.hook_layers = full.hook_layers
        self._macs: dict[str, int] = {}
        self.set_arch(None)

    def set_arch(self, arch: Mapping[str, Any] | None) -> "ViTStagesSupernet":
        """Make ``arch`` active (``None``: the largest); returns the supernet."""
        self.arch = self.space.validate(self.max_arch if arch is None else arch)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        st = stages_of(self.arch)
        w = st[0]["width"]
        x = F.conv2d(x, _s(self.patch_embed.weight, w), _s(self.patch_embed.bias, w), stride=self.patch)
        x = x.flatten(2).transpose(1, 2)                                      # [batch, tokens, w]
        x = torch.cat([self.cls_token[..., :w].expand(x.shape[0], -1, -1), x], 1)
        x = self.hook_embed(x + self.pos_embed[..., :w])
        for s, c in enumerate(st):
            if s:
                x = self.reductions[s - 1](x, st[s - 1]["width"], c["width"])
            for block in list(self.stages[s])[:c["depth"]]:
                x = _elastic_block(block, x, c["width"], c["heads"], int(c["width"] * c["mlp_ratio"]))
        w = st[-1]["width"]
        x = F.layer_norm(x, (w,), _s(self.norm.weight, w), _s(self.norm.bias, w), self.norm.eps)[:, 0]
        return F.linear(self.hook_pool(x), _s(self.head.weight, self.num_classes, w), self.head.bias)

    @torch.no_grad()
    def subnet(self, arch: Mapping[str, Any]) -> ViTStages:
        """The standalone :class:`ViTStages` of ``arch`` holding this supernet's slices of the weights."""
        arch = self.space.validate(arch)
        net = ViTStages(arch, **self.config).to(self.pos_embed.device)
        src = self.state_dict()
        for name, t in net.state_dict().items():
            s = src[name]
            if name.endswith("attn.qkv.weight"):
                s = s.view(3, s.shape[1], s.shape[1])[:, :t.shape[1], :t.shape[1]].reshape(t.shape)
            elif name.endswith("attn.qkv.bias"):
                s = s.view(3, -1)[:, :t.shape[0] // 3].reshape(t.shape)
            t.copy_(s[tuple(slice(0, n) for n in t.shape)])
        return net.train(self.training)

    def macs(self, arch: Mapping[str, Any]) -> int:
        """Multiply-adds of one image through ``arch`` (:func:`workbench.models.summary`, torch's counter)."""
        from ..models.summary import summary

        key = self.space.key(arch)
        if key not in self._macs:
            self._macs[key] = summary(ViTStages(self.space.validate(arch), **self.config)).macs
        return self._macs[key]


def vit_stages_network(arch: Mapping[str, Any], num_classes: int = 10, in_chans: int = 3, img_size: int = 32,
                       patch: int = 4) -> ViTStages:
    """A fresh standalone multi-stage ViT of ``arch`` (for retraining a found architecture)."""
    return ViTStages(arch, num_classes=num_classes, in_chans=in_chans, img_size=img_size, patch=patch)
