"""Label sets of ImageNet validation images, keyed by file name, and their loaders."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .files import locate

N_VAL = 50_000
N_CLASSES = 1000
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")


def val_filename(index: int) -> str:
    """The file name of validation image ``index`` (0-based)."""
    return f"ILSVRC2012_val_{index + 1:08d}.JPEG"


def val_filenames() -> np.ndarray:
    return np.array([val_filename(i) for i in range(N_VAL)])


def val_indices(filenames: Sequence[str], argument: str = "filenames") -> np.ndarray:
    """0-based validation indices of ImageNet validation file names (paths allowed).

    Raises ``ValueError`` naming the first name that is not ``ILSVRC2012_val_NNNNNNNN.JPEG``
    with 1 <= NNNNNNNN <= 50000, and the first duplicate.
    """
    names = np.asarray(filenames)
    if names.ndim != 1:
        raise ValueError(f"{argument} must be a 1-D sequence of file names, got shape {names.shape}")
    out = _fast_val_indices(names)
    if out is not None:
        _check_unique(out, names, argument)
        return out
    out = np.empty(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        m = _VAL_NAME.match(str(n).replace("\\", "/").rsplit("/", 1)[-1])
        k = int(m.group(1)) if m else 0
        if not 1 <= k <= N_VAL:
            raise ValueError(f"{argument}[{i}] = {str(n)!r} is not an ImageNet validation file name "
                             f"(expected ILSVRC2012_val_00000001.JPEG ... ILSVRC2012_val_00050000.JPEG)")
        out[i] = k - 1
    _check_unique(out, names, argument)
    return out


_PREFIX = np.array([ord(c) for c in "ILSVRC2012_val_"], dtype=np.uint32)
_SUFFIX = np.array([ord(c) for c in ".JPEG"], dtype=np.uint32)


def _fast_val_indices(names: np.ndarray) -> np.ndarray | None:
    """Parse bare validation names as UTF-32 code points, all at once; ``None`` when any name
    is not a well-formed bare name (the slow path then finds and names it)."""
    if names.dtype.kind != "U" or len(names) == 0 or names.dtype.itemsize != 4 * 28:
        return None
    codes = np.ascontiguousarray(names).view(np.uint32).reshape(len(names), 28)
    digits = codes[:, 15:23].astype(np.int64) - 48
    if not ((codes[:, :15] == _PREFIX).all() and (codes[:, 23:] == _SUFFIX).all()
            and ((digits >= 0) & (digits <= 9)).all()):
        return None
    k = digits @ (10 ** np.arange(7, -1, -1, dtype=np.int64))
    if k.min() < 1 or k.max() > N_VAL:
        return None
    return k - 1


def _check_unique(out: np.ndarray, names: np.ndarray, argument: str) -> None:
    if len(np.unique(out)) != len(out):
        seen, dup = set(), None
        for i, k in enumerate(out):
            if k in seen:
                dup = i
                break
            seen.add(k)
        raise ValueError(f"{argument}[{dup}] = {str(names[dup])!r} appears more than once: every image may be "
                         "scored once; drop the duplicates")


@dataclass
class LabelSets:
    """Sets of valid classes per image, stored flat (CSR): image ``i`` has
    ``indices[indptr[i]:indptr[i + 1]]``. ``names`` are the images' file names."""

    names: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    num_classes: int = N_CLASSES
    source: str = ""

    def __post_init__(self):
        self.names = np.asarray(self.names)
        self.indptr = np.asarray(self.indptr, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if self.indptr.shape != (len(self.names) + 1,) or self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0) \
                or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must start at 0, never decrease, end at len(indices) and have one entry per "
                             "name plus one")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.num_classes):
            raise ValueError(f"class indices must lie in 0..{self.num_classes - 1}")
        self._row = {n: i for i, n in enumerate(self.names.tolist())}
        if len(self._row) != len(self.names):
            raise ValueError("label sets hold a file name twice")
        self.val_order = len(self.names) == N_VAL and bool(np.array_equal(self.names, val_filenames()))

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]], names: Sequence[str], num_classes: int = N_CLASSES,
                   source: str = "") -> "LabelSets":
        if not isinstance(lists, (list, tuple)) or any(not isinstance(x, (list, tuple)) for x in lists):
            raise ValueError("label sets must be a list with one list of class indices per image")
        if len(lists) != len(names):
            raise ValueError(f"{len(lists)} label sets for {len(names)} file names")
        sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        flat = [c for x in lists for c in x]
        if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in flat):
            raise ValueError("class indices must be integers")
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        return cls(np.asarray(names), indptr, np.asarray(flat, dtype=np.int64), num_classes, source)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> list[int]:
        return self.indices[self.indptr[i]:self.indptr[i + 1]].tolist()

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def dense(self) -> np.ndarray:
        """A boolean (images, classes) matrix."""
        m = np.zeros((len(self), self.num_classes), dtype=bool)
        m[np.repeat(np.arange(len(self)), self.sizes), self.indices] = True
        return m

    def rows(self, filenames: Sequence[str], argument: str = "filenames") -> np.ndarray:
        """Row of each file name (aligned by name, never by position)."""
        names = np.asarray(filenames)
        missing = [str(n) for n in names[:] if str(n).replace("\\", "/").rsplit("/", 1)[-1] not in self._row]
        if missing:
            raise ValueError(f"{len(missing)} of {argument} have no label set in {self.source or 'these labels'}, "
                             f"for example {missing[0]!r}")
        return np.array([self._row[str(n).replace("\\", "/").rsplit("/", 1)[-1]] for n in names], dtype=np.int64)

    def to_lists(self) -> list[list[int]]:
        return [self[i] for i in range(len(self))]


