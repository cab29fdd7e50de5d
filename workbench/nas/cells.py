"""NASNet-style cells: a search space of small convolutional cells, a weight-sharing supernet over it,
and the standalone network a found cell is retrained in (Zoph et al. 2018, *Learning Transferable
Architectures for Scalable Image Recognition*, https://arxiv.org/abs/1707.07012; the shared weights as
in ENAS, Pham et al. 2018, https://arxiv.org/abs/1802.03268).

A cell takes the outputs of the two cells before it, ``h[-2]`` and ``h[-1]`` (each brought to ``C``
channels by a ReLU-1x1 conv-BN, or a factorized reduction where ``h[-2]`` is twice the size), and builds
``B`` blocks. Block ``b`` picks two inputs among ``h[-2], h[-1]`` and the outputs of blocks ``0..b-1``
(indices ``0, 1`` and ``2 + j``) and one operation for each, and adds the two results::

    block_b = op_a(states[in_a]) + op_b(states[in_b])
    cell    = concat(block_0, ..., block_{B-1})        # [batch, B * C, h, w]; all blocks, as in DARTS

Concatenating every block (not only the unused ones, as NASNet does) keeps a cell's width the same
for every architecture, so the 1x1 convolution at the start of the next cell is shared by all of them.
In a reduction cell the operations reading the cell inputs have stride 2 (identity becomes a factorized
reduction). The operations (:data:`OPS`), a laptop-sized subset of NASNet's thirteen:

``identity``; ``sep_conv_3x3`` and ``sep_conv_5x5`` (ReLU, depthwise k x k, pointwise 1x1, BN: once,
where NASNet applies it twice); ``dil_conv_3x3`` (the same, dilation 2); ``avg_pool_3x3``;
``max_pool_3x3``.

An architecture names, for the normal and the reduction cell and each block ``b``,
``"{cell}.{b}.in_a"``, ``"{cell}.{b}.op_a"``, ``"{cell}.{b}.in_b"``, ``"{cell}.{b}.op_b"``
(:func:`cell_space`). The network is a stem, then ``stages`` stages of ``cells`` normal cells with a
reduction cell (doubling ``C``) between stages, every normal cell sharing one architecture and every
reduction cell the other; then global pooling and a linear classifier.

:class:`CellSupernet` holds every candidate operation on every input of every block slot (all
instantiated, only the active ones run); :meth:`CellSupernet.subnet` returns the standalone
:class:`CellNetwork` of an architecture with the supernet's weights, whose modules have the same names,
so it computes exactly what the supernet computes under that architecture. Hook points: ``cells.i``
(a cell's output, also ``cells.i.hook_out``), ``stem``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from .space import SearchSpace

__all__ = ["OPS", "cell_space", "genotype", "CellNetwork", "CellSupernet", "cell_network"]

CELLS = ("normal", "reduce")


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 1, stride: int = 1, padding: int = 0, dilation: int = 1,
                 groups: int = 1):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, padding, dilation, groups, bias=False),
                         nn.BatchNorm2d(c_out))


class SepConv(nn.Sequential):
    """ReLU, depthwise ``k x k`` (stride, dilation), pointwise 1x1, BN."""

    def __init__(self, c: int, k: int, stride: int, dilation: int = 1):
        pad = dilation * (k - 1) // 2
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, k, stride, pad, dilation, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class FactorizedReduce(nn.Module):
    """Halve the size with two 1x1 stride-2 convolutions, one shifted by a pixel, concatenated (NASNet)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"a factorized reduction needs an even channel count, got {c_out}")
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], 1))


OPS: dict[str, Any] = {
    "identity": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c),
    "sep_conv_3x3": lambda c, s: SepConv(c, 3, s),
    "sep_conv_5x5": lambda c, s: SepConv(c, 5, s),
    "dil_conv_3x3": lambda c, s: SepConv(c, 3, s, dilation=2),
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, s, 1, count_include_pad=False),
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, s, 1),
}


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    bad = [o for o in ops if o not in OPS]
    if not ops or bad:
        raise ValueError(f"ops are names among {list(OPS)}, at least one; got {list(ops)}")
    return ops


