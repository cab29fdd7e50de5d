"""Datasets by name, as uint8 tensors in memory.

>>> import workbench as wb
>>> train = wb.data.load("shapes", "train")          # generated, no download
>>> train.images.shape, train.images.dtype
(torch.Size([10000, 3, 32, 32]), torch.uint8)

``load(name, split)`` reads a local mirror (``WORKBENCH_DATA_DIR``), a system
package, or the Hugging Face hub, in that order (see :mod:`workbench.data.sources`),
and caches the decoded tensors. ``Loader`` serves augmented batches from them.
"""
from __future__ import annotations

from typing import Callable

import torch

from .dataset import ImageDataset, to_float, to_uint8, validate_images
from .loader import Loader, random_crop_flip, random_stream
from .sources import CIFAR10, FASHION_MNIST, DataUnavailableError, Spec, load_spec
from .synthetic import SHAPES, make_shapes, spiral

__all__ = ["load", "list_datasets", "ImageDataset", "Loader", "DataUnavailableError", "to_float", "to_uint8",
           "random_crop_flip", "random_stream", "validate_images", "register_dataset", "spiral"]

_DATASETS: dict[str, Callable[[str], ImageDataset]] = {}


def register_dataset(name: str):
    """Decorator: register ``fn(split) -> ImageDataset`` under ``name``."""
    def deco(fn):
        _DATASETS[name] = fn
        return fn
    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def _from_spec(spec: Spec, split: str) -> ImageDataset:
    if split not in spec.splits:
        raise ValueError(f"{spec.name} has splits {', '.join(spec.splits)}, not {split!r}")
    images, labels, source = load_spec(spec, split)
    return ImageDataset(images, labels, list(spec.classes), spec.name, split, spec.mean, spec.std, source)


@register_dataset("cifar10")
def _cifar10(split: str) -> ImageDataset:
    return _from_spec(CIFAR10, split)


@register_dataset("fashion_mnist")
def _fashion_mnist(split: str) -> ImageDataset:
    return _from_spec(FASHION_MNIST, split)


@register_dataset("shapes")
def _shapes(split: str) -> ImageDataset:
    sizes = {"train": (10_000, 1), "test": (2_000, 2)}
    if split not in sizes:
        raise ValueError(f"shapes has splits train, test, not {split!r}")
    n, seed = sizes[split]
    images, labels = make_shapes(n, seed=seed)
    return ImageDataset(images, labels, list(SHAPES), "shapes", split, (0.5, 0.5, 0.5), (0.3, 0.3, 0.3), "generated")


def load(name: str, split: str = "train", subset: int | None = None, device: torch.device | str | None = None,
         seed: int = 0) -> ImageDataset:
    """Load a dataset split as tensors.

    Args:
        name: one of :func:`list_datasets` (``"cifar10"``, ``"fashion_mnist"``, ``"shapes"``).
        split: ``"train"`` or ``"test"``.
        subset: keep a random subset of this many examples (the same for a given ``seed``);
            ``None`` keeps all. Notebooks pass a value per mode.
        device: move the tensors there (default: stay on the CPU).
        seed: chooses the subset.

    Returns:
        :class:`ImageDataset` with ``.images`` (uint8 ``[N, C, H, W]``), ``.labels`` (int64 ``[N]``)
        and ``.classes``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or split.
        DataUnavailableError: no source reachable; the message says what to install or set.
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    ds = _DATASETS[name](split).subset(subset, seed=seed)
    return ds.to(device) if device is not None else ds
