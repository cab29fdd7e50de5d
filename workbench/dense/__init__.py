"""Dense prediction, restoration and generation (issue 25): image-quality metrics, the effective receptive
field, and restoration as a ``wb.fit`` task.

The data live in :mod:`wb.data` (``degrade``, ``paired`` and ``PairLoader`` for ``(degraded, clean)`` pairs;
``make_scenes`` for segmentation masks).
"""
from .metrics import *  # noqa: F401,F403
from .tasks import *  # noqa: F401,F403
from . import metrics, tasks

__all__ = [*metrics.__all__, *tasks.__all__]
