"""The in-memory image dataset every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageDataset:
    """Images and labels held as tensors.

    Attributes:
        images: ``uint8`` tensor ``[N, C, H, W]``.
        labels: ``int64`` tensor ``[N]`` with values in ``0 .. len(classes) - 1``.
        classes: class names, index order.
        name, split: where it came from (``"cifar10"``, ``"train"``).
        mean, std: per-channel statistics in [0, 1] units, used by :meth:`normalize`.
        source: a human-readable description of the source actually used.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = "custom"
    split: str = "train"
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    source: str = ""

    def __post_init__(self) -> None:
        validate_images(self.images, "images")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            got = f"{self.labels.dtype} tensor of shape {tuple(self.labels.shape)}" if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__
            raise TypeError(f"labels must be an int64 tensor of shape [N], got {got}; convert with torch.as_tensor(labels, dtype=torch.int64)")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels: they must match one to one")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(
                f"labels range over {int(self.labels.min())}..{int(self.labels.max())} but there are "
                f"{len(self.classes)} classes; labels must lie in 0..{len(self.classes) - 1}"
            )
        c = self.images.shape[1]
        if not self.mean:
            self.mean = (0.5,) * c
        if not self.std:
            self.std = (0.25,) * c
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need {c} values (one per channel), got {len(self.mean)} and {len(self.std)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (f"ImageDataset({self.name!r}, split={self.split!r}, {n} images {c}x{h}x{w}, "
                f"{len(self.classes)} classes, device={self.images.device}, source={self.source!r})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def to(self, device: torch.device | str) -> "ImageDataset":
        """The same data on ``device`` (a no-op when already there)."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        return self._replace(self.images.to(device), self.labels.to(device))

    def subset(self, n: int | None, seed: int = 0, offset: int = 0) -> "ImageDataset":
        """A random subset of ``n`` examples (all when ``n`` is None or too large), the same for a given seed.

        ``offset`` skips the first ``offset`` examples of the seed's random order, so that
        ``subset(m, seed, offset=n)`` is disjoint from ``subset(n, seed)``: a validation set held out
        from the training subset (``wb.load(name, subset=n, seed=seed)`` draws the same ``n``)."""
        idx = self.subset_indices(n, seed, offset)
        if idx is None:
            return self
        idx = idx.to(self.images.device)
        return self._replace(self.images[idx], self.labels[idx])

    def subset_indices(self, n: int | None, seed: int = 0, offset: int = 0) -> torch.Tensor | None:
        """The positions, ascending, of the examples :meth:`subset` keeps; ``None`` when it keeps all."""
        if offset < 0:
            raise ValueError(f"offset must be at least 0, got {offset}")
        if offset >= len(self):
            raise ValueError(f"offset {offset} leaves no example of the {len(self):,}; lower it")
        if offset == 0 and (n is None or n >= len(self)):
            return None
        if n is not None and n < 1:
            raise ValueError(f"subset size must be at least 1, got {n}")
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=g)[offset:]
        return order[:n].sort().values

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images ``[N, C, H, W]`` to normalized float32, with this dataset's mean and std."""
        return to_float(images, self.mean, self.std)

    def to_uint8(self, x: torch.Tensor, stretch: bool = False) -> torch.Tensor:
        """Normalized float inputs back to uint8 images (the inverse of :meth:`normalize`); see :func:`to_uint8`."""
        return to_uint8(x, self.mean, self.std, stretch=stretch)

    def _replace(self, images: torch.Tensor, labels: torch.Tensor) -> "ImageDataset":
        return ImageDataset(images, labels, list(self.classes), self.name, self.split, self.mean, self.std, self.source)


def validate_images(images, what: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(images).__name__}; wrap with torch.as_tensor")
    if images.dtype != torch.uint8:
        raise TypeError(
            f"{what} must be uint8 (0..255) in an ImageDataset, got {images.dtype}; "
            "for float images in [0, 1] use (images * 255).round().to(torch.uint8)"
        )
    if images.ndim != 4:
        raise ValueError(f"{what} must have shape [N, C, H, W], got {tuple(images.shape)}"
                         + ("; add a channel dimension with images.unsqueeze(1)" if images.ndim == 3 else ""))
    if images.shape[1] not in (1, 3):
        hint = "; the channels look last: use images.permute(0, 3, 1, 2)" if images.shape[-1] in (1, 3) else ""
        raise ValueError(f"{what} must have 1 or 3 channels in dimension 1, got shape {tuple(images.shape)}{hint}")


_STATS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def to_float(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` images to float32 ``(x / 255 - mean) / std``."""
    validate_images(images)
    key = (tuple(mean), tuple(std), images.device)
    if key not in _STATS:
        m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1) * 255
        s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1) * 255
        _STATS[key] = (m, 1.0 / s)
    m, inv_s = _STATS[key]
    return (images.float() - m) * inv_s


def to_uint8(x: torch.Tensor, mean, std, stretch: bool = False) -> torch.Tensor:
    """Normalized float ``[N, C, H, W]`` inputs back to uint8 images: ``round(255 (x std + mean))``,
    clipped to 0..255; with ``stretch``, each image's own range is mapped to 0..255 first (for
    inputs that are not images of the data, such as optimized or distilled inputs)."""
    if not torch.is_floating_point(x) or x.ndim != 4:
        raise ValueError(f"to_uint8 takes float inputs [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    img = x.detach().float() * s + m
    if stretch:
        lo = img.amin((1, 2, 3), keepdim=True)
        hi = img.amax((1, 2, 3), keepdim=True)
        img = (img - lo) / (hi - lo).clamp_min(1e-8)
    return (img * 255).round().clamp(0, 255).to(torch.uint8)
