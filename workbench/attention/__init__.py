"""Attention against convolution: training extensions and tools for vision transformers.

>>> model = wb.create_model("resformer_tiny")                                                     # doctest: +SKIP
>>> wb.fit(model, train, test, task=wb.attention.MultiResolution(sizes=(40, 32, 24), eval_size=32))  # doctest: +SKIP
>>> wb.attention.evaluate_at_resolutions(model, test, [16, 24, 32, 48, 64])                          # doctest: +SKIP
"""
from .maps import DISTANCE_METRICS, effective_kernel, mean_attention_distance
from .multires import (RESIZE_MODES, TEACHERS, MultiResolution, evaluate_at_resolutions, resize,
                       scale_consistency)

__all__ = ["effective_kernel", "mean_attention_distance", "DISTANCE_METRICS", "MultiResolution", "evaluate_at_resolutions", "resize", "scale_consistency", "RESIZE_MODES", "TEACHERS"]
