"""The ImageNet label files: where they come from, their checksums, and finding them.

Looked for in ``WORKBENCH_DATA_DIR/imagenet/`` (a mirror), then in the cache, and only
then, when the caller asked for it (``download=True``) and ``HF_HUB_OFFLINE`` is not set,
downloaded from the public source. Every file is checked against its SHA-256 before use.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from .. import config
from ..cache import atomic_write_bytes

_RI = "https://raw.githubusercontent.com/google-research/reassessed-imagenet/master/"
_CL = "https://raw.githubusercontent.com/cleanlab/label-errors/main/"
_TIMM = "https://raw.githubusercontent.com/huggingface/pytorch-image-models/main/results/"

# name -> (sha256, public source or None when only a mirror has it)
FILES: dict[str, tuple[str, str | None]] = {
    "real.json": ("d83e9bff374c631aae8439eb064c7019acc56e1b3bc3f56b8380c2a710b0220b", _RI + "real.json"),
    "real_scores.npz": ("c4b558569f3da12945c57684294f439214a9cb7919b0ae5b44432bd077d03b79", _RI + "scores.npz"),
    "real_raters.npz": ("d3ffe8082e4e61e9716cbc93a7a4e877e3b1d1240032a176e797b43f19107ec8", _RI + "raters.npz"),
    "real_golden.npz": ("738a795e88351799934669ac48bb70e2ebe484b447fc3e09e0c36fbd987d06d2", _RI + "golden.npz"),
    "real_raters_golden.npz": ("6fd910fc7389c3d695ac5e18269689797d0246a378c536e218854f9d93bc8ea6",
                               _RI + "raters_golden.npz"),
    "cleanlab_val_original_labels.npy": ("02324a6ea2ebf9613c6bb5879aa945ae649fe3c422eb36164419c8ba3582df4d",
                                         _CL + "original_test_labels/imagenet_val_set_original_labels.npy"),
    "cleanlab_val_predicted_labels.npy": ("015c76ead98770e56a2db5f3265d7e28a0fee3481897c93301de773e60a8cb73",
                                          _CL + "cross_validated_predicted_labels/imagenet_val_set_cv_pred_labels.npy"),
    "cleanlab_val_index_to_filepath.json": ("3289890d9df0484bacb4b519d460eb8dc2fbd009661f82ee8bbcce96e057f126",
                                            _CL + "dataset_indexing/imagenet_val_set_index_to_filepath.json"),
    "cleanlab_mturk.json": ("79807852426782eb04ae9fcc38454a53eb744bba8ac3213a4d290cfa973995f2",
                            _CL + "mturk/imagenet_mturk.json"),
    "imagenetv2_refined_labels.json": ("1114aaef3180d0d462ffc9942026855ad0997f4e4aad91123097fed86b85d31d", None),
    "imagenetv2_matched_frequency_manifest.json": ("ca1ebce4c2f450835a8640ed447304d3d4318647f3930d7ba752b12ee692728d",
                                                   None),
    "multilabelfy_label_indices_to_wordnet_ids.json": (
        "bd68c5fb912acb5def469a01f7843f8a3597f5afc126233ed9ed6c6e9a980184", None),
    "imagenet-simple-labels.json": ("987705581d9446328498f950454a1cc7d8dfc578a8243d8bfdcd2588a6905aae",
                                    "https://raw.githubusercontent.com/anishathalye/imagenet-simple-labels/master/"
                                    "imagenet-simple-labels.json"),
    "timm_results/results-imagenet.csv": ("30972bf7c7ab451bbd4480ec6116b13d0a84441c57bbc946896fd312264acfcd",
                                          _TIMM + "results-imagenet.csv"),
    "timm_results/results-imagenet-real.csv": ("e94696aed665475e4d0235195733775c5e1b3f36d6f5f7de99f4386e7ed11630",
                                               _TIMM + "results-imagenet-real.csv"),
    "timm_results/results-imagenetv2-matched-frequency.csv": (
        "1d066d8897c40224b14f3cf1d02029c49ebdc56b761ba9a3841bd3bdd3bd0a8e",
        _TIMM + "results-imagenetv2-matched-frequency.csv"),
}

_verified: dict[tuple[str, int, int], bool] = {}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, name: str, sha: str) -> Path:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        got = sha256_file(path)
        if got != sha:
            raise ValueError(f"{path} does not match the expected SHA-256 of {name} (got {got[:12]}..., expected "
                             f"{sha[:12]}...): the file is damaged or another version; replace it with the original")
        _verified[key] = True
    return path


def locate(name: str, download: bool = False) -> Path:
    """The verified local path of label file ``name`` (a key of :data:`FILES`)."""
    if name not in FILES:
        raise ValueError(f"unknown label file {name!r}; known: {', '.join(FILES)}")
    sha, url = FILES[name]
    tried = []
    mirror = config.data_dir()
    if mirror is not None:
        p = mirror / "imagenet" / name
        if p.is_file():
            return _check(p, name, sha)
        tried.append(str(p))
    cached = config.cache_dir() / "imagenet" / name
    if cached.is_file():
        return _check(cached, name, sha)
    tried.append(str(cached))
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if download and url and not offline:
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 (fixed https URLs above)
            data = r.read()
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            raise ValueError(f"{url} returned a file whose SHA-256 ({got[:12]}...) is not the pinned one of {name}; "
                             "the source changed: put the expected file in WORKBENCH_DATA_DIR/imagenet/")
        atomic_write_bytes(cached, data)
        return cached
    why = ("it has no public source; " if not url else
           "HF_HUB_OFFLINE is set; " if download and offline else "downloading was not requested (download=True); ")
    raise FileNotFoundError(f"label file {name} not found (looked in {', '.join(tried)}); {why}set WORKBENCH_DATA_DIR "
                            f"to a folder whose imagenet/ subfolder holds it"
                            + (f", or call with download=True to fetch it from {url}" if url else ""))
