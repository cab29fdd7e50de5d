"""A CIFAR-sized Inception-ResNet and its non-residual twin, with residual scaling.

Szegedy, Ioffe, Vanhoucke & Alemi, *Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning*, AAAI 2017, https://arxiv.org/abs/1602.07261 (figures 10-12 and 15-17 for
the blocks, section 3.3 for the scaling).

An Inception-ResNet block runs a few parallel branches of small convolutions (each conv-BN-ReLU),
concatenates them, maps the result back to the block's width with a 1x1 convolution that has no
activation and no BatchNorm, scales it and adds it to the input::

    out = relu(x + scale * up(concat(branch_1(x), ..., branch_k(x))))

Section 3.3 of the paper: with more than about 1,000 filters the unscaled network "died" early in
training (the last layer before pooling output only zeros); scaling the residuals by 0.1-0.3 before
the addition kept it stable. ``residual=False`` builds the twin that has the same branches and
nearly the same cost, a plain Inception network: the 1x1 convolution becomes an ordinary
conv-BN-ReLU layer and its output is the block's output (``out = relu(bn(up(concat(...))))``, two
BatchNorm parameters per channel more than the residual block, no multiply-add more).

The layout, scaled to 32x32 images (the paper's network is for 299x299 crops and uses 5, 10 and 5
blocks): a 3x3 stem to ``2w`` channels; ``blocks[0]`` blocks of type A at 32x32 (branches 1x1;
1x1-3x3; 1x1-3x3-3x3); a reduction to 16x16 that doubles the channels (max-pool | strided 3x3 |
1x1-3x3-strided 3x3, concatenated); ``blocks[1]`` blocks of type B (1x1; 1x1-1x5-5x1: the paper's
1x7 and 7x1 shortened for 16x16 maps); a second reduction to 8x8; ``blocks[2]`` blocks of type C
(1x1; 1x1-1x3-3x1); global average pooling and a linear classifier.

Hook points: ``stem``, every block (``stage_a.I``, ``reduction_a``, ``stage_b.I``, ``reduction_b``,
``stage_c.I``), inside each block ``hook_branch`` (the scaled branch before the addition) and
``hook_out``; ``hook_pool``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint


def cbr(cin: int, cout: int, k: int | tuple[int, int], stride: int = 1) -> nn.Sequential:
    """conv - BatchNorm - ReLU with 'same' padding."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return nn.Sequential(nn.Conv2d(cin, cout, (kh, kw), stride, ((kh - 1) // 2, (kw - 1) // 2), bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """Parallel branches, concatenated, mapped back to ``channels`` by a 1x1 convolution; with
    ``residual`` added to the input after scaling (see the module docstring)."""

    def __init__(self, kind: str, channels: int, residual: bool = True, scale: float = 1.0):
        super().__init__()
        c, q = channels, max(1, channels // 4)
        if kind == "A":
            branches = [cbr(c, q, 1), nn.Sequential(cbr(c, q, 1), cbr(q, q, 3)),
                        nn.Sequential(cbr(c, q, 1), cbr(q, 3 * q // 2, 3), cbr(3 * q // 2, 2 * q, 3))]
            concat = 4 * q
        elif kind == "B":
            branches = [cbr(c, q, 1), nn.Sequential(cbr(c, q, 1), cbr(q, q, (1, 5)), cbr(q, q, (5, 1)))]
            concat = 2 * q
        elif kind == "C":
            branches = [cbr(c, q, 1), nn.Sequential(cbr(c, q, 1), cbr(q, q, (1, 3)), cbr(q, q, (3, 1)))]
            concat = 2 * q
        else:
            raise ValueError(f"unknown Inception block kind {kind!r}; valid kinds: A, B, C")
        self.kind, self.residual, self.scale = kind, residual, float(scale)
        self.branches = nn.ModuleList(branches)
        if residual:  # linear: no BatchNorm, no activation (the paper's "1x1 Conv (Linear)")
            self.up = nn.Conv2d(concat, c, 1, bias=True)
        else:  # an ordinary layer of a plain Inception network
            self.up = nn.Sequential(nn.Conv2d(concat, c, 1, bias=False), nn.BatchNorm2d(c))
        self.hook_branch = HookPoint()
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, c, h, w]
        mixed = torch.cat([b(x) for b in self.branches], dim=1)  # [batch, concat, h, w]
        if self.residual:
            return self.hook_out(F.relu(x + self.hook_branch(self.scale * self.up(mixed))))
        return self.hook_out(F.relu(self.hook_branch(self.up(mixed))))


class Reduction(nn.Module):
    """Halve the map, double the channels: max-pool | strided 3x3 | 1x1-3x3-strided 3x3, concatenated."""

    def __init__(self, cin: int):
        super().__init__()
        half = cin // 2
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.conv = cbr(cin, half, 3, 2)
        self.deep = nn.Sequential(cbr(cin, half // 2, 1), cbr(half // 2, half // 2, 3), cbr(half // 2, cin - half, 3, 2))
        self.channels_out = 2 * cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, c, h, w]
        return torch.cat([self.pool(x), self.conv(x), self.deep(x)], dim=1)  # [batch, 2c, h/2, w/2]


class InceptionResNet(WorkbenchModel):
    """CIFAR-sized Inception-ResNet, or its plain twin (see the module docstring)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 16, blocks: tuple[int, int, int] = (2, 2, 2),
                 residual: bool = True, scale: float = 1.0):
        super().__init__()
        if width < 4 or width % 4:
            raise ValueError(f"width must be a multiple of 4, at least 4 (16 is the default), got {width}")
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != 3 or min(blocks) < 0:
            raise ValueError(f"blocks must be three counts >= 0 (blocks of type A, B, C), got {blocks}")
        if not 0 <= scale <= 1:
            raise ValueError(f"scale must lie in [0, 1] (the paper scales by 0.1-0.3; 1 is unscaled), got {scale}")
        if num_classes < 1 or in_chans < 1:
            raise ValueError(f"num_classes and in_chans must be positive, got {num_classes}, {in_chans}")
        self.num_classes, self.in_chans, self.width = num_classes, in_chans, width
        self.residual, self.scale, self.blocks = residual, float(scale), blocks
        c = 2 * width
        self.stem = nn.Sequential(cbr(in_chans, width, 3), cbr(width, c, 3))
        self.stage_a = nn.Sequential(*[InceptionBlock("A", c, residual, scale) for _ in range(blocks[0])])
        self.reduction_a = Reduction(c)
        c *= 2
        self.stage_b = nn.Sequential(*[InceptionBlock("B", c, residual, scale) for _ in range(blocks[1])])
        self.reduction_b = Reduction(c)
        c *= 2
        self.stage_c = nn.Sequential(*[InceptionBlock("C", c, residual, scale) for _ in range(blocks[2])])
        self.min_input_size = 4
        self.hook_pool = HookPoint()
        self.fc = nn.Linear(c, num_classes)
        self.hook_layers = ("stem",) + tuple(f"stage_a.{i}" for i in range(blocks[0])) + ("reduction_a",) + \
            tuple(f"stage_b.{i}" for i in range(blocks[1])) + ("reduction_b",) + \
            tuple(f"stage_c.{i}" for i in range(blocks[2]))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stage_a(self.stem(x))  # [batch, 2w, h, w]
        x = self.stage_b(self.reduction_a(x))  # [batch, 4w, h/2, w/2]
        x = self.stage_c(self.reduction_b(x))  # [batch, 8w, h/4, w/4]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # [batch, 8w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


@register_model
def inception_resnet(num_classes: int = 10, in_chans: int = 3, width: int = 16, blocks: tuple = (2, 2, 2),
                     scale: float = 1.0, residual: bool = True) -> InceptionResNet:
    """CIFAR-sized Inception-ResNet; ``scale`` multiplies each residual branch before the addition."""
    return InceptionResNet(num_classes, in_chans, width, blocks, residual=residual, scale=scale)


@register_model
def inception_cifar(num_classes: int = 10, in_chans: int = 3, width: int = 16, blocks: tuple = (2, 2, 2)) -> InceptionResNet:
    """The non-residual twin of ``inception_resnet``: the same branches, no residual additions."""
    return InceptionResNet(num_classes, in_chans, width, blocks, residual=False)
