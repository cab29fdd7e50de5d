"""Shared pieces of the unit tests."""
import torch
from torch import nn

import workbench as wb


def resnet8_with_statistics(seed: int = 0) -> nn.Module:
    """A ResNet-8 in eval mode whose BatchNorm layers hold non-trivial statistics and affine
    parameters, as after training (so folding and calibration have something to do)."""
    torch.manual_seed(seed)
    m = wb.create_model("resnet8").eval()
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.normal_(0, 0.1), b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5), b.bias.data.normal_(0, 0.1)
    return m
