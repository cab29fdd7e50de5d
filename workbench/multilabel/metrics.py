"""Accuracy against multi-label ImageNet, always aligned by file name, vectorized.

``predictions`` may be top-1 class indices ``(N,)``, top-k indices ``(N, k)`` (best first)
or scores/logits ``(N, 1000)`` (float). ``filenames`` are the N validation file names they
belong to, in any order. Without file names the caller must state ``order="sorted"``
(predictions for ILSVRC2012_val_00000001 ... 00050000 in that order).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .labels import N_CLASSES, N_VAL, LabelSets, real_labels, val_filenames, val_indices


def _topk(predictions, k: int, argument: str = "predictions") -> np.ndarray:
    p = np.asarray(predictions.detach().cpu() if hasattr(predictions, "detach") else predictions)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"{argument} must be (N,) top-1 indices, (N, k) top-k indices or (N, {N_CLASSES}) scores, "
                         f"got shape {p.shape}")
    if np.issubdtype(p.dtype, np.floating):
        if p.shape[1] != N_CLASSES:
            raise ValueError(f"float {argument} are read as scores and need {N_CLASSES} columns, got {p.shape[1]}; "
                             "pass class indices as integers")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"{argument} hold NaN or infinite scores")
        import torch

        return torch.from_numpy(np.ascontiguousarray(p)).topk(min(k, N_CLASSES), dim=1).indices.numpy()
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"{argument} must be integer class indices or float scores, got dtype {p.dtype}")
    if p.size and (p.min() < 0 or p.max() >= N_CLASSES):
        raise ValueError(f"{argument} hold class indices outside 0..{N_CLASSES - 1} (found {p.min()}..{p.max()})")
    if p.shape[1] < k:
        raise ValueError(f"top-{k} needs at least {k} predicted classes per image, got {p.shape[1]}")
    return p[:, :k].astype(np.int64)


def _rows(predictions, filenames, order: str | None, labels: LabelSets) -> tuple[np.ndarray, int]:
    n = len(predictions)
    if filenames is None:
        if order != "sorted":
            raise ValueError("predictions without filenames are refused: pass the file name of each prediction, or "
                             "order='sorted' if they are for ILSVRC2012_val_00000001 ... _00050000 in that order "
                             "(the bundled cleanlab predictions are in folder order, not this)")
        if n != len(labels):
            raise ValueError(f"order='sorted' needs one prediction per image ({len(labels)}), got {n}")
        return np.arange(n), n
    if order is not None:
        raise ValueError("give either filenames or order='sorted', not both")
    if len(filenames) != n:
        raise ValueError(f"predictions ({n}) and filenames ({len(filenames)}) differ in length: one file name per "
                         "prediction")
    if labels.val_order:
        return val_indices(filenames), n  # fast path: validation names map to rows by their number
    names = np.asarray(filenames)
    if len(np.unique(names)) != len(names):
        raise ValueError("filenames hold duplicates: every image may be scored once")
    return labels.rows(names), n


def _hits(top: np.ndarray, rows: np.ndarray, dense: np.ndarray) -> np.ndarray:
    return dense[rows[:, None], top]  # (N, k) bool: is the j-th guess in the image's set


class _Dense:
    """Caches the dense matrix of a LabelSets (50 MB for ImageNet val)."""
    _cache: dict[int, tuple[LabelSets, np.ndarray]] = {}

    @classmethod
    def of(cls, labels: LabelSets) -> np.ndarray:
        hit = cls._cache.get(id(labels))
        if hit is None or hit[0] is not labels:
            cls._cache = {id(labels): (labels, labels.dense())}
            hit = cls._cache[id(labels)]
        return hit[1]


_REAL: list[LabelSets] = []


def _real() -> LabelSets:
    if not _REAL:
        _REAL.append(real_labels())
    return _REAL[0]


def multilabel_topk(predictions, filenames: Sequence[str] | None = None, *, k: int = 1, labels: LabelSets | None = None,
                    order: str | None = None) -> dict[str, float]:
    """Top-k accuracy against label sets: a hit when any of the k best guesses is in the set.
    Images with an empty set are left out. Returns accuracy and the number of images counted."""
    labels = labels if labels is not None else _real()
    top = _topk(predictions, k)
    rows, _ = _rows(top, filenames, order, labels)
    sizes = labels.sizes[rows]
    hit = _hits(top, rows, _Dense.of(labels)).any(1)
    counted = sizes > 0
    n = int(counted.sum())
    return {"accuracy": float(hit[counted].mean()) if n else float("nan"), "images": n}


def real_accuracy(predictions, filenames: Sequence[str] | None = None, *, k: int = 1,
                  labels: LabelSets | None = None, order: str | None = None) -> float:
    """ReaL top-k accuracy (Beyer et al. 2020) over the images with a non-empty ReaL set.

    >>> p = wb.multilabel.bundled_predictions()                           # doctest: +SKIP
    >>> wb.multilabel.real_accuracy(p.labels, p.filenames)                  # doctest: +SKIP
    """
    return multilabel_topk(predictions, filenames, k=k, labels=labels, order=order)["accuracy"]


def original_accuracy(predictions, filenames: Sequence[str] | None = None, *, k: int = 1,
                      original: np.ndarray | None = None, order: str | None = None) -> float:
    """Single-label top-k accuracy against the original ImageNet labels (all 50,000 images)."""
    from .labels import original_labels

    original = original_labels() if original is None else np.asarray(original)
    return multilabel_topk(predictions, filenames, k=k, labels=_singletons(original), order=order)["accuracy"]


_SINGLETONS: list[tuple[np.ndarray, LabelSets]] = []


def _singletons(original: np.ndarray) -> LabelSets:
    """One-label sets from single labels (built once per distinct array)."""
    if _SINGLETONS and np.array_equal(_SINGLETONS[0][0], original):
        return _SINGLETONS[0][1]
    if original.shape != (N_VAL,):
        raise ValueError(f"original labels must have one entry per validation image ({N_VAL}), got {original.shape}")
    sets = LabelSets(val_filenames(), np.arange(N_VAL + 1), original, source="original labels")
    _SINGLETONS[:] = [(original.copy(), sets)]
    return sets


def variable_topk_accuracy(predictions, filenames: Sequence[str] | None = None, *, labels: LabelSets | None = None,
                           order: str | None = None) -> dict[str, float]:
    """Top-k with k the size of each image's label set (needs scores or at least max-set-size indices).

    Two readings, both returned: ``all`` (the k best guesses are exactly the set: every label
    found) and ``recall`` (the mean fraction of the set among the k best guesses).
    """
    labels = labels if labels is not None else _real()
    rows, _ = _rows(predictions, filenames, order, labels)
    sizes = labels.sizes[rows]
    kmax = max(int(sizes.max(initial=0)), 1)
    top = _topk(predictions, kmax)
    hits = _hits(top, rows, _Dense.of(labels)) & (np.arange(kmax)[None, :] < sizes[:, None])
    counted = sizes > 0
    found = hits.sum(1)[counted]
    return {"all": float((found == sizes[counted]).mean()), "recall": float((found / sizes[counted]).mean()),
            "images": int(counted.sum())}


def accuracy_by_set_size(predictions, filenames: Sequence[str] | None = None, *, labels: LabelSets | None = None,
                         original: np.ndarray | None = None, order: str | None = None) -> pd.DataFrame:
    """Top-1 accuracy against the sets and against the original labels, by label-set size."""
    from .labels import original_labels

    labels = labels if labels is not None else _real()
    top = _topk(predictions, 1)
    rows, _ = _rows(top, filenames, order, labels)
    hit = _hits(top, rows, _Dense.of(labels))[:, 0]
    original = original_labels() if original is None else np.asarray(original)
    orig_hit = top[:, 0] == original[rows] if len(labels) == N_VAL else np.full(len(rows), np.nan)
    sizes = labels.sizes[rows]
    df = pd.DataFrame({"set_size": sizes, "multilabel": np.where(sizes > 0, hit, np.nan), "original": orig_hit})
    out = df.groupby("set_size").agg(images=("original", "size"), multilabel_acc=("multilabel", "mean"),
                                     original_acc=("original", "mean")).reset_index()
    out["share"] = out["images"] / out["images"].sum()
    return out


def accuracy_by_class(predictions, filenames: Sequence[str] | None = None, *, labels: LabelSets | None = None,
                      original: np.ndarray | None = None, order: str | None = None) -> pd.DataFrame:
    """Per original class: images, original top-1 and multi-label top-1 accuracy and their gain."""
    from .labels import original_labels

    labels = labels if labels is not None else _real()
    top = _topk(predictions, 1)
    rows, _ = _rows(top, filenames, order, labels)
    original = original_labels() if original is None else np.asarray(original)
    cls = original[rows]
    counted = labels.sizes[rows] > 0
    hit = _hits(top, rows, _Dense.of(labels))[:, 0]
    n = np.bincount(cls, minlength=N_CLASSES)
    n_counted = np.bincount(cls[counted], minlength=N_CLASSES)
    orig = np.bincount(cls, weights=top[:, 0] == cls, minlength=N_CLASSES) / np.maximum(n, 1)
    multi = np.bincount(cls[counted], weights=hit[counted], minlength=N_CLASSES) / np.maximum(n_counted, 1)
    return pd.DataFrame({"class": np.arange(N_CLASSES), "images": n, "original_acc": orig, "multilabel_acc": multi,
                         "gain": multi - orig})


def agreement(a: LabelSets, b: LabelSets) -> pd.DataFrame:
    """How two label sources agree on the images they share: identical sets, one inside the
    other, overlapping, disjoint; and how often a's sets are empty."""
    rows_b = b.rows(a.names, "first label source names") if len(a) else np.zeros(0, dtype=np.int64)
    da, db = _Dense.of(a), b.dense()[rows_b]
    inter = (da & db).sum(1)
    sa, sb = a.sizes, b.sizes[rows_b]
    kinds = np.select([(sa == 0) | (sb == 0), (inter == sa) & (inter == sb), inter == sa, inter == sb, inter > 0],
                      ["an empty set", "identical", f"{a.source or 'a'} inside {b.source or 'b'}",
                       f"{b.source or 'b'} inside {a.source or 'a'}", "overlapping"], "disjoint")
    return pd.Series(kinds).value_counts().rename_axis("relation").reset_index(name="images")
