"""A deep fully-connected network: the architecture with no inductive bias for images.

*Training the Untrainable* (Subramaniam et al. 2024, https://arxiv.org/abs/2410.20035)
uses such a network as the target that overfits without guidance. Each hidden
layer is ``Linear -> [BatchNorm1d] -> ReLU``; hook points ``layers.i`` name the
output of hidden layer ``i`` and ``hook_in`` the flattened input.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint


class MLP(WorkbenchModel):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, img_size: int = 32, depth: int = 8,
                 width: int = 512, norm: str | None = None):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
        if norm not in (None, "bn"):
            raise ValueError(f"norm must be None or 'bn', got {norm!r}")
        self.in_chans, self.num_classes, self.img_size = in_chans, num_classes, img_size
        self.depth, self.width = depth, width
        self.hook_in = HookPoint()
        layers, fan_in = [], in_chans * img_size * img_size
        for _ in range(depth):
            parts = [nn.Linear(fan_in, width)]
            if norm == "bn":
                parts.append(nn.BatchNorm1d(width))
            parts.append(nn.ReLU())
            layers.append(nn.Sequential(*parts))
            fan_in = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(fan_in, num_classes)
        self.hook_layers = tuple(f"layers.{i}" for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.hook_in(torch.flatten(x, 1))  # [batch, C*H*W]
        return self.fc(self.layers(h))         # [batch, classes]


@register_model
def mlp(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, depth: int = 8, width: int = 512,
        norm: str | None = None) -> MLP:
    """Deep fully-connected network with ``depth`` hidden layers of ``width`` units."""
    return MLP(num_classes, in_chans, img_size, depth, width, norm)
