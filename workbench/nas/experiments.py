"""What the architecture-search notebooks train: the supernets and the found networks as registered
models (so ``wb.train_model`` caches them and ``wb.sweep`` collects their runs), smaller images for
laptop-sized searches, and one training run of a found network as a sweep record.

* Registered models: ``nas_cell_supernet`` and ``nas_cell_network`` (NASNet cells, Zoph et al. 2018,
  https://arxiv.org/abs/1707.07012), ``nas_vit_supernet`` and ``nas_vit_stages`` (multi-stage ViTs,
  ViT-ResNAS, Liao et al. 2021, https://arxiv.org/abs/2109.00642). An architecture is a model argument
  (``arch=``, a JSON dict), so the cache tells every architecture apart.
* :func:`downsample` and :func:`load_resized`: CIFAR-10 at 16x16 for a search that fits a laptop.
* :func:`network_run`: one cached training run of a registered model on resized data, as the record
  ``wb.sweep`` keeps (the fields of ``wb.train.model_run``).

>>> import workbench as wb
>>> from workbench.nas import experiments as nx
>>> net = wb.create_model("nas_cell_network", arch=wb.nas.cell_space(2).sample(0), cells=1, width=8)
>>> net.kinds
['normal', 'reduce', 'normal', 'reduce', 'normal']
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..data import ImageDataset, load
from ..models._registry import register_model
from ..train.runs import run_record
from .cells import OPS, CellNetwork, CellSupernet, cell_network
from .vit_stages import ViTStages, ViTStagesSupernet, vit_stage_space, vit_stages_network

__all__ = ["downsample", "load_resized", "network_run", "nas_cell_supernet", "nas_cell_network",
           "nas_vit_supernet", "nas_vit_stages"]


# -- registered models ------------------------------------------------------------------------------------

@register_model
def nas_cell_supernet(blocks: int = 3, ops: Sequence[str] = tuple(OPS), cells: int = 1, stages: int = 3,
                      width: int = 8, num_classes: int = 10, in_chans: int = 3) -> CellSupernet:
    """Every NASNet cell of ``wb.nas.cell_space(blocks, ops)`` in one weight-sharing network (``set_arch``)."""
    return CellSupernet(blocks=blocks, ops=tuple(ops), cells=cells, stages=stages, width=width,
                        num_classes=num_classes, in_chans=in_chans)


@register_model
def nas_cell_network(arch: Mapping[str, Any], cells: int = 2, width: int = 16, stages: int = 3,
                     num_classes: int = 10, in_chans: int = 3) -> CellNetwork:
    """A found cell architecture stacked ``cells`` deep per stage (``wb.nas.cell_network``), trained from scratch."""
    return cell_network(arch, cells=cells, width=width, stages=stages, num_classes=num_classes, in_chans=in_chans)


@register_model
def nas_vit_supernet(depths: Sequence[Sequence[int]] = ((1, 2), (1, 2, 3), (1, 2)),
                     widths: Sequence[Sequence[int]] = ((32, 48), (64, 96), (128, 192)),
                     heads: Sequence[Sequence[int]] = ((1, 2), (2, 4), (4, 8)),
                     mlp_ratios: Sequence[Sequence[float]] = ((2.0, 4.0), (2.0, 4.0), (2.0, 4.0)),
                     img_size: int = 32, patch: int = 4, num_classes: int = 10, in_chans: int = 3) -> ViTStagesSupernet:
    """The elastic multi-stage ViT over ``wb.nas.vit_stage_space(depths, widths, heads, mlp_ratios)``."""
    space = vit_stage_space(depths, widths, heads, mlp_ratios)
    return ViTStagesSupernet(space, num_classes=num_classes, in_chans=in_chans, img_size=img_size, patch=patch)


@register_model
def nas_vit_stages(arch: Mapping[str, Any], img_size: int = 32, patch: int = 4, num_classes: int = 10,
                   in_chans: int = 3) -> ViTStages:
    """A multi-stage ViT of ``arch`` (``wb.nas.vit_stages_network``; ``vit_tiny_arch()`` is one stage)."""
    return vit_stages_network(arch, num_classes=num_classes, in_chans=in_chans, img_size=img_size, patch=patch)


# -- data -------------------------------------------------------------------------------------------------

def downsample(ds: ImageDataset, size: int) -> ImageDataset:
    """``ds`` with every image average-pooled to ``size x size`` (rounded back to uint8); ``size`` divides
    the image side. The same labels, classes and normalization."""
    side = ds.images.shape[-1]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or side % size or ds.images.shape[-2] != side:
        raise ValueError(f"size must be a whole number that divides the side of the square images ({side}), such as "
                         f"{side // 2}; got {size!r}")
    if size == side:
        return ds
    small = F.avg_pool2d(ds.images.float(), side // size).round().to(torch.uint8)  # [N, C, size, size]
    return dataclasses.replace(ds, images=small)


def load_resized(name: str = "cifar10", split: str = "train", subset: int | None = None, size: int | None = None,
                 seed: int = 0, offset: int = 0) -> ImageDataset:
    """``wb.load(name, split)``'s random subset (``offset`` skips the first examples of the same order, so
    ``offset=n`` is held out from ``subset=n``), downsampled to ``size`` (``None``: as stored)."""
    ds = load(name, split)
    ds = ds.subset(subset, seed=seed, offset=offset)
    return ds if size is None else downsample(ds, size)


# -- one run as a sweep record ----------------------------------------------------------------------------

def network_run(model: str, seed: int, *, model_kwargs: Mapping[str, Any] | None = None, dataset: str = "cifar10",
                train_subset: int | None = None, test_subset: int | None = None, image_size: int | None = None,
                **fit_kwargs) -> dict[str, Any]:
    """Train the registered ``model`` once (cached by ``wb.train_model``) on ``image_size`` images and describe
    the run: the record of ``wb.train.model_run`` (``test_acc``, ``train_acc``, ``train_loss``, the curves,
    ``params``, ``macs`` per image, ``diverged``, ``seconds``). The subsets are the same for every seed."""
    train = load_resized(dataset, "train", train_subset, image_size)
    test = load_resized(dataset, "test", test_subset, image_size)
    return run_record(model, train, test, seed, model_kwargs=model_kwargs, **fit_kwargs)
