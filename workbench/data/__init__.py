"""Datasets by name, as uint8 tensors in memory.

>>> import workbench as wb
>>> train = wb.data.load("shapes", "train")          # generated, no download
>>> train.images.shape, train.images.dtype
(torch.Size([10000, 3, 32, 32]), torch.uint8)

``load(name, split)`` reads a local mirror (``WORKBENCH_DATA_DIR``), a system
package, or the Hugging Face hub, in that order (see :mod:`workbench.data.sources`),
and caches the decoded tensors. ``Loader`` serves augmented batches from them.
``load(..., corruption="fog", severity=3)`` returns a CIFAR-10-C-style corrupted copy
(:mod:`workbench.data.corruptions`); ``cifar10_shifted``, ``fashion_mnist_inverted`` and
``fashion_mnist_textured`` are appearance-shifted copies; ``motion`` and ``motion_items`` are video clips
made from real images (:mod:`workbench.data.video`); ``make_scenes`` draws captioned scenes of garments with
boxes and masks (:mod:`workbench.data.scenes`).
"""
from __future__ import annotations

from typing import Callable

import torch

from . import corruptions, video
from .corruptions import corrupt, list_corruptions
from .dataset import ImageDataset, to_float, to_uint8, validate_images
from .loader import Loader, TensorLoader, random_crop_flip, random_stream
from .sources import CIFAR10, FASHION_MNIST, DataUnavailableError, Spec, load_spec
from .synthetic import SHAPES, make_shapes, spiral
from .degrade import DEGRADATIONS, PairedImages, PairLoader, degrade, paired
from .maps import ANSWERS, Maps, VQAData, VQALoader, make_maps, make_questions
from .scenes import Scenes, make_scenes
from .sequences import (ADDING_BASELINE_MSE, SequenceData, SequenceLoader, adding_problem, copy_baseline_loss,
                        copy_task)
from .video import COLOUR_FAMILIES, MOTIONS, filmstrip_frames, flow_filmstrips, motion_clips

__all__ = ["load", "list_datasets", "ImageDataset", "Loader", "TensorLoader", "DataUnavailableError", "to_float", "to_uint8",
           "random_crop_flip", "random_stream", "validate_images", "register_dataset", "spiral", "corrupt",
           "list_corruptions", "motion_clips", "filmstrip_frames", "flow_filmstrips", "MOTIONS", "COLOUR_FAMILIES", "SequenceData", "SequenceLoader",
           "adding_problem", "copy_task", "copy_baseline_loss", "ADDING_BASELINE_MSE", "Scenes", "make_scenes", "DEGRADATIONS",
           "PairedImages", "PairLoader", "degrade", "paired", "Maps", "make_maps", "make_questions", "VQAData",
           "VQALoader", "ANSWERS"]

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


def _shifted(ds: ImageDataset, name: str, images: torch.Tensor, change: str) -> ImageDataset:
    """``ds`` with new images (labels, classes and normalization kept: a model trained on the clean
    data meets the shifted copy with the clean statistics)."""
    return ImageDataset(images, ds.labels, list(ds.classes), name, ds.split, ds.mean, ds.std, f"{ds.source}; {change}")


@register_dataset("cifar10_shifted")
def _cifar10_shifted(split: str) -> ImageDataset:
    """CIFAR-10 with a fixed colour and style change per image (:func:`corruptions.style_shift`): hue
    rotated by 90-270 degrees, gamma 0.5-2, contrast x0.6-1, an oriented grating of amplitude 0.06; labels,
    objects and layout unchanged."""
    ds = _from_spec(CIFAR10, split)
    return _shifted(ds, "cifar10_shifted", corruptions.style_shift(ds.images, seed=1),
                    "style shift: hue rotation, gamma, contrast, grating texture (seed 1)")


@register_dataset("fashion_mnist_inverted")
def _fashion_mnist_inverted(split: str) -> ImageDataset:
    """Fashion-MNIST with every pixel inverted (``255 - x``): dark garments on a white ground."""
    ds = _from_spec(FASHION_MNIST, split)
    return _shifted(ds, "fashion_mnist_inverted", corruptions.invert(ds.images), "inverted (255 - x)")


@register_dataset("fashion_mnist_textured")
def _fashion_mnist_textured(split: str) -> ImageDataset:
    """Fashion-MNIST with a plaid texture (two gratings, up to 60% grey) laid under each garment
    (:func:`corruptions.texture_overlay`): the black ground becomes textured, bright garment pixels stay."""
    ds = _from_spec(FASHION_MNIST, split)
    return _shifted(ds, "fashion_mnist_textured", corruptions.texture_overlay(ds.images, seed=1),
                    "textured background: max(x, plaid texture up to 0.6) (seed 1)")


