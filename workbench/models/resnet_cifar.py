"""CIFAR ResNets and their plain (no-skip) twins.

He, Zhang, Ren & Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016,
https://arxiv.org/abs/1512.03385 (section 4.2, the CIFAR-10 networks).

A network of depth ``6n + 2``: a 3x3 stem convolution, three stages of ``n``
basic blocks with ``W``, ``2W`` and ``4W`` channels (the feature map halves at
the start of stages 2 and 3), global average pooling and one linear layer.
Each basic block computes::

    out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

where ``shortcut`` is the identity, or a 1x1 convolution with stride and a
BatchNorm when the shape changes (the paper's option B; the open_lth code that
*Training BatchNorm and Only BatchNorm* uses does the same). ``plainN`` drops
the shortcut altogether: the "plain" networks of the paper's figure 6.

Hook points, in forward order: ``stem``, ``layerS`` (a stage), ``layerS.B`` (a
block), ``layerS.B.hook_relu1`` (after the block's first ReLU),
``layerS.B.hook_branch`` (the residual branch before the addition),
``layerS.B.hook_out`` (the block's output), ``hook_pool`` (pooled features).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, skip: bool = True):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.hook_relu1 = HookPoint()
        self.hook_branch = HookPoint()
        self.hook_out = HookPoint()
        self.active = True  # False: the block is dropped and passes its input through (wb.quant.set_arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        if not self.active:  # a dropped block runs nothing
            return x
        out = self.hook_relu1(F.relu(self.bn1(self.conv1(x))))  # [batch, cout, h/stride, w/stride]
        out = self.hook_branch(self.bn2(self.conv2(out)))  # [batch, cout, h/stride, w/stride]
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.hook_out(F.relu(out))


class CifarResNet(WorkbenchModel):
    """ResNet (or plain network) for small images; see the module docstring."""

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, 110, ...), got {depth}")
        if width < 1 or num_classes < 1 or in_chans < 1:
            raise ValueError(f"width, num_classes and in_chans must be positive, got {width}, {num_classes}, {in_chans}")
        n = (depth - 2) // 6
        self.depth, self.blocks_per_stage, self.width = depth, n, width
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = nn.Sequential(conv3x3(in_chans, width), nn.BatchNorm2d(width), nn.ReLU())
        stages, cin = [], width
        for s, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(cin, cout, stride, skip=skip))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.hook_pool = HookPoint()
        self.fc = nn.Linear(cin, num_classes)
        self.hook_layers = ("stem",) + tuple(
            name for s in (1, 2, 3) for name in [f"layer{s}"] + [f"layer{s}.{b}" for b in range(n)]
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)          # [batch, W, h, w]
        x = self.layer1(x)        # [batch, W, h, w]
        x = self.layer2(x)        # [batch, 2W, h/2, w/2]
        x = self.layer3(x)        # [batch, 4W, h/4, w/4]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # [batch, 4W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


def _make(depth: int, skip: bool):
    def entry(num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip)
    kind = "ResNet" if skip else "plain network (no skip connections)"
    entry.__name__ = f"{'resnet' if skip else 'plain'}{depth}"
    entry.__doc__ = f"CIFAR {kind} of depth {depth} ({(depth - 2) // 6} blocks per stage), base width ``width``."
    return register_model(entry)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _make(_depth, skip=True)
    _make(_depth, skip=False)


@register_model
def resnet_cifar(depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True) -> CifarResNet:
    """CIFAR ResNet of any depth 6n+2 (``resnet_cifar(depth=866)`` for the BN-only paper's deepest)."""
    return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip)
