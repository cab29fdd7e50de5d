"""Where each dataset comes from, in order of preference.

1. A local mirror when ``WORKBENCH_DATA_DIR`` is set (the Hugging Face hub's
   Parquet files in ``<dir>/<name>/{train,test}.parquet``).
2. A system package: Debian's ``dataset-fashion-mnist`` puts the original IDX
   files in ``/usr/share/datasets/fashion-mnist``.
3. The Hugging Face hub through ``datasets.load_dataset`` (honours
   ``HF_HUB_OFFLINE=1``).

Decoded tensors are cached on disk (``<cache>/data``) so a second load takes well
under a second. Nothing is downloaded at import time.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save

from .. import config
from ..cache import atomic_write_bytes

DECODE_VERSION = 1
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DataUnavailableError(RuntimeError):
    """No source of a dataset could be reached; the message says what to install or set."""


@dataclass
class Spec:
    name: str
    hub: str | None
    image_column: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...] = ("train", "test")
    debian: Path | None = None
    hint: str = ""


CIFAR10 = Spec(
    "cifar10", "uoft-cs/cifar10", "img",
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
)
FASHION_MNIST = Spec(
    "fashion_mnist", "zalando-datasets/fashion_mnist", "image",
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    (0.2860,), (0.3530,), debian=DEBIAN_FASHION_MNIST,
    hint="on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist; ",
)


def _decode_images(encoded: list[bytes], channels: int) -> np.ndarray:
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    first = np.asarray(Image.open(io.BytesIO(encoded[0])).convert(mode))
    out = np.empty((len(encoded),) + first.shape, dtype=np.uint8)
    for i, b in enumerate(encoded):
        out[i] = np.asarray(Image.open(io.BytesIO(b)).convert(mode))
    if channels == 1:
        out = out[:, None]
    else:
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def _from_hf_dataset(ds, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """Decode a ``datasets.Dataset`` with an Image column and a label column."""
    from datasets import Image as HFImage

    ds = ds.cast_column(spec.image_column, HFImage(decode=False))
    cols = ds.with_format("python")[:]
    encoded = [d["bytes"] for d in cols[spec.image_column]]
    labels = np.asarray(cols["label"], dtype=np.int64)
    return _decode_images(encoded, len(spec.mean)), labels


def _mirror_files(spec: Spec, split: str) -> Path | None:
    root = config.data_dir()
    if root is None:
        return None
    for folder in (spec.name, spec.name.replace("_", "-")):
        p = root / folder / f"{split}.parquet"
        if p.is_file():
            return p
    return None


def _load_mirror(spec: Spec, split: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from datasets import load_dataset
    except ImportError:  # a bare GPU machine: the hub's Parquet schema is simple enough to read directly
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[spec.image_column, "label"])
        encoded = [d["bytes"] for d in table.column(spec.image_column).to_pylist()]
        return _decode_images(encoded, len(spec.mean)), np.asarray(table.column("label"), dtype=np.int64)
    ds = load_dataset("parquet", data_files={split: str(path)}, split=split)
    return _from_hf_dataset(ds, spec)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


def _debian_files(spec: Spec, split: str) -> tuple[Path, Path] | None:
    if spec.debian is None:
        return None
    prefix = "train" if split == "train" else "t10k"
    imgs = spec.debian / f"{prefix}-images-idx3-ubyte.gz"
    labs = spec.debian / f"{prefix}-labels-idx1-ubyte.gz"
    return (imgs, labs) if imgs.is_file() and labs.is_file() else None


def _load_debian(paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(paths[0])[:, None]  # [N, 1, 28, 28]
    labels = _read_idx(paths[1]).astype(np.int64)
    return np.ascontiguousarray(images), labels


def _load_hub(spec: Spec, split: str) -> tuple[np.ndarray, np.ndarray]:
    from datasets import load_dataset

    return _from_hf_dataset(load_dataset(spec.hub, split=split), spec)


def _fingerprint(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _decoded_cache(spec: Spec, split: str, ident: str, produce: Callable[[], tuple[np.ndarray, np.ndarray]]):
    """Decoded tensors from the on-disk cache, or produce and store them."""
    path = config.cache_dir() / "data" / f"{spec.name}-{split}-v{DECODE_VERSION}-{ident}.safetensors"
    if path.is_file():
        try:
            t = load_file(str(path))
            return t["images"], t["labels"]
        except Exception:  # damaged: decode again
            path.unlink(missing_ok=True)
    images, labels = produce()
    images_t = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    labels_t = torch.from_numpy(np.require(labels, dtype=np.int64, requirements=["C", "W"]))
    try:
        atomic_write_bytes(path, save({"images": images_t, "labels": labels_t}))
    except OSError as e:  # a read-only cache folder must not stop the data from loading
        import warnings
        warnings.warn(f"could not cache decoded {spec.name} ({e}); the next load will decode again", stacklevel=3)
    return images_t, labels_t


def load_spec(spec: Spec, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Images ``[N, C, H, W]`` uint8, labels int64 and a description of the source used."""
    tried = []
    mirror = _mirror_files(spec, split)
    if mirror is not None:
        imgs, labs = _decoded_cache(spec, split, "mirror-" + _fingerprint(mirror), lambda: _load_mirror(spec, split, mirror))
        return imgs, labs, f"mirror {mirror}"
    root = config.data_dir()
    tried.append(f"mirror: WORKBENCH_DATA_DIR={'(unset)' if root is None else root} has no {spec.name}/{split}.parquet")
    deb = _debian_files(spec, split)
    if deb is not None:
        imgs, labs = _decoded_cache(spec, split, "debian-" + _fingerprint(*deb), lambda: _load_debian(deb))
        return imgs, labs, f"debian {deb[0].parent}"
    if spec.debian is not None:
        tried.append(f"system package: {spec.debian} not found")
    if spec.hub is not None:
        ident = "hub-" + hashlib.sha256(spec.hub.encode()).hexdigest()[:16]
        cached_path = config.cache_dir() / "data" / f"{spec.name}-{split}-v{DECODE_VERSION}-{ident}.safetensors"
        if cached_path.is_file() or os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
            try:
                imgs, labs = _decoded_cache(spec, split, ident, lambda: _load_hub(spec, split))
                return imgs, labs, f"hub {spec.hub}"
            except ImportError:
                tried.append("hub: the `datasets` package is not installed (pip install datasets)")
            except Exception as e:  # offline, hub down, ...
                tried.append(f"hub {spec.hub}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        else:
            tried.append(f"hub {spec.hub}: HF_HUB_OFFLINE=1 is set")
    raise DataUnavailableError(
        f"no source of {spec.name!r} ({split}) could be reached. To fix: {spec.hint}"
        f"connect to the internet so `datasets` can fetch {spec.hub}, or set WORKBENCH_DATA_DIR to a folder "
        f"holding {spec.name}/{split}.parquet. Tried: " + "; ".join(tried)
    )