_CLIPS = {"train": (5_000, 1), "test": (1_000, 2)}


def _clips(split: str, label: str) -> ImageDataset:
    if split not in _CLIPS:
        raise ValueError(f"the motion clips have splits train, test, not {split!r}")
    n, seed = _CLIPS[split]
    return video.motion_clips(_from_spec(CIFAR10, split), _from_spec(FASHION_MNIST, split), n, frames=8, seed=seed,
                              label=label, split=split)


@register_dataset("motion")
def _motion(split: str) -> ImageDataset:
    """8-frame clips of a Fashion-MNIST garment moving over a CIFAR-10 photograph, labelled by the motion (left,
    right, up, down, towards, away, rotating either way): only the order of frames tells (:mod:`.video`).
    Filmstrips ``[3, 8 * 32, 32]``; train 5,000 clips, test 1,000 (other images, other draws)."""
    return _clips(split, "motion")


@register_dataset("motion_items")
def _motion_items(split: str) -> ImageDataset:
    """The clips of ``"motion"`` labelled by the garment's class instead: one frame suffices."""
    return _clips(split, "item")


@register_dataset("motion_colours")
def _motion_colours(split: str) -> ImageDataset:
    """The clips of ``"motion"`` labelled by the motion and the garment's colour family (24 classes): one frame
    tells the colour, only the order of frames the motion."""
    return _clips(split, "motion_colour")


def load(name: str, split: str = "train", subset: int | None = None, device: torch.device | str | None = None,
         seed: int = 0, corruption: str | None = None, severity: int | None = None,
         corruption_seed: int = 0) -> ImageDataset:
    """Load a dataset split as tensors.

    Args:
        name: one of :func:`list_datasets` (``"cifar10"``, ``"fashion_mnist"``, ``"shapes"``).
        split: ``"train"`` or ``"test"``.
        subset: keep a random subset of this many examples (the same for a given ``seed``);
            ``None`` keeps all. Notebooks pass a value per mode.
        device: move the tensors there (default: stay on the CPU).
        seed: chooses the subset.
        corruption: a CIFAR-10-C corruption (:func:`list_corruptions`) applied on ``device`` after the
            subset is taken; each image's random draws depend on its position in the full split and
            ``corruption_seed`` only, so a subset holds the same pixels as the whole corrupted split.
        severity: 0 (the clean data) to 5; needed with ``corruption``.
        corruption_seed: the seed of the corruption's random draws (noise, angles, fog).

    Returns:
        :class:`ImageDataset` with ``.images`` (uint8 ``[N, C, H, W]``), ``.labels`` (int64 ``[N]``)
        and ``.classes``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or split, an unknown corruption
            or a severity outside 0..5.
        DataUnavailableError: no source reachable; the message says what to install or set.

    Example:
        >>> fog = wb.load("cifar10", "test", corruption="fog", severity=3, subset=1000)
        >>> fog.name, fog.source   # ('cifar10/fog-3', '... fog at severity 3 ...')
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    if corruption is None and severity is not None:
        raise ValueError(f"severity={severity!r} needs a corruption: pass corruption=one of "
                         f"{', '.join(list_corruptions())}")
    if corruption is not None:
        if severity is None:
            raise ValueError(f"corruption={corruption!r} needs a severity: pass severity=0..5 "
                             "(0 is the clean data)")
        corruptions._check(corruption, severity, 3)
    full = _DATASETS[name](split)
    ds = full.subset(subset, seed=seed)
    if device is not None:
        ds = ds.to(device)
    if corruption is None or severity == 0:
        return ds
    index = full.subset_indices(subset, seed)
    index = (torch.arange(len(full)) if index is None else index).to(ds.images.device)
    images = corrupt(ds.images, corruption, severity, seed=corruption_seed, index=index)
    change = (f"corrupted: {corruption} at severity {severity} (CIFAR-10-C constants, arXiv:1903.12261, "
              f"corruption seed {corruption_seed})")
    return ImageDataset(images, ds.labels, list(ds.classes), f"{ds.name}/{corruption}-{severity}", ds.split,
                        ds.mean, ds.std, f"{ds.source}; {change}")


from . import glyphs  # noqa: E402,F401  (registers "glyphs" and "glyphs_plain"; it needs register_dataset above)
from . import retina  # noqa: E402,F401  (registers "retina"; it needs register_dataset above)
