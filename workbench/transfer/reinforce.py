"""Dataset reinforcement (Faghri, Pouransari, Mehta, Farajtabar, Farhadi, Rastegari & Tuzel, *Reinforce
Data, Multiply Impact: Improved Model Accuracy and Robustness with Dataset Reinforcement*, ICCV 2023,
https://arxiv.org/abs/2303.08983).

Distillation runs a teacher at every step of every student. Dataset reinforcement runs it once: for
each training image ``i`` and each of ``K`` fixed augmentations ``k`` it stores the teacher's
probabilities on the augmented image, sparsely (the top ``k`` classes: class indices as uint8 or
int16, probabilities as float16). A student then trains on the *reinforced set*: each step picks
one stored augmentation per image, regenerates exactly that augmented image and minimizes::

    KL( q || softmax(student(aug_k(x_i))) ),   q = top-k probabilities / their sum

(the teacher's probabilities renormalised over the stored classes; temperature 1, as the paper).
The augmentation's parameters are a pure function of ``(seed, i, k)``
(:func:`workbench.data.random_stream`), so nothing but the probabilities is stored, and a student
sees bitwise the image the teacher saw.

>>> rset = wb.transfer.reinforce_dataset(teacher, train, augmentations=20, top_k=5)            # doctest: +SKIP
>>> rset.stats["teacher_forwards"], rset.nbytes                                        # doctest: +SKIP
>>> task = wb.transfer.ReinforcedDistillation(rset)                                    # doctest: +SKIP
>>> wb.fit(student, rset.loader(train, batch_size=128), test, task=task, epochs=15)    # doctest: +SKIP

:func:`train_reinforced` is the cached version of that last line, :func:`student_run` one sweep
record of a student trained normally, with a live teacher or from the reinforced set, and
:func:`cost_ledger` the cumulative cost of training several students each way.

The build is cached (:func:`workbench.cached`): it runs in chunks of images, each written atomically
with a checksum, so a killed build resumes at the first missing chunk and a damaged chunk is
recomputed; the finished set is one more atomic entry, and a set is complete or absent.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..cache import atomic_write_bytes, cache_key, cache_path, cached, dumps, loads
from ..data import ImageDataset, Loader, random_stream, to_float
from ..models import create_model
from ..train import Task, data_fingerprint, model_fingerprint, train_model
from ..train.cached import _data_key, cached_fit
from ..train.tasks import check_data_fits_model, check_image_batch, classification_loss
from ..train.trainer import TrainResult

__all__ = ["POLICIES", "ReinforcedSet", "ReinforcedLoader", "ReinforcedDistillation", "reinforce_dataset",
           "sparse_topk", "sparse_kl_loss", "augmentation_params", "replay_augmentation", "augmented_images",
           "train_reinforced", "student_run", "cost_ledger", "payback"]

POLICIES = ("crop_flip", "crop_flip_cutmix")
VARIANTS = ("normal", "live", "reinforced")
_SALT = 24  # the paper's number in papers.md: keeps these streams apart from the Loader's (seed, epoch, batch)


# -- the augmentations, replayed exactly ------------------------------------------------------------

def augmentation_params(seed: int, index: torch.Tensor, k: torch.Tensor, *, n_images: int, size: tuple[int, int],
                        policy: str = "crop_flip", padding: int = 4) -> torch.Tensor:
    """The parameters of augmentation ``k`` of image ``index``, a pure function of ``(seed, index, k)``.

    Returns:
        int64 ``[B, P]``: ``dy, dx, flip`` (the window of the zero-padded image, and a horizontal flip)
        for ``"crop_flip"``; ``"crop_flip_cutmix"`` adds CutMix's partner image ``j`` with its own
        ``dy, dx, flip`` and the box ``y0, y1, x0, x1`` pasted from it (area ``1 - lambda``,
        ``lambda ~ U(0, 1)``).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    h, w = size
    rows = []
    for i, kk in zip(torch.as_tensor(index).tolist(), torch.as_tensor(k).tolist()):
        g = random_stream(seed, _SALT, i, kk)
        row = _shift_flip(g, padding)
        if policy == "crop_flip_cutmix":
            partner = int(torch.randint(0, n_images, (1,), generator=g))
            crop2 = _shift_flip(g, padding)
            side = math.sqrt(1.0 - float(torch.rand(1, generator=g)))  # the box covers 1 - lambda of the image
            bh, bw = int(h * side), int(w * side)
            cy, cx = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
            row += [partner, *crop2, max(cy - bh // 2, 0), min(cy + bh // 2, h), max(cx - bw // 2, 0),
                    min(cx + bw // 2, w)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 3 if policy == "crop_flip" else 11)


def _shift_flip(g: torch.Generator, padding: int) -> list[int]:
    """``[dy, dx, flip]``: a window of the zero-padded image and a coin for the horizontal flip."""
    return torch.randint(0, 2 * padding + 1, (2,), generator=g).tolist() + [int(torch.rand(1, generator=g) < 0.5)]


def _crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int
               ) -> torch.Tensor:
    """The window at ``(dy, dx)`` of each zero-padded image, mirrored where ``flip``: one gather."""
    n, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding,) * 4)                                     # [N, C, H+2p, W+2p]
    cols = torch.arange(w, device=dev).expand(n, w)
    cols = torch.where(flip.to(dev)[:, None].bool(), w - 1 - cols, cols) + dx.to(dev)[:, None]  # [N, W]
    rows = torch.arange(h, device=dev)[None, :] + dy.to(dev)[:, None]          # [N, H]
    out = padded[torch.arange(n, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def replay_augmentation(images: torch.Tensor, params: torch.Tensor, padding: int = 4,
                        partners: torch.Tensor | None = None) -> torch.Tensor:
    """Apply augmentations given by their parameters (:func:`augmentation_params`) to uint8 images.

    Args:
        images: ``[B, C, H, W]`` (any dtype; uint8 keeps it exact).
        params: ``[B, 3]`` (crop and flip) or ``[B, 11]`` (with CutMix).
        partners: the CutMix partners' images ``[B, C, H, W]`` (``data.images[params[:, 3]]``).
    """
    params = params.to(torch.int64).cpu()
    out = _crop_flip(images, params[:, 0], params[:, 1], params[:, 2], padding)
    if params.shape[1] == 11:
        if partners is None or partners.shape != images.shape:
            raise ValueError("CutMix parameters need the partner images: partners=data.images[params[:, 3]]")
        other = _crop_flip(partners, params[:, 4], params[:, 5], params[:, 6], padding)
        inside = _box_mask(params[:, 7:].to(images.device), *images.shape[-2:])  # [B, H, W]
        out = torch.where(inside[:, None], other, out)
    return out


def _box_mask(box: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[B, H, W]`` booleans, True inside each ``y0 <= y < y1, x0 <= x < x1`` of ``box`` ``[B, 4]``."""
    ys = torch.arange(h, device=box.device)[None]
    xs = torch.arange(w, device=box.device)[None]
    in_y = (ys >= box[:, 0:1]) & (ys < box[:, 1:2])
    in_x = (xs >= box[:, 2:3]) & (xs < box[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def augmented_images(data: ImageDataset, index: torch.Tensor, k: torch.Tensor, *, seed: int,
                     policy: str = "crop_flip", padding: int = 4) -> torch.Tensor:
    """uint8 ``[B, C, H, W]``: augmentation ``k[b]`` of image ``index[b]`` of ``data``, on the images' device."""
    index = torch.as_tensor(index, dtype=torch.int64).cpu()
    p = augmentation_params(seed, index, torch.as_tensor(k).cpu(), n_images=len(data), size=tuple(data.shape[1:]),
                            policy=policy, padding=padding)
    dev = data.images.device
    partners = data.images[p[:, 3].to(dev)] if policy == "crop_flip_cutmix" else None
    return replay_augmentation(data.images[index.to(dev)], p, padding, partners)


# -- sparse targets and their loss ------------------------------------------------------------------

def sparse_topk(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest probabilities of each row and their classes, largest first, as stored on disk.

    Returns:
        ``(classes, values)``: classes as uint8 (up to 256 classes) or int16 (up to 32,767), values
        float16, both ``[..., k]``. The values are the teacher's own; renormalising them over the
        ``k`` classes happens when they are used (:func:`sparse_kl_loss`).
    """
    c = probs.shape[-1]
    if not 1 <= k <= c:
        raise ValueError(f"top_k must be between 1 and the number of classes ({c}), got {k}")
    if c > 32_767:
        raise ValueError(f"{c} classes do not fit the int16 class indices of a reinforced set (at most 32,767)")
    values, classes = probs.float().topk(k, dim=-1)
    return classes.to(torch.uint8 if c <= 256 else torch.int16), values.to(torch.float16)


def sparse_kl_loss(student_logits: torch.Tensor, classes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``KL(q || softmax(student))``, the batch mean, where ``q`` is ``values`` renormalised over ``classes``.

    Args:
        student_logits: ``[B, C]``.
        classes, values: ``[B, k]``, the stored top-k classes and probabilities (any integer / float dtype).

    With ``k = C`` and ``values = softmax(t)`` this is
    :func:`~workbench.transfer.distill.distillation_loss` at temperature 1.
    """
    q = values.float()
    q = q / q.sum(1, keepdim=True)
    log_p = F.log_softmax(student_logits.float(), dim=1).gather(1, classes.long())
    return (torch.special.xlogy(q, q) - q * log_p).sum(1).mean()


# -- the reinforced set ---------------------------------------------------------------------------

@dataclass
class ReinforcedSet:
    """The teacher's top-k probabilities on ``K`` fixed augmentations of every image of one dataset.

    Attributes:
        classes: ``[N, K, top_k]`` uint8 (or int16) class indices, most probable first.
        values: ``[N, K, top_k]`` float16, the teacher's probabilities of those classes.
        num_classes: the teacher's class count.
        policy, padding, seed: how augmentation ``k`` of image ``i`` is made (:func:`augmentation_params`).
        data: the dataset it was built for (``name``, ``split``, ``n``, ``fingerprint``, ``num_classes``).
        teacher: the teacher's fingerprint.
        stats: the build's cost: ``teacher_forwards`` (images through the teacher), ``seconds`` (of the
            chunks, summed over resumed runs), ``chunks``; ``forwards_this_call`` (0 from the cache).
        key: names this set (the hash of everything that made it); enters students' cache keys.
        path: its file (``None`` before it is saved).
    """

    classes: torch.Tensor
    values: torch.Tensor
    num_classes: int
    policy: str
    padding: int
    seed: int
    data: dict[str, Any]
    teacher: str
    stats: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.classes.shape != self.values.shape or self.classes.ndim != 3:
            raise ValueError(f"classes and values must both be [N, K, top_k], got {list(self.classes.shape)} and "
                             f"{list(self.values.shape)}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")

    def __len__(self) -> int:
        return self.classes.shape[0]

    def __repr__(self) -> str:
        return (f"ReinforcedSet({self.data.get('name')}/{self.data.get('split')}, {len(self):,} images x "
                f"{self.augmentations} augmentations ({self.policy}), top {self.top_k} of {self.num_classes} classes, "
                f"{self.nbytes / 1e6:.2f} MB)")

    @property
    def augmentations(self) -> int:
        return self.classes.shape[1]

    @property
    def top_k(self) -> int:
        return self.classes.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes on disk when saved (the file's size), else the bytes of the two tensors."""
        if self.path is not None and Path(self.path).exists():
            return Path(self.path).stat().st_size
        return self.classes.numel() * self.classes.element_size() + self.values.numel() * self.values.element_size()

    def mass(self) -> float:
        """The mean probability the teacher gave the stored classes (1.0 when ``top_k`` is every class)."""
        return float(self.values.float().sum(-1).mean())

    def check_data(self, data: ImageDataset) -> None:
        """Refuse data other than the images this set was built for."""
        if not isinstance(data, ImageDataset):
            raise TypeError(f"a reinforced set replays the images of an ImageDataset, got {type(data).__name__}")
        d = self.data
        fp = data_fingerprint(data)
        if fp != d["fingerprint"] or len(data) != d["n"]:
            raise ValueError(
                f"this reinforced set was built for {d['name']}/{d['split']} ({d['n']:,} images, fingerprint "
                f"{d['fingerprint']}), not for {data.name}/{data.split} ({len(data):,} images, fingerprint {fp}); "
                "train on the data it was built for, or build one for this data with "
                "wb.transfer.reinforce_dataset(teacher, data)")

    def params(self, index: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The parameters of augmentation ``k`` of images ``index`` (:func:`augmentation_params`)."""
        return augmentation_params(self.seed, index, k, n_images=self.data["n"], size=tuple(self.data["size"]),
                                   policy=self.policy, padding=self.padding)

    def images(self, data: ImageDataset, index: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """uint8 images: augmentation ``k`` of ``data.images[index]``, exactly as the teacher saw them."""
        index = torch.as_tensor(index, dtype=torch.int64).cpu()
        k = torch.as_tensor(k, dtype=torch.int64).cpu().expand_as(index)
        if len(index) and (int(k.min()) < 0 or int(k.max()) >= self.augmentations):
            raise ValueError(f"augmentation k must be in 0..{self.augmentations - 1}, got {k.tolist()[:8]}")
        return augmented_images(data, index, k, seed=self.seed, policy=self.policy, padding=self.padding)

    def targets(self, index: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored ``(classes int64, probabilities float32 renormalised to sum 1)``, each ``[B, top_k]``."""
        dev = self.classes.device
        index, k = torch.as_tensor(index).to(dev), torch.as_tensor(k).to(dev)
        v = self.values[index, k].float()
        return self.classes[index, k].long(), v / v.sum(-1, keepdim=True)

    def to(self, device: torch.device | str) -> "ReinforcedSet":
        device = torch.device(device)
        if self.classes.device == device:
            return self
        return ReinforcedSet(self.classes.to(device), self.values.to(device), self.num_classes, self.policy,
                             self.padding, self.seed, dict(self.data), self.teacher, dict(self.stats), self.key,
                             self.path)

    def loader(self, data: ImageDataset, batch_size: int = 128, *, seed: int = 0, shuffle: bool = True,
               device: torch.device | str | None = None, drop_last: bool = False,
               channels_last: bool = False) -> "ReinforcedLoader":
        """A :class:`ReinforcedLoader` over ``data`` (the images this set was built for)."""
        return ReinforcedLoader(data, self, batch_size, seed=seed, shuffle=shuffle, device=device,
                                drop_last=drop_last, channels_last=channels_last)

    def _payload(self) -> dict[str, Any]:
        return {"classes": self.classes.cpu(), "values": self.values.cpu(), "num_classes": self.num_classes,
                "policy": self.policy, "padding": self.padding, "seed": self.seed, "data": self.data,
                "teacher": self.teacher, "stats": {k: v for k, v in self.stats.items() if k != "forwards_this_call"},
                "key": self.key}

    def save(self, path: str | Path) -> Path:
        """Write the set to ``path`` atomically (safetensors with a checksum; nothing pickled)."""
        path = Path(path)
        atomic_write_bytes(path, dumps(self._payload(), {"kind": "reinforced_set"}))
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ReinforcedSet":
        """Read a set written by :meth:`save` (or the cache); a damaged file raises ``ValueError``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no reinforced set at {path}; build one with "
                                    "wb.transfer.reinforce_dataset(teacher, data)")
        return cls._from_payload(loads(path.read_bytes()), path)

    @classmethod
    def _from_payload(cls, d: dict[str, Any], path: Path | None) -> "ReinforcedSet":
        return cls(d["classes"], d["values"], int(d["num_classes"]), d["policy"], int(d["padding"]), int(d["seed"]),
                   dict(d["data"]), d["teacher"], {**d["stats"], "forwards_this_call": 0}, d["key"], path)


# -- building it -----------------------------------------------------------------------------------

def _data_record(data: ImageDataset) -> dict[str, Any]:
    return {"name": data.name, "split": data.split, "n": len(data), "fingerprint": data_fingerprint(data),
            "num_classes": data.num_classes, "size": list(data.shape[1:])}


@torch.no_grad()
def _teacher_chunk(teacher: nn.Module, data: ImageDataset, rec: dict, start: int, stop: int, cfg: dict,
                   device: torch.device) -> dict[str, Any]:
    """The top-k probabilities of images ``start..stop-1`` under every augmentation, and what it cost."""
    t0 = time.perf_counter()
    idx = torch.arange(start, stop)
    classes, values = [], []
    for k in range(cfg["augmentations"]):
        cls_k, val_k = [], []
        for b in range(0, len(idx), cfg["batch_size"]):
            part = idx[b:b + cfg["batch_size"]]
            images = augmented_images(data, part, torch.full_like(part, k), seed=cfg["seed"], policy=cfg["policy"],
                                      padding=cfg["padding"])
            x = to_float(images.to(device), data.mean, data.std)
            if cfg["channels_last"]:  # as fit feeds a convolutional network
                x = x.contiguous(memory_format=torch.channels_last)
            logits = teacher(x)
            if logits.ndim != 2:
                raise ValueError(f"the teacher must return logits [B, classes], got shape {list(logits.shape)}")
            c, v = sparse_topk(F.softmax(logits.float(), dim=1), cfg["top_k"])
            cls_k.append(c.cpu())
            val_k.append(v.cpu())
        classes.append(torch.cat(cls_k))
        values.append(torch.cat(val_k))
    return {"classes": torch.stack(classes, 1), "values": torch.stack(values, 1),
            "forwards": len(idx) * cfg["augmentations"], "seconds": time.perf_counter() - t0}


def reinforce_dataset(teacher: nn.Module, data: ImageDataset, *, augmentations: int = 10, top_k: int = 5,
              policy: str = "crop_flip", padding: int = 4, seed: int = 0, batch_size: int = 500,
              chunk_size: int = 2_000, device: torch.device | str | None = None,
              cache_dir: str | Path | None = None, refresh: bool = False) -> ReinforcedSet:
    """Reinforce ``data`` with ``teacher``'s outputs on ``augmentations`` fixed augmentations of each image.

    Args:
        teacher: a trained classifier (run in eval mode without gradients; its mode is restored).
        data: the training images (an :class:`~workbench.data.ImageDataset`).
        augmentations: ``K``, the stored augmentations per image (the paper: 400 on ImageNet, 800 on CIFAR-100).
        top_k: classes stored per augmentation (the paper: 10 of ImageNet's 1,000).
        policy: ``"crop_flip"`` (CIFAR's shift-crop and flip) or ``"crop_flip_cutmix"`` (then CutMix
            with a partner image; its label needs no mixing: the teacher labels the mixed image).
        padding: the shift-crop's zero padding in pixels.
        seed: the augmentations' seed.
        batch_size: images per teacher forward pass.
        chunk_size: images per cached chunk: a killed build resumes at the first missing one.
        cache_dir: default :func:`workbench.config.cache_dir`.
        refresh: rebuild even when the set is cached.

    Returns:
        :class:`ReinforcedSet`, saved in the cache (``.path``, ``.nbytes``); ``.stats`` holds the cost.
    """
    from .. import config

    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module (a trained network), got {type(teacher).__name__}")
    if not isinstance(data, ImageDataset):
        raise TypeError(f"data must be an ImageDataset (wb.data.load), got {type(data).__name__}")
    n_teacher = getattr(teacher, "num_classes", None)
    if n_teacher is not None and n_teacher != data.num_classes:
        raise ValueError(f"the teacher predicts {n_teacher} classes but {data.name} has {data.num_classes}; "
                         "reinforce data with a teacher trained on its classes")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    for name, v in (("augmentations", augmentations), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not 1 <= top_k <= data.num_classes:
        raise ValueError(f"top_k must be between 1 and the number of classes ({data.num_classes}), got {top_k}")
    if padding < 0:
        raise ValueError(f"padding must be at least 0, got {padding}")
    dev = torch.device(device) if device is not None else config.device()
    rec = _data_record(data)
    cfg = {"augmentations": augmentations, "top_k": top_k, "policy": policy, "padding": padding, "seed": seed,
           "batch_size": batch_size}
    key = {"teacher": model_fingerprint(teacher), "data": rec, **cfg, "chunk_size": chunk_size}
    fresh = {"forwards": 0}
    channels_last = dev.type in ("cpu", "cuda") and any(isinstance(m, nn.Conv2d) for m in teacher.modules())
    bounds = [(s, min(s + chunk_size, len(data))) for s in range(0, len(data), chunk_size)]

    def build() -> dict[str, Any]:
        was = teacher.training
        teacher.to(dev).eval()
        try:
            parts = []
            for start, stop in bounds:
                def chunk(start=start, stop=stop):
                    out = _teacher_chunk(teacher, data, rec, start, stop, {**cfg, "channels_last": channels_last},
                                         dev)
                    fresh["forwards"] += out["forwards"]
                    return out
                parts.append(cached(chunk, key={**key, "chunk": [start, stop]}, name="reinforce_chunk",
                                    refresh=refresh, cache_dir=cache_dir))
        finally:
            teacher.train(was)
        stats = {"teacher_forwards": sum(p["forwards"] for p in parts), "seconds": sum(p["seconds"] for p in parts),
                 "chunks": len(parts)}
        rset = ReinforcedSet(torch.cat([p["classes"] for p in parts]), torch.cat([p["values"] for p in parts]),
                             data.num_classes, policy, padding, seed, rec, key["teacher"], stats,
                             cache_key(key, "reinforced_set"))
        return rset._payload()

    payload = cached(build, key=key, name="reinforced_set", refresh=refresh, cache_dir=cache_dir)
    for start, stop in bounds:  # the set is whole on disk: its chunks are no longer needed
        cache_path({**key, "chunk": [start, stop]}, "reinforce_chunk", cache_dir=cache_dir).unlink(missing_ok=True)
    rset = ReinforcedSet._from_payload(payload, cache_path(key, "reinforced_set", cache_dir=cache_dir))
    rset.stats["forwards_this_call"] = fresh["forwards"]
    return rset


# -- training from it ------------------------------------------------------------------------------

class ReinforcedLoader(Loader):
    """Batches ``(x, y, classes, probs)`` of a reinforced set: each image in augmentation ``k`` drawn at
    random among the stored ones (a pure function of ``(seed, epoch, batch)``, so resumed runs match),
    with that augmentation's stored top-k classes and renormalised probabilities.

    The order of the images per epoch is the plain :class:`~workbench.data.Loader`'s for the same seed.
    """

    def __init__(self, dataset: ImageDataset, reinforced: ReinforcedSet, batch_size: int = 128, *, seed: int = 0,
                 shuffle: bool = True, device: torch.device | str | None = None, drop_last: bool = False,
                 channels_last: bool = False):
        if not isinstance(reinforced, ReinforcedSet):
            raise TypeError("reinforced must be a ReinforcedSet (wb.transfer.reinforce), "
                            f"got {type(reinforced).__name__}")
        reinforced.check_data(dataset)
        super().__init__(dataset, batch_size, shuffle=shuffle, augment=None, device=device, drop_last=drop_last,
                         channels_last=channels_last, seed=seed)
        self.reinforced = reinforced.to(self.device)
        self.augment = "reinforced"  # truthy: the base class hands batch() its generator

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        g = generator or torch.Generator().manual_seed(self.seed)
        k = torch.randint(0, self.reinforced.augmentations, (len(idx),), generator=g)
        x = to_float(self.reinforced.images(self.dataset, idx.cpu(), k), self.dataset.mean, self.dataset.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        classes, probs = self.reinforced.targets(idx, k)
        return x, self.dataset.labels[idx], classes, probs


class ReinforcedDistillation(Task):
    """A student learns from a reinforced set: ``KL(stored top-k probabilities || student)``, no teacher run.

    Args:
        reinforced: the :class:`ReinforcedSet` (train on ``reinforced.loader(train)``).
        alpha: weight of the soft term; ``1 - alpha`` weighs cross-entropy on the labels (the paper
            trains on the reinforced targets alone: ``alpha = 1``).

    Evaluation batches ``(x, y)`` report cross-entropy and accuracy on the labels.
    """

    metric_names = ("loss", "acc")

    def __init__(self, reinforced: ReinforcedSet, alpha: float = 1.0):
        if not isinstance(reinforced, ReinforcedSet):
            raise TypeError("reinforced must be a ReinforcedSet (wb.transfer.reinforce), "
                            f"got {type(reinforced).__name__}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha weighs the soft term and must be in [0, 1], got {alpha}")
        self.reinforced, self.alpha = reinforced, float(alpha)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "reinforced": self.reinforced.key, "alpha": self.alpha}

    def _check_classes(self, n: int | None, what: str) -> None:
        c = self.reinforced.num_classes
        if n is not None and n != c:
            raise ValueError(f"{what} {n} classes but the reinforced set stores probabilities over {c}; "
                             f"create the student with num_classes={c}")

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        self._check_classes(getattr(model, "num_classes", None), "the student predicts")
        self._check_classes(getattr(dataset, "num_classes", None), f"{getattr(dataset, 'name', 'the data')} has")
        check_data_fits_model(model, dataset)

    def check_batch(self, batch: Any) -> None:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 4):
            raise ValueError(f"{self.name} trains on batches (images, labels, classes, probabilities) of a "
                             "ReinforcedLoader; pass train=reinforced.loader(train, batch_size=...) to fit")
        check_image_batch(self.name, batch[:2])

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        self._check_classes(outputs.shape[1], "the student's logits have")
        hard = classification_loss(outputs, batch[1])
        if len(batch) == 2:  # evaluation on the labels
            return hard
        soft = sparse_kl_loss(outputs, batch[2], batch[3])
        return soft if self.alpha == 1 else (1 - self.alpha) * hard + self.alpha * soft

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[1])
        return {"loss": loss.detach().double() * n, "acc": (outputs.detach().argmax(1) == batch[1]).sum().double()}, n


def train_reinforced(model: str, reinforced: ReinforcedSet, train: ImageDataset, test: ImageDataset | None = None, *,
                     seed: int = 0, batch_size: int = 128, model_kwargs: dict | None = None, alpha: float = 1.0,
                     refresh: bool = False, **fit_kwargs) -> TrainResult:
    """``create_model(model)`` with ``seed``, trained by :func:`~workbench.train.fit` from the reinforced set; cached.

    Args:
        model, model_kwargs: the registry student (``num_classes`` and ``in_chans`` follow the data).
        reinforced, train: the set and the images it was built for.
        seed: initialization, image order and the choice of stored augmentations.
        batch_size, alpha, **fit_kwargs: the loader's batch size, :class:`ReinforcedDistillation`'s
            ``alpha``, and the recipe for ``fit`` (``wb.train.recipe(...)``). A recipe's ``augment`` and
            ``label_smoothing`` are not used: the stored augmentations and probabilities replace them.

    Returns:
        :class:`~workbench.train.TrainResult` (from the cache the student is rebuilt and its weights loaded).
    """
    if "task" in fit_kwargs:
        raise ValueError("train_reinforced trains with ReinforcedDistillation; use wb.fit directly for another task")
    reinforced.check_data(train)
    fit_kwargs = {k: v for k, v in fit_kwargs.items() if k not in ("augment", "label_smoothing")}
    model_kwargs = {"num_classes": train.num_classes, "in_chans": train.shape[0], **(model_kwargs or {})}

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return create_model(model, **model_kwargs)

    def loaders() -> tuple:
        conv = any(isinstance(m, nn.Conv2d) for m in build().modules())
        return reinforced.loader(train, batch_size, seed=seed, device=fit_kwargs.get("device"), channels_last=conv), test

    key = {"model": model, "model_kwargs": model_kwargs, "reinforced": reinforced.key, "train": _data_key(train),
           "test": _data_key(test), "batch_size": batch_size, "alpha": alpha}
    return cached_fit(build, loaders, task=ReinforcedDistillation(reinforced, alpha), key=key, name="train_reinforced",
                      seed=seed, refresh=refresh, fit_kwargs=fit_kwargs)


def student_run(model: str, variant: str, seed: int, *, train: ImageDataset, test: ImageDataset,
                reinforced: ReinforcedSet | None = None, teacher: nn.Module | None = None,
                model_kwargs: dict | None = None, batch_size: int = 128, **fit_kwargs) -> dict[str, Any]:
    """One student trained one way, as a ``wb.sweep`` record (cached).

    Args:
        variant: ``"normal"`` (labels, the recipe's augmentation and label smoothing),
            ``"live"`` (distillation from ``teacher`` at temperature 1 on fresh augmentations: one
            teacher forward pass per image per epoch; evaluated after the last epoch only, since each
            evaluation runs the teacher on the test set too) or ``"reinforced"`` (from ``reinforced``,
            no teacher).
        model, seed, model_kwargs, batch_size, **fit_kwargs: the student and the shared recipe.

    Returns:
        ``model``, ``variant``, ``seed``, ``test_acc``, ``train_seconds`` (training and evaluation, as
        measured when the run was trained), ``teacher_forwards`` (images through the teacher: training
        and evaluation), the test accuracy per evaluated epoch, ``params`` and ``macs`` of the student.
    """
    from ..models.summary import summary
    from .distill import Distillation

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    kw = dict(seed=seed, model_kwargs=model_kwargs, batch_size=batch_size, **fit_kwargs)
    if variant == "normal":
        res = train_model(model, train, test, progress=False, **kw)
    elif variant == "live":
        if teacher is None:
            raise ValueError("variant 'live' distills from a teacher: pass teacher=")
        kw.pop("label_smoothing", None)
        kw.setdefault("eval_every", kw.get("epochs", 1))  # each evaluation runs the teacher on the test set too
        live = Distillation(teacher, temperature=1.0, alpha=1.0)
        res = train_model(model, train, test, progress=False, task=live, **kw)
    else:
        if reinforced is None:
            raise ValueError("variant 'reinforced' trains from a reinforced set: "
                             "pass reinforced=wb.transfer.reinforce_dataset(...)")
        res = train_reinforced(model, reinforced, train, test, **kw)
    h = res.history
    evaluated = h[h["test_acc"].notna()]
    cost = summary(res.model, tuple(train.shape))
    return {"model": model, "variant": variant, "seed": seed, "test_acc": res.test_acc,
            "train_seconds": float(h["seconds"].iloc[-1]),
            "teacher_forwards": len(h) * len(train) + len(evaluated) * len(test) if variant == "live" else 0,
            "curve_epoch": [int(v) for v in evaluated["epoch"]],
            "curve_test_acc": [float(v) for v in evaluated["test_acc"]], "params": cost.params, "macs": cost.macs}


# -- the cost ledger -------------------------------------------------------------------------------

def _check_costs(build: float, live: float, reinforced: float) -> None:
    for name, v in (("build", build), ("live", live), ("reinforced", reinforced)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} is a cost and must be a finite number >= 0, got {v!r}")


def payback(build: float, live: float, reinforced: float = 0.0) -> int | None:
    """The fewest students (at least 1) for which building the set once and training them from it costs no
    more than training each with a live teacher: the smallest ``s`` with ``build + s reinforced <= s live``;
    ``None`` when a student from the set costs as much as one with a live teacher or more (never paid back).

    The costs may be in any one unit: teacher forward passes, seconds, multiply-adds.
    """
    _check_costs(build, live, reinforced)
    saved = live - reinforced
    if saved <= 0:
        return None
    return max(1, math.ceil(build / saved - 1e-9))


def cost_ledger(build: float, live: float, reinforced: float = 0.0, students: int = 10) -> pd.DataFrame:
    """The cumulative cost of training ``0..students`` students with a live teacher (``s live``) and from the
    reinforced set (``build + s reinforced``), one row per count, with what the set saved so far."""
    _check_costs(build, live, reinforced)
    if not isinstance(students, int) or students < 1:
        raise ValueError(f"students must be a positive integer, got {students!r}")
    rows = [{"students": s, "live teacher": s * live, "reinforced set": build + s * reinforced}
            for s in range(students + 1)]
    table = pd.DataFrame(rows)
    table["saved"] = table["live teacher"] - table["reinforced set"]
    return table
