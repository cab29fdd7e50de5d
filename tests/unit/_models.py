"""Shared pieces of the unit tests."""
import torch
from torch import nn

import workbench as wb


def with_statistics(name: str = "resnet8", seed: int = 0, spread: float = 0.1, **model_kwargs) -> nn.Module:
    """A registered model whose BatchNorm layers hold non-trivial statistics and affine parameters, as
    after training (so folding, calibration and pruning have something to do): running means and
    biases drawn with standard deviation ``spread``. In train mode, as ``create_model`` returns it."""
    torch.manual_seed(seed)
    m = wb.create_model(name, **model_kwargs)
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.normal_(0, spread), b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5), b.bias.data.normal_(0, spread)
    return m


def resnet8_with_statistics(seed: int = 0) -> nn.Module:
    """A ResNet-8 in eval mode with trained-looking BatchNorm layers (see :func:`with_statistics`)."""
    return with_statistics("resnet8", seed).eval()
