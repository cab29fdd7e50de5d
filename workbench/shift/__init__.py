"""Shifted and poisoned data: test-time adaptation (BatchNorm re-estimation, TENT, EcoTTA) and the
continual corruption stream it runs on, unlearnable training data (CUDA's class-wise convolutions
and its controls), the defences trained against them (strong augmentation, adversarial training),
robustifying a large model cheaply (corruption augmentation, a tuned fraction, training cost), and screening metrics for a rare positive class (ROC AUC, sensitivity at a specificity) with a class-weighted task.

The data themselves live in :mod:`wb.data`: corrupted copies (``wb.load("cifar10", "test",
corruption="fog", severity=3)``), domain-shifted copies and generated glyph images.
"""
from .tta import *  # noqa: F401,F403
from .stream import *  # noqa: F401,F403
from .unlearnable import *  # noqa: F401,F403
from .defend import *  # noqa: F401,F403
from .robustify import *  # noqa: F401,F403
from .screening import *  # noqa: F401,F403
from . import defend, robustify, screening, stream, tta, unlearnable

__all__ = [*tta.__all__, *stream.__all__, *unlearnable.__all__, *defend.__all__, *robustify.__all__,
           *screening.__all__]
