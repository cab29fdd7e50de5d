"""SimpleNet: a plain 13-layer network designed by principles rather than depth.

Hasanpour, Rouhani, Fayyaz & Sabokrou, *Lets Keep it simple, Using simple architectures to
outperform deeper and more complex architectures*, 2016, https://arxiv.org/abs/1608.06037.

Thirteen convolutions, each followed by BatchNorm and ReLU, with no skip connections: mostly 3x3
filters, max-pooling after groups of layers (the paper prefers pooling to strided convolutions, to
lose information late rather than early), two 1x1 layers near the end that widen to 2048 channels and
squeeze back to 256, global max pooling and one linear layer. The CIFAR layout (the authors' Caffe
network, 5.48M parameters) is::

    64, 128, 128, 128, P, 128, 128, 256, P, 256, 256, P, 512, 2048 (1x1), 256 (1x1), P, 256

The ImageNet layout (the authors' later "SimpleNetV1-5m") keeps the 13 layers with different
channel counts and downsamples early with strided convolutions (``stride_mode`` 1 or 2, total
stride 32)::

    64, 128, 128, 128, 128, 128, P, 256, 256, 256, 512, P, 2048 (1x1), 256 (1x1), 256

``scale`` multiplies every channel count (rounded), which is how the workbench builds SimpleNets at
a laptop's cost. Dropout, which the authors place after the pooling layers, is off by default so
that comparisons with the workbench's ResNets use the same regularization (``dropout=0.1`` restores
the paper's).

Hook points: ``features.L`` for each of the 13 conv layers (a conv-BN-ReLU unit), ``hook_pool``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint

# an int is a 3x3 conv-BN-ReLU with that many channels, (c, 1) a 1x1 one, "P" a 2x2 max-pool
LAYOUTS = {
    "cifar": (64, 128, 128, 128, "P", 128, 128, 256, "P", 256, 256, "P", 512, (2048, 1), (256, 1), "P", 256),
    "imagenet": (64, 128, 128, 128, 128, 128, "P", 256, 256, 256, 512, "P", (2048, 1), (256, 1), 256),
}
# which conv layers stride by 2 in the ImageNet layout (the authors' stride modes 1 and 2)
STRIDE_MODES = {0: (), 1: (0, 1, 2), 2: (0, 1, 3)}


class ConvUnit(nn.Sequential):
    """conv (with bias, as in the authors' network) - BatchNorm - ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2), nn.BatchNorm2d(cout, momentum=0.05),
                         nn.ReLU(inplace=True))


class SimpleNet(WorkbenchModel):
    """SimpleNet (see the module docstring)."""

    def __init__(self, layout: str = "cifar", num_classes: int = 10, in_chans: int = 3, scale: float = 1.0,
                 stride_mode: int = 0, dropout: float = 0.0):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"unknown SimpleNet layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
        if stride_mode not in STRIDE_MODES:
            raise ValueError(f"stride_mode must be one of {sorted(STRIDE_MODES)} (0: none, for 32x32 images), "
                             f"got {stride_mode}")
        if not 0.05 <= scale <= 4:
            raise ValueError(f"scale must lie in [0.05, 4] (1.0 is the paper's network), got {scale}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if num_classes < 1 or in_chans < 1:
            raise ValueError(f"num_classes and in_chans must be positive, got {num_classes}, {in_chans}")
        self.num_classes, self.in_chans, self.scale = num_classes, in_chans, scale
        layers, cin, conv_index, total_stride = [], in_chans, 0, 1
        strided = STRIDE_MODES[stride_mode]
        self.hook_layers = ()
        for item in LAYOUTS[layout]:
            if item == "P":
                layers.append(nn.MaxPool2d(2))
                if dropout:
                    layers.append(nn.Dropout2d(dropout))
                total_stride *= 2
                continue
            c, k = item if isinstance(item, tuple) else (item, 3)
            cout = max(1, round(c * scale))
            stride = 2 if conv_index in strided else 1
            total_stride *= stride
            layers.append(ConvUnit(cin, cout, k, stride))
            self.hook_layers += (f"features.{len(layers) - 1}",)
            cin, conv_index = cout, conv_index + 1
        self.features = nn.Sequential(*layers)
        self.min_input_size = total_stride
        self.hook_pool = HookPoint()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # Xavier with ReLU's gain, as the authors initialize
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.features(x)  # [batch, 256 scale, h/stride, w/stride]
        return self.hook_pool(torch.amax(x, dim=(2, 3)))  # global max pooling: [batch, 256 scale]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))  # [batch, classes]


@register_model
def simplenet(num_classes: int = 10, in_chans: int = 3, scale: float = 1.0, dropout: float = 0.0) -> SimpleNet:
    """SimpleNet for 32x32 images (the paper's CIFAR network: 5.48M parameters at ``scale=1``)."""
    return SimpleNet("cifar", num_classes, in_chans, scale, stride_mode=0, dropout=dropout)


@register_model
def simplenet_imagenet(num_classes: int = 1000, in_chans: int = 3, scale: float = 1.0, stride_mode: int = 2,
                       dropout: float = 0.0) -> SimpleNet:
    """SimpleNetV1-5m for 224x224 images (``stride_mode`` 1 or 2; total stride 32)."""
    if stride_mode == 0:
        raise ValueError("simplenet_imagenet needs stride_mode 1 or 2 (0 keeps full resolution: use `simplenet`)")
    return SimpleNet("imagenet", num_classes, in_chans, scale, stride_mode=stride_mode, dropout=dropout)
