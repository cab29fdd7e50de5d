"""Predictions of a model on ImageNet validation images, with their file names, ready for the metrics.

For users who have the images: a folder (any layout; files named ``ILSVRC2012_val_*.JPEG``) or
the hub's ``ILSVRC/imagenet-1k`` validation split (gated: accept its terms on the hub and log in).
Preprocessing is the usual evaluation one: resize the shorter side to ``resize``, centre-crop
``crop``, normalize with the ImageNet mean and standard deviation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .labels import val_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(img, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """A PIL image -> normalized float tensor ``[3, crop, crop]``."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    s = resize / min(w, h)
    img = img.resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - crop) // 2, (h - crop) // 2
    img = img.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def _folder(path: Path) -> Iterator[tuple[str, object]]:
    from PIL import Image

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.startswith("ILSVRC2012_val_"))
    if not files:
        raise FileNotFoundError(f"no ILSVRC2012_val_*.JPEG files under {path}; point source at the folder that "
                                "holds the validation images (sub-folders are searched)")
    val_indices([p.name for p in files], f"files under {path}")
    for p in files:
        with Image.open(p) as im:
            im.load()
            yield p.name, im


def _hub(name: str, split: str) -> Iterator[tuple[str, object]]:
    from datasets import load_dataset

    ds = load_dataset(name, split=split, streaming=True)
    for i, row in enumerate(ds):
        # the hub's validation split keeps the official order: row i is ILSVRC2012_val_{i+1}
        yield f"ILSVRC2012_val_{i + 1:08d}.JPEG", row["image"]


@torch.no_grad()
def predict_imagenet(model: nn.Module, source: str | Path, *, topk: int = 5, batch_size: int = 64,
                     resize: int = 256, crop: int = 224, limit: int | None = None, device=None,
                     progress: bool = True):
    """Top-k predictions of ``model`` on ImageNet validation images, with the file names.

    Args:
        source: a folder of validation images, or ``"hf:ILSVRC/imagenet-1k"`` (the hub's
            validation split, streamed).
        limit: stop after this many images (for a quick look).

    Returns:
        :class:`workbench.multilabel.Predictions` whose ``labels`` are ``[N, topk]`` class
        indices, best first.
    """
    from tqdm.auto import tqdm

    from .. import config
    from .labels import Predictions

    if isinstance(source, str) and source.startswith("hf:"):
        items: Iterable = _hub(source[3:], "validation")
    else:
        path = Path(source).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; pass the folder of ImageNet validation images or "
                                    "'hf:ILSVRC/imagenet-1k'")
        items = _folder(path)
    dev = torch.device(device) if device is not None else config.device()
    was = model.training
    model.eval().to(dev)
    names, preds, batch, batch_names = [], [], [], []

    def flush():
        logits = model(torch.stack(batch).to(dev))
        if logits.ndim != 2:
            raise ValueError(f"the model must return logits [batch, classes], got {tuple(logits.shape)}")
        preds.append(logits.topk(min(topk, logits.shape[1]), dim=1).indices.cpu())
        names.extend(batch_names)
        batch.clear()
        batch_names.clear()

    try:
        for i, (name, img) in enumerate(tqdm(items, desc="predicting", disable=not progress, total=limit)):
            if limit is not None and i >= limit:
                break
            batch.append(preprocess(img, resize, crop))
            batch_names.append(name)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    finally:
        model.train(was)
    labels = torch.cat(preds).numpy() if preds else np.zeros((0, topk), dtype=np.int64)
    return Predictions(labels.astype(np.int64), np.asarray(names), f"{type(model).__name__} on {source}")
