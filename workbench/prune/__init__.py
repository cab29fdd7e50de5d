"""Pruning: masks as data, the criteria that choose them and sparse training through ``wb.fit``.

>>> import workbench as wb
>>> model = wb.create_model("resnet8")
>>> masks = wb.prune.magnitude_masks(model, 0.5)
>>> round(wb.prune.sparsity_report(wb.prune.apply_masks(model, masks)).attrs["sparsity"], 2)
0.5
"""
from .masks import (Masked, apply_masks, erk_densities, magnitude_masks, prunable, random_masks, snip_masks,
                    sparsity_report)

__all__ = ["Masked", "apply_masks", "erk_densities", "magnitude_masks", "prunable", "random_masks", "snip_masks",
           "sparsity_report"]
