"""Shifted and poisoned data: test-time adaptation (BatchNorm re-estimation, TENT, EcoTTA) and the
continual corruption stream it runs on, unlearnable training data (CUDA's class-wise convolutions
and its controls) and the defences trained against them (strong augmentation, adversarial training).

The data themselves live in :mod:`wb.data`: corrupted copies (``wb.load("cifar10", "test",
corruption="fog", severity=3)``), domain-shifted copies and generated glyph images.
"""
from .tta import *  # noqa: F401,F403
from .stream import *  # noqa: F401,F403
from .unlearnable import *  # noqa: F401,F403
from .defend import *  # noqa: F401,F403
from . import defend, stream, tta, unlearnable

__all__ = [*tta.__all__, *stream.__all__, *unlearnable.__all__, *defend.__all__]