def _read_json(name: str, download: bool):
    path = locate(name, download)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def parse_real(obj, source: str = "real.json") -> LabelSets:
    """ReaL labels from the parsed ``real.json`` (a list of 50,000 lists of class indices)."""
    if not isinstance(obj, list) or len(obj) != N_VAL:
        raise ValueError(f"{source} must hold a list of {N_VAL} label lists (one per validation image), got "
                         f"{type(obj).__name__}" + (f" of length {len(obj)}" if isinstance(obj, list) else ""))
    return LabelSets.from_lists(obj, val_filenames(), source=source)


def real_labels(download: bool = False) -> LabelSets:
    """The ReaL label sets (Beyer et al. 2020) of the 50,000 validation images; an empty set
    means the raters found no label fitting and the image is left out of ReaL accuracy."""
    return parse_real(_read_json("real.json", download))


def parse_scores(npz, source: str = "real_scores.npz") -> pd.DataFrame:
    for key in ("tensor", "info"):
        if key not in getattr(npz, "files", ()):
            raise ValueError(f"{source} has no array {key!r}: expected the ReaL scores archive (scores and info)")
    scores, info = np.asarray(npz["tensor"]), np.asarray(npz["info"])
    if scores.ndim != 1 or info.shape != (len(scores), 2):
        raise ValueError(f"{source}: scores must be (N,) and info (N, 2), got {scores.shape} and {info.shape}")
    if not np.all(np.isfinite(scores)) or scores.min(initial=0) < 0 or scores.max(initial=0) > 1:
        raise ValueError(f"{source}: scores must be probabilities in [0, 1]")
    label = np.array([int(x) if str(x).isdigit() else -1 for x in info[:, 1]])
    if len(label) and (label.min() < 0 or label.max() >= N_CLASSES):
        raise ValueError(f"{source}: labels must be class indices 0..{N_CLASSES - 1}")
    return pd.DataFrame({"filename": info[:, 0], "index": _indices_allow_repeats(info[:, 0], source),
                         "label": label, "score": scores})


def _indices_allow_repeats(names: np.ndarray, source: str) -> np.ndarray:
    uniq, inv = np.unique(names, return_inverse=True)
    return val_indices(uniq, f"{source} file names")[inv]


def real_scores(download: bool = False) -> pd.DataFrame:
    """Dawid-Skene scores of every rated (image, label) pair: columns filename, index, label, score."""
    path = locate("real_scores.npz", download)
    with np.load(path, allow_pickle=False) as z:
        return parse_scores(z, path.name)


