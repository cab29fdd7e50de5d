"""VGG networks for small images, with BatchNorm.

Simonyan & Zisserman, *Very Deep Convolutional Networks for Large-Scale Image Recognition*, ICLR
2015, https://arxiv.org/abs/1409.1556 (table 1, configurations A and D).

Stacks of 3x3 conv-BN-ReLU layers separated by 2x2 max-pooling, no skip connections. For 32x32
images the five pooling stages end at 1x1, and one linear layer classifies the 512 channels (the
common CIFAR adaptation; the paper's three fully connected layers of 4096 units are for 224x224
ImageNet crops). ``scale`` multiplies every channel count, so a VGG can be built at a laptop's cost.

Hook points: ``features.L`` for each conv layer (a conv-BN-ReLU unit), ``hook_pool``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint

CONFIGS = {
    11: (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
    16: (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"),
}


class VGG(WorkbenchModel):
    """VGG with BatchNorm for 32x32 images (see the module docstring)."""

    def __init__(self, depth: int = 11, num_classes: int = 10, in_chans: int = 3, scale: float = 1.0):
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        if not 0.05 <= scale <= 4:
            raise ValueError(f"scale must lie in [0.05, 4] (1.0 is the paper's widths), got {scale}")
        if num_classes < 1 or in_chans < 1:
            raise ValueError(f"num_classes and in_chans must be positive, got {num_classes}, {in_chans}")
        self.num_classes, self.in_chans, self.scale = num_classes, in_chans, scale
        layers, cin = [], in_chans
        self.hook_layers = ()
        for item in CONFIGS[depth]:
            if item == "P":
                layers.append(nn.MaxPool2d(2))
                continue
            cout = max(1, round(item * scale))
            layers.append(nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                        nn.ReLU(inplace=True)))
            self.hook_layers += (f"features.{len(layers) - 1}",)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.min_input_size = 32
        self.hook_pool = HookPoint()
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.features(x)  # [batch, 512 scale, h/32, w/32]
        return self.hook_pool(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))  # [batch, 512 scale]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


@register_model
def vgg11(num_classes: int = 10, in_chans: int = 3, scale: float = 1.0) -> VGG:
    """VGG-11 (configuration A) with BatchNorm, for 32x32 images."""
    return VGG(11, num_classes, in_chans, scale)


@register_model
def vgg16(num_classes: int = 10, in_chans: int = 3, scale: float = 1.0) -> VGG:
    """VGG-16 (configuration D) with BatchNorm, for 32x32 images."""
    return VGG(16, num_classes, in_chans, scale)
