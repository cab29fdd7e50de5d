"""MobileNetV2: inverted residuals and linear bottlenecks.

Sandler, Howard, Zhu, Zhmoginov & Chen, *MobileNetV2: Inverted Residuals and Linear Bottlenecks*,
CVPR 2018, https://arxiv.org/abs/1801.04381 (table 1 for the layout, table 2 for the block).

An inverted residual block maps ``k`` channels to ``k'`` through a wide middle of ``t k`` channels::

    h = relu6(bn(conv1x1(x)))              # expand: k -> t k         (skipped when t = 1)
    h = relu6(bn(depthwise3x3(h, s)))      # filter each channel, stride s
    y = bn(conv1x1(h))                     # project: t k -> k', *no* nonlinearity (the linear bottleneck)
    out = x + y    when s = 1 and k = k', else y

The residual connects the thin bottlenecks, not the wide middle (the reverse of a ResNet bottleneck,
hence "inverted"); the paper's section 3.2 argues that a ReLU in the thin space destroys information,
so the projection stays linear. ``linear_bottleneck=False`` puts a ReLU6 after the projection to
test that argument.

``mobilenetv2`` is the paper's ImageNet network (table 1: a stride-2 stem of 32 channels, seven
stages of bottlenecks ``(t, c, n, s)``, a 1x1 convolution to 1280 channels, pooling, dropout and a
linear classifier; total stride 32). ``mobilenetv2_cifar`` is the same network for 32x32 images: the
stem and the second stage keep their stride (total stride 8), the usual adaptation for CIFAR.
Channel counts scale with ``width_mult`` and are rounded to multiples of 8 as in the reference
code; the last convolution keeps 1280 channels for multipliers below 1.

Hook points: ``stem``, ``blocks.I`` (every inverted residual), ``blocks.I.hook_expand`` (the wide
middle after its ReLU6), ``blocks.I.hook_project`` (the bottleneck before the addition), ``head``
(the 1x1 convolution to 1280 channels), ``hook_pool``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint

# table 1 of the paper: expansion t, output channels c, repeats n, first stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
WIDTH_RANGE = (0.05, 4.0)
EXPANSION_RANGE = (1, 12)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never below it nor more than 10% below ``v``
    (the rounding of the reference implementation, so counts match)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6), depthwise 3x3 (ReLU6), project (1x1, linear unless told otherwise)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, linear_bottleneck: bool = True):
        super().__init__()
        mid = int(round(cin * expansion))
        self.use_residual = stride == 1 and cin == cout
        self.expand = conv_bn(cin, mid, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.project_act = nn.Identity() if linear_bottleneck else nn.ReLU6()
        self.hook_expand = HookPoint()
        self.hook_project = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        h = self.hook_expand(self.depthwise(self.expand(x)))  # [batch, t cin, h/s, w/s]
        y = self.hook_project(self.project_act(self.project(h)))  # [batch, cout, h/s, w/s]
        return x + y if self.use_residual else y


class MobileNetV2(WorkbenchModel):
    """MobileNetV2 (see the module docstring)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0, expansion: int = 6,
                 linear_bottleneck: bool = True, dropout: float = 0.2, small_input: bool = False):
        super().__init__()
        lo, hi = WIDTH_RANGE
        if not lo <= width_mult <= hi:
            raise ValueError(f"width_mult must lie in [{lo}, {hi}] (the paper uses 0.35, 0.5, 0.75, 1.0, 1.4), "
                             f"got {width_mult}")
        if int(expansion) != expansion or not EXPANSION_RANGE[0] <= expansion <= EXPANSION_RANGE[1]:
            raise ValueError(f"expansion must be an integer in {list(range(EXPANSION_RANGE[0], EXPANSION_RANGE[1] + 1))} "
                             f"(the paper uses 6; 1 removes the expansion), got {expansion}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if num_classes < 1 or in_chans < 1:
            raise ValueError(f"num_classes and in_chans must be positive, got {num_classes}, {in_chans}")
        self.num_classes, self.in_chans = num_classes, in_chans
        self.width_mult, self.expansion, self.linear_bottleneck = width_mult, int(expansion), linear_bottleneck
        cin = make_divisible(32 * width_mult)
        self.last_channels = make_divisible(1280 * max(1.0, width_mult))
        self.stem = conv_bn(in_chans, cin, 3, 1 if small_input else 2)
        blocks, stride_total = [], 1 if small_input else 2
        for stage, (t, c, n, s) in enumerate(SETTINGS):
            cout = make_divisible(c * width_mult)
            if small_input and stage == 1:
                s = 1
            for i in range(n):
                stride = s if i == 0 else 1
                blocks.append(InvertedResidual(cin, cout, stride, t if t == 1 else self.expansion, linear_bottleneck))
                cin = cout
            stride_total *= s
        self.min_input_size = stride_total
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(cin, self.last_channels, 1)
        self.hook_pool = HookPoint()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.last_channels, num_classes)
        self.hook_layers = ("stem",) + tuple(f"blocks.{i}" for i in range(len(blocks))) + ("head",)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.blocks(self.stem(x))  # [batch, 320 w, h/stride, w/stride]
        x = self.head(x)  # [batch, 1280, h/stride, w/stride]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # [batch, 1280]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))  # [batch, classes]