def cell_space(blocks: int = 4, ops: Sequence[str] = tuple(OPS)) -> SearchSpace:
    """The NASNet space of a normal and a reduction cell of ``blocks`` blocks each (see the module
    docstring): per cell ``prod_b (b + 2)^2 * len(ops)^2`` architectures."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks is a whole number of at least 1, got {blocks!r}")
    ops = _check_ops(ops)
    return SearchSpace({f"{cell}.{b}.{k}": tuple(range(b + 2)) if k.startswith("in") else ops
                        for cell in CELLS for b in range(blocks) for k in ("in_a", "op_a", "in_b", "op_b")})


def genotype(arch: Mapping[str, Any], cell: str = "normal") -> list[tuple[int, str, int, str]]:
    """The blocks of one cell of an architecture as ``[(in_a, op_a, in_b, op_b), ...]``."""
    if cell not in CELLS:
        raise ValueError(f"cell is 'normal' or 'reduce', got {cell!r}")
    b, out = 0, []
    while f"{cell}.{b}.in_a" in arch:
        out.append(tuple(arch[f"{cell}.{b}.{k}"] for k in ("in_a", "op_a", "in_b", "op_b")))
        b += 1
    return out


def _edge(b: int, slot: str, j: int, op: str) -> str:
    return f"b{b}{slot}_in{j}_{op}"


class Cell(nn.Module):
    """One cell; ``genes=None`` instantiates every candidate (the supernet), else only the chosen ops."""

    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, blocks: int,
                 ops: Sequence[str], genes: Sequence[tuple] | None = None):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c)
        self.pre1 = ReLUConvBN(c_p, c)
        self.edges = nn.ModuleDict()
        for b in range(blocks):
            for slot, (i, o) in zip("ab", ((0, 1), (2, 3))):
                for j in range(b + 2):
                    for op in ops:
                        if genes is None or (genes[b][i], genes[b][o]) == (j, op):
                            self.edges[_edge(b, slot, j, op)] = OPS[op](c, 2 if reduction and j < 2 else 1)
        self.hook_out = HookPoint()

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, genes: Sequence[tuple]) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]  # each [batch, C, h, w]
        for b, (ia, oa, ib, ob) in enumerate(genes):
            states.append(self.edges[_edge(b, "a", ia, oa)](states[ia]) + self.edges[_edge(b, "b", ib, ob)](states[ib]))
        return self.hook_out(torch.cat(states[2:], 1))  # [batch, B * C, h', w']


class CellNetwork(WorkbenchModel):
    """A stack of NASNet cells of one architecture (``arch=None``: every candidate, for the supernet).

    Args:
        arch: an architecture of :func:`cell_space` with ``blocks`` and ``ops``.
        cells: normal cells per stage. stages: stages (``stages - 1`` reduction cells between them).
        width: ``C`` of the first stage's cells (the stem's output too); doubled at each reduction.
    """

    def __init__(self, arch: Mapping[str, Any] | None, *, blocks: int = 4, ops: Sequence[str] = tuple(OPS),
                 cells: int = 2, stages: int = 3, width: int = 16, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        for name, v in (("cells", cells), ("stages", stages), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} is a whole number of at least 1, got {v!r}")
        if width % 2:
            raise ValueError(f"width must be even (a reduction halves channels into two convolutions), got {width}")
        self.space = cell_space(blocks, ops)
        self.config = dict(blocks=blocks, ops=tuple(ops), cells=cells, stages=stages, width=width,
                           num_classes=num_classes, in_chans=in_chans)
        self.in_chans, self.num_classes, self.min_input_size = in_chans, num_classes, 2 ** (stages - 1)
        self.arch = None if arch is None else self.space.validate(arch)
        genes = {k: None if arch is None else genotype(self.arch, k) for k in CELLS}
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        c_pp = c_p = c = width
        self.cells, self.kinds = nn.ModuleList(), []
        reduction_prev = False
        for s in range(stages):
            kinds = (["reduce"] if s else []) + ["normal"] * cells
            for kind in kinds:
                c = c * 2 if kind == "reduce" else c
                self.cells.append(Cell(c_pp, c_p, c, kind == "reduce", reduction_prev, blocks, ops, genes[kind]))
                self.kinds.append(kind)
                reduction_prev = kind == "reduce"
                c_pp, c_p = c_p, blocks * c
        self.head = nn.Linear(c_p, num_classes)
        self.hook_pool = HookPoint()
        self.hook_layers = ("stem", *(f"cells.{i}" for i in range(len(self.cells))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.arch is None:
            raise RuntimeError("the supernet has no architecture set: call set_arch(arch) first, such as "
                               "set_arch(model.space.sample(0))")
        genes = {k: genotype(self.arch, k) for k in CELLS}
        s0 = s1 = self.stem(x)
        for cell, kind in zip(self.cells, self.kinds):
            s0, s1 = s1, cell(s0, s1, genes[kind])
        return self.head(self.hook_pool(F.adaptive_avg_pool2d(s1, 1).flatten(1)))  # [batch, classes]


class CellSupernet(CellNetwork):
    """Every candidate operation of :func:`cell_space`, weights shared by all architectures; the active one
    is set by :meth:`set_arch` and only its operations run (same arguments as :class:`CellNetwork`)."""

    def __init__(self, **kwargs: Any):
        super().__init__(None, **kwargs)
        self._macs: dict[str, int] = {}

    def set_arch(self, arch: Mapping[str, Any] | None) -> "CellSupernet":
        """Make ``arch`` the active architecture (checked against :attr:`space`); returns the supernet."""
        self.arch = None if arch is None else self.space.validate(arch)
        return self

    def subnet(self, arch: Mapping[str, Any]) -> CellNetwork:
        """The standalone network of ``arch`` with this supernet's weights (the same module names)."""
        net = CellNetwork(arch, **self.config).to(next(self.parameters()).device)
        state = self.state_dict()
        net.load_state_dict({k: state[k] for k in net.state_dict()})
        return net.train(self.training)

    def macs(self, arch: Mapping[str, Any], img_size: int = 32) -> int:
        """Multiply-adds of one ``img_size`` image through ``arch`` (:func:`workbench.models.summary`)."""
        from ..models.summary import summary

        key = f"{img_size}:{self.space.key(arch)}"
        if key not in self._macs:
            self._macs[key] = summary(CellNetwork(arch, **self.config), (self.in_chans, img_size, img_size)).macs
        return self._macs[key]


def cell_network(arch: Mapping[str, Any], cells: int = 2, width: int = 16, stages: int = 3,
                 num_classes: int = 10, in_chans: int = 3) -> CellNetwork:
    """A fresh standalone network of a found cell architecture, for training it deeper, wider and longer
    (the blocks and operations are read from ``arch``)."""
    blocks = len(genotype(arch, "normal"))
    if not blocks:
        raise ValueError("arch has no 'normal.0.in_a': expected an architecture of wb.nas.cell_space")
    return CellNetwork(arch, blocks=blocks, cells=cells, stages=stages, width=width, num_classes=num_classes,
                       in_chans=in_chans)
