"""Shifted and poisoned data: test-time adaptation (BatchNorm re-estimation, TENT, EcoTTA) and
its memory.

The data themselves live in :mod:`wb.data`.
"""
from .tta import *  # noqa: F401,F403
from . import tta

__all__ = [*tta.__all__]