def original_labels(download: bool = False) -> np.ndarray:
    """The original single ImageNet label of every validation image, in file-name order
    (re-ordered from the cleanlab arrays, which are in folder order)."""
    files = _read_json("cleanlab_val_index_to_filepath.json", download)
    labels = np.load(locate("cleanlab_val_original_labels.npy", download), allow_pickle=False)
    if len(files) != N_VAL or labels.shape != (N_VAL,):
        raise ValueError("the cleanlab index and label arrays must each have 50,000 entries")
    out = np.empty(N_VAL, dtype=np.int64)
    out[val_indices(files, "cleanlab_val_index_to_filepath.json")] = labels
    return out


@dataclass
class Predictions:
    """Top-1 predictions with the file names they belong to (any order)."""
    labels: np.ndarray
    filenames: np.ndarray
    source: str = ""


def bundled_predictions(download: bool = False) -> Predictions:
    """A cross-validated ImageNet model's top-1 predictions (Northcutt et al. 2021), with file names.

    The arrays ship in folder order (synset, then file name), not file-name order: they
    are only meaningful with their file names, which this returns alongside.
    """
    files = _read_json("cleanlab_val_index_to_filepath.json", download)
    pred = np.load(locate("cleanlab_val_predicted_labels.npy", download), allow_pickle=False)
    names = np.array([f.rsplit("/", 1)[-1] for f in files])
    return Predictions(pred.astype(np.int64), names, "cleanlab cross-validated predictions")


def labels_from_scores(threshold: float = 0.8, scores: pd.DataFrame | None = None,
                       original: np.ndarray | None = None) -> LabelSets:
    """Rebuild ReaL-style label sets from the rater scores at any threshold.

    A rated image keeps every label whose score is at least ``threshold`` (an empty set when
    none does); an image that was never sent to raters keeps its original label. With the
    published threshold 0.8 this reproduces ``real.json`` exactly (a test checks it).
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    scores = real_scores() if scores is None else scores
    original = original_labels() if original is None else np.asarray(original)
    rated = np.zeros(N_VAL, dtype=bool)
    rated[scores["index"].to_numpy()] = True
    keep = scores[scores["score"].to_numpy() >= threshold]
    idx = np.concatenate([keep["index"].to_numpy(), np.nonzero(~rated)[0]])
    lab = np.concatenate([keep["label"].to_numpy(), original[~rated]])
    order = np.lexsort((lab, idx))
    idx, lab = idx[order], lab[order]
    indptr = np.searchsorted(idx, np.arange(N_VAL + 1))
    return LabelSets(val_filenames(), indptr, lab, source=f"ReaL scores >= {threshold}")


def wordnet_ids(download: bool = False) -> list[str]:
    """The 1,000 WordNet ids in class-index order (index 0 = n01440764, tench)."""
    obj = _read_json("multilabelfy_label_indices_to_wordnet_ids.json", download)
    if not isinstance(obj, dict) or sorted(obj, key=lambda k: int(k) if str(k).isdigit() else -1) != \
            [str(i) for i in range(N_CLASSES)]:
        raise ValueError("the WordNet id map must be a JSON object with keys '0' ... '999'")
    return [str(obj[str(i)]) for i in range(N_CLASSES)]


def class_names(download: bool = False) -> list[str]:
    """Short human-readable names of the 1,000 classes (imagenet-simple-labels)."""
    obj = _read_json("imagenet-simple-labels.json", download)
    if not isinstance(obj, list) or len(obj) != N_CLASSES:
        raise ValueError("imagenet-simple-labels.json must hold a list of 1000 names")
    return [str(x) for x in obj]


def parse_imagenetv2(refined, manifest, wnids: Sequence[str], source: str = "ImageNetV2") -> tuple[LabelSets, np.ndarray]:
    """ImageNetV2 MatchedFrequency: the refined label sets (Anzaku et al.) and the original
    single labels from the dataset's manifest, both in the manifest's image order."""
    if not isinstance(refined, dict):
        raise ValueError(f"{source} refined labels must be a JSON object from image file name to label list")
    files = manifest.get("image_filenames") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or any(not isinstance(f, (list, tuple)) or len(f) != 2 for f in files):
        raise ValueError(f"{source} manifest must hold 'image_filenames' as a list of [image id, WordNet id] pairs")
    index = {w: i for i, w in enumerate(wnids)}
    by_id = {str(k).rsplit(".", 1)[0]: v for k, v in refined.items()}
    lists, original, names = [], [], []
    for image, wnid in files:
        if wnid not in index:
            raise ValueError(f"{source} manifest: {wnid!r} is not an ImageNet-1k WordNet id")
        labels = by_id.get(str(image))
        if labels is None:
            raise ValueError(f"{source}: image {image} of the manifest has no refined label list")
        try:
            lists.append([int(x) for x in labels])
        except (TypeError, ValueError):
            raise ValueError(f"{source}: labels of image {image} are not class indices: {labels!r}") from None
        original.append(index[wnid])
        names.append(f"{image}.jpeg")
    return LabelSets.from_lists(lists, names, source=source), np.asarray(original, dtype=np.int64)


def imagenetv2_labels(download: bool = False) -> tuple[LabelSets, np.ndarray]:
    """``(label sets, original labels)`` of the 10,000 ImageNetV2 MatchedFrequency images."""
    return parse_imagenetv2(_read_json("imagenetv2_refined_labels.json", download),
                            _read_json("imagenetv2_matched_frequency_manifest.json", download), wordnet_ids(download))


def parse_mturk(obj, source: str = "cleanlab_mturk.json") -> pd.DataFrame:
    if not isinstance(obj, list):
        raise ValueError(f"{source} must hold a list of records")
    rows = []
    for i, r in enumerate(obj):
        try:
            votes = r["mturk"]
            row = dict(index=int(r["id"]) - 1, given=int(r["given_original_label"]), guessed=int(r["our_guessed_label"]),
                       **{f"votes_{k}": int(votes[k]) for k in ("given", "guessed", "neither", "both")})
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"{source}: record {i} lacks a field or has a wrong type ({e!r}); each record needs id, "
                             "given_original_label, our_guessed_label and mturk votes given/guessed/neither/both") from None
        if not 0 <= row["index"] < N_VAL or not (0 <= row["given"] < N_CLASSES and 0 <= row["guessed"] < N_CLASSES):
            raise ValueError(f"{source}: record {i} has an image id or class outside the valid range")
        if min(row[k] for k in row if k.startswith("votes_")) < 0:
            raise ValueError(f"{source}: record {i} has a negative vote count")
        rows.append(row)
    df = pd.DataFrame(rows, columns=["index", "given", "guessed", "votes_given", "votes_guessed", "votes_neither",
                                     "votes_both"])
    df.insert(0, "filename", [val_filename(i) for i in df["index"]])
    return df


def mturk_votes(download: bool = False) -> pd.DataFrame:
    """Mechanical Turk votes on 5,440 suspected label errors (Northcutt et al. 2021): for each
    image its given label, the model's guess and the votes for given / guessed / neither / both."""
    return parse_mturk(_read_json("cleanlab_mturk.json", download))