@register_model
def mobilenetv2(num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0, expansion: int = 6,
                linear_bottleneck: bool = True, dropout: float = 0.2) -> MobileNetV2:
    """The paper's ImageNet MobileNetV2 (total stride 32; 3,504,872 parameters at width 1.0, 1,000 classes)."""
    return MobileNetV2(num_classes, in_chans, width_mult, expansion, linear_bottleneck, dropout, small_input=False)


@register_model
def mobilenetv2_cifar(num_classes: int = 10, in_chans: int = 3, width_mult: float = 1.0, expansion: int = 6,
                      linear_bottleneck: bool = True, dropout: float = 0.0) -> MobileNetV2:
    """MobileNetV2 for 32x32 images: stride-1 stem and second stage (total stride 8)."""
    return MobileNetV2(num_classes, in_chans, width_mult, expansion, linear_bottleneck, dropout, small_input=True)


def random_embedding(dim: int, seed: int = 0, in_dim: int = 2) -> torch.Tensor:
    """The random Gaussian matrix ``T`` (``dim x in_dim``, float64) that :func:`relu_roundtrip` and
    :func:`relu_information` embed points with, for a seed."""
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer (the width of the space the points are embedded in), got {dim}")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(int(dim), in_dim, generator=g, dtype=torch.float64)


def relu_roundtrip(points: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Figure 1 of the paper: embed ``points`` ``[n, 2]`` in ``dim`` dimensions by a random matrix
    ``T`` (``dim x 2``, Gaussian, seeded), apply ReLU, and map back with ``T``'s pseudo-inverse:
    ``pinv(T) relu(T x)``. Returns the recovered points ``[n, 2]`` (float64)."""
    x = torch.as_tensor(points, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"points must have shape [n, d], got {tuple(x.shape)}")
    t = random_embedding(dim, seed, x.shape[1])
    return torch.relu(x @ t.T) @ torch.linalg.pinv(t).T


def relu_information(points: torch.Tensor, dims=(2, 3, 5, 10, 15, 30), trials: int = 10, seed: int = 0):
    """How much of a low-dimensional manifold survives ReLU in ``dim`` dimensions (paper section 3.2).

    For each ``dim`` and ``trials`` random embeddings ``T`` (``dim x d``): ``y = relu(T x)`` for every point.

    * ``lost``: the share of points at which ``x -> relu(T x)`` cannot be inverted, because fewer than
      ``d`` of the ``dim`` units are active there (the active rows of a Gaussian ``T`` are independent,
      so ``d`` active units suffice: ``x = pinv(T_active) y_active``). Those points' neighbourhoods are
      squashed onto a lower-dimensional set: information destroyed.
    * ``linear_error``: the relative squared error of the best linear read-out of ``x`` from ``y``
      (least squares over the points): 0 when ``y`` keeps ``x`` linearly.
    * ``pinv_error``: the relative squared error of the paper's picture, ``pinv(T) y`` against ``x``.

    Returns a DataFrame with one row per (dim, trial).
    """
    import pandas as pd

    x = torch.as_tensor(points, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < x.shape[1] + 1:
        raise ValueError(f"points must have shape [n, d] with n > d, got {tuple(x.shape)}")
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    d, norm = x.shape[1], (x ** 2).sum()
    rows = []
    for dim in dims:
        for trial in range(trials):
            t = random_embedding(dim, seed * 100_003 + trial, d)
            pre = x @ t.T
            y = torch.relu(pre)
            lost = float(((pre > 0).sum(dim=1) < d).double().mean())
            design = torch.cat([y, torch.ones(len(y), 1, dtype=y.dtype)], dim=1)
            w = torch.linalg.lstsq(design, x).solution
            linear = float(((design @ w - x) ** 2).sum() / norm)
            pinv = float(((y @ torch.linalg.pinv(t).T - x) ** 2).sum() / norm)
            rows.append({"dim": int(dim), "trial": trial, "lost": lost, "linear_error": linear, "pinv_error": pinv})
    return pd.DataFrame(rows)
