"""Shifted and poisoned data: test-time adaptation (BatchNorm re-estimation, TENT, EcoTTA) and
unlearnable training data (CUDA's class-wise convolutions and its controls).

The data themselves live in :mod:`wb.data`: corrupted copies (``wb.load("cifar10", "test",
corruption="fog", severity=3)``), domain-shifted copies and generated glyph images.
"""
from .tta import *  # noqa: F401,F403
from .unlearnable import *  # noqa: F401,F403
from . import tta, unlearnable

__all__ = [*tta.__all__, *unlearnable.__all__]