TIMM_TABLES = {"val": "results-imagenet.csv", "real": "results-imagenet-real.csv",
               "v2": "results-imagenetv2-matched-frequency.csv"}


def parse_timm(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    need = {"model", "img_size", "top1", "top5"}
    out = None
    for name, df in tables.items():
        if not need <= set(df.columns):
            raise ValueError(f"timm table {name!r} lacks columns {sorted(need - set(df.columns))}")
        d = df[["model", "img_size", "top1", "top5"] + (["param_count"] if name == "val" else [])].copy()
        for c in ("top1", "top5"):
            d[c] = pd.to_numeric(d[c], errors="coerce") / 100
            if d[c].isna().any() or not d[c].between(0, 1).all():
                raise ValueError(f"timm table {name!r}: column {c} must hold percentages in [0, 100]")
        if name == "val":
            d["param_count"] = pd.to_numeric(d["param_count"].astype(str).str.replace(",", ""), errors="coerce")
        d = d.rename(columns={"top1": f"top1_{name}", "top5": f"top5_{name}"})
        out = d if out is None else out.merge(d, on=["model", "img_size"], how="inner")
    return out.reset_index(drop=True)


def timm_results(download: bool = False) -> pd.DataFrame:
    """timm's results of about 1,300 pretrained models on ImageNet val, ReaL and ImageNetV2
    (one row per model and input size; accuracies as fractions)."""
    tables = {}
    for name, fname in TIMM_TABLES.items():
        path = locate(f"timm_results/{fname}", download)
        try:
            tables[name] = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
            raise ValueError(f"{path} is not a readable CSV table ({e})") from None
    return parse_timm(tables)
