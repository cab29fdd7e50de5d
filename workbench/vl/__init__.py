"""Vision and language (issue 24): contrastive and ranking objectives as ``wb.fit`` tasks, zero-shot
classification with prompts and descriptions, retrieval metrics, region tools (box IoU, non-maximum
suppression, RoIAlign, COCO AP), ViLD's open-vocabulary detection by distillation, and VQA.

The data are the captioned scenes of :mod:`wb.data.scenes` (``make_scenes``, ``tokenize``); the models are
``clip_tiny`` (two towers) and ``vqa_tiny`` in :mod:`wb.models`.
"""
from .losses import *  # noqa: F401,F403
from .zeroshot import *  # noqa: F401,F403
from .regions import *  # noqa: F401,F403
from .vild import *  # noqa: F401,F403
from .efficiency import *  # noqa: F401,F403
from .vqa import *  # noqa: F401,F403
from .descriptions import *  # noqa: F401,F403
from .matching import *  # noqa: F401,F403
from .gist import *  # noqa: F401,F403
from . import descriptions, efficiency, gist, losses, matching, regions, vild, vild_eval, vqa, zeroshot

__all__ = [*losses.__all__, *zeroshot.__all__, *regions.__all__, *vild.__all__, *efficiency.__all__, *vqa.__all__,
           *descriptions.__all__, *matching.__all__, *gist.__all__]
