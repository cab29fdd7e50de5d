"""Batches from tensors in memory, with augmentation done on whole batches.

A per-image Python ``DataLoader`` spends most of a small CNN's epoch in Python
for 32x32 images. Here an epoch is a permutation of indices; each batch is one
gather, an optional random crop (with zero padding) and horizontal flip done as
tensor ops on uint8, and one conversion to normalized float, all on the device
where the images live.

Randomness is a pure function of ``(seed, epoch, batch index)``: a run resumed
mid-epoch sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .dataset import ImageDataset, to_float

AUGMENTATIONS = (None, "crop_flip", "flip", "crop")


def random_stream(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator that is a pure function of ``(seed, *parts)`` (say seed, epoch, batch), independent
    of every other stream and of the global RNG: what resumable randomness is built on."""
    s = seed
    for p in parts:
        s = (s * 1_000_003 + p + 1) % (2 ** 63 - 1)
    return torch.Generator().manual_seed(s)



def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     crop: bool = True, flip: bool = True) -> torch.Tensor:
    """Random ``padding``-pixel-shift crop with zero padding, and horizontal flip, per image.

    Args:
        images: ``[N, C, H, W]`` (any dtype, any device).
        generator: a CPU generator (the draws are moved to the images' device).
    """
    n, c, h, w = images.shape
    dev = images.device
    if crop and padding > 0:
        k = 2 * padding + 1
        shift = torch.randint(0, k, (2, n), generator=generator).to(dev)
        padded = torch.nn.functional.pad(images, (padding,) * 4)  # [N, C, H+2p, W+2p]
        sn, sc, sh, sw = padded.stride()
        # every k x k window of every image as a view (no copy), then one gather of the chosen window
        windows = padded.as_strided((n, c, k, k, h, w), (sn, sc, sh, sw, sh, sw))  # [N, C, dy, dx, H, W]
        images = windows[torch.arange(n, device=dev), :, shift[0], shift[1]]      # [N, C, H, W]
    if flip:
        do = (torch.rand(n, generator=generator) < 0.5).nonzero().squeeze(1).to(dev)
        if not (crop and padding > 0):
            images = images.clone()  # never write into the caller's tensor
        images[do] = images[do].flip(3)  # in place on our own copy: no full-size temporaries
    return images


class Loader:
    """Iterate over ``(x, y)`` batches of a dataset.

    Args:
        dataset: an :class:`ImageDataset`.
        batch_size: examples per batch.
        shuffle: a new order each epoch (a function of ``seed`` and the epoch).
        augment: ``None``, ``"crop_flip"``, ``"crop"`` or ``"flip"``.
        device: where the batches are made (the images are moved there once).
        drop_last: drop a final incomplete batch.
        channels_last: return ``x`` in channels-last memory format (faster convolutions on CPU).
        seed: the seed of the order and the augmentation.

    ``x`` is normalized float32 ``[B, C, H, W]``, ``y`` int64 ``[B]``.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int = 128, shuffle: bool = True,
                 augment: str | None = None, device: torch.device | str | None = None,
                 drop_last: bool = False, channels_last: bool = False, seed: int = 0):
        if not isinstance(dataset, ImageDataset):
            raise TypeError(f"Loader needs an ImageDataset (from wb.data.load), got {type(dataset).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {augment!r}; choose one of {AUGMENTATIONS}")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty: there is nothing to iterate over")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"drop_last=True with {len(dataset)} examples and batch_size={batch_size} gives no batch; "
                             "lower batch_size or set drop_last=False")
        from .. import config

        self.device = torch.device(device) if device is not None else config.device()
        self.dataset = dataset.to(self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last, self.channels_last, self.seed = drop_last, channels_last, seed
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> torch.Tensor:
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        e = self.epoch if epoch is None else epoch
        return torch.randperm(n, generator=random_stream(self.seed, e)).to(self.device)

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Make one batch from dataset indices."""
        images = self.dataset.images[idx]
        if self.augment is not None:
            images = random_crop_flip(images, generator or torch.Generator().manual_seed(self.seed),
                                      crop="crop" in self.augment, flip="flip" in self.augment)
        x = to_float(images, self.dataset.mean, self.dataset.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.dataset.labels[idx]

    def iter_from(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the current epoch, beginning at batch ``start`` (to resume mid-epoch)."""
        order = self.order()
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.batch(idx, random_stream(self.seed, self.epoch, b) if self.augment else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)


class TensorLoader(Loader):
    """The base of loaders over data that are not an :class:`ImageDataset` (sequences, image pairs, questions):
    the same order (a function of ``seed`` and the epoch), resuming and batching as :class:`Loader`, no
    augmentation. A subclass names its data type in ``data_type`` (and how to make it in ``made_by``) and
    defines :meth:`batch`; the data need ``__len__`` and ``to(device)``."""

    data_type: type = object
    made_by: str = ""

    def __init__(self, data, batch_size: int = 128, shuffle: bool = True, device: torch.device | str | None = None,
                 drop_last: bool = False, seed: int = 0):
        if not isinstance(data, self.data_type):
            raise TypeError(f"{type(self).__name__} needs {self.data_type.__name__} ({self.made_by}), got "
                            f"{type(data).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(data) == 0:
            raise ValueError("the data are empty: there is nothing to iterate over")
        from .. import config

        self.device = torch.device(device) if device is not None else config.device()
        self.dataset = data.to(self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, None
        self.drop_last, self.channels_last, self.seed = drop_last, False, seed
        self.epoch = 0

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        raise NotImplementedError(f"{type(self).__name__} must define batch(idx)")
