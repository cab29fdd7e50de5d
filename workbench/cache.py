"""Expensive results on disk, keyed by a hash of everything that changes them.

>>> import workbench as wb
>>> def train_and_measure():
...     return {"accuracy": 0.91, "curve": torch.arange(5.0)}
>>> out = wb.cached(train_and_measure, key={"model": "resnet20", "epochs": 5}, name="demo")  # doctest: +SKIP

The first call runs ``fn()`` and stores its result; later calls with an equal key
load it instantly. A result may be any nesting of dicts (string keys), lists,
tuples, numbers, strings, ``None``, torch tensors, NumPy arrays and pandas
DataFrames. Nothing is pickled: tensors go into a safetensors file, the rest into
JSON inside its header, so a cache file can never run code.

Entries are written atomically (a temporary file, fsync, rename) and carry a
SHA-256 of their payload: an entry is complete or absent, and a damaged one is
detected, discarded and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import config

__all__ = ["cached", "cache_key", "cache_path", "atomic_write_bytes", "clear_cache", "fingerprint"]

FORMAT_VERSION = 1


def _canonical(obj: Any) -> Any:
    """A JSON-able, order-independent form of a cache key."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return _canonical(obj.item())
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return {"tensor_sha256": hashlib.sha256(_tensor_bytes(t)).hexdigest(), "shape": list(t.shape),
                "dtype": str(t.dtype)}
    raise TypeError(
        f"cache key contains a {type(obj).__name__}, which has no stable text form; "
        "use numbers, strings, lists, dicts, paths or tensors in the key"
    )


def fingerprint(*parts: Any, length: int = 20) -> str:
    """A short hex digest of ``parts`` (tensors by their bytes, shape and dtype; numbers, strings, lists and
    dicts by their canonical form): what a cache key holds in place of a dataset or a table, so that two inputs
    of the same shape but different contents never share an entry."""
    payload = json.dumps(_canonical(list(parts)), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def cache_key(key: Any, name: str = "result", version: str | int | None = None) -> str:
    """The hex digest that names an entry: the key, the name, the version and the package version."""
    from . import __version__

    payload = json.dumps({"key": _canonical(key), "name": name, "version": version,
                          "workbench": __version__, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def cache_path(key: Any, name: str = "result", version: str | int | None = None,
               cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else config.cache_dir()
    return root / "results" / _safe_name(name) / f"{cache_key(key, name, version)}.safetensors"


def _safe_name(name: str) -> str:
    if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise ValueError(f"cache name {name!r} must be a plain non-empty file name without slashes")
    return name


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create folder {path.parent} ({e.strerror}); set WORKBENCH_CACHE_DIR to a writable folder") from e
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(f"folder {path.parent} is not writable ({e.strerror}); set WORKBENCH_CACHE_DIR to a writable folder") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# -- encoding results without pickle -------------------------------------------------------------------

def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"cannot cache an object array at {path or 'the top level'}; convert it to numbers")
        tensors[path] = torch.from_numpy(np.array(obj, copy=True, order="C"))
        return {"__ndarray__": path}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"cannot cache a dict with non-string keys at {path or 'the top level'}; use string keys")
        if any(k.startswith("__") and k.endswith("__") for k in obj):
            raise TypeError(f"dict keys of the form __name__ are reserved in cached results (at {path or 'top level'})")
        return {k: _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(obj, (pd.DataFrame, pd.Series)):
        # numbers go into tensors (exact), other columns into JSON lists
        frame = obj.to_frame(name=obj.name if obj.name is not None else 0) if isinstance(obj, pd.Series) else obj
        cols = {}
        for i, col in enumerate(frame.columns):
            values = frame[col].to_numpy()
            cols[str(i)] = (_encode(values, tensors, f"{path}.col{i}") if values.dtype.kind in "biuf"
                            else _encode(frame[col].tolist(), tensors, f"{path}.col{i}"))
        index = None if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1 \
            else _encode(frame.index.tolist(), tensors, f"{path}.index")
        return {"__pandas__": "series" if isinstance(obj, pd.Series) else "dataframe",
                "columns": [c if isinstance(c, (str, int)) else str(c) for c in frame.columns],
                "data": cols, "index": index}
    raise TypeError(
        f"cannot cache a {type(obj).__name__} at {path or 'the top level'}: results must be dicts, lists, "
        "numbers, strings, tensors, NumPy arrays or pandas tables (return model.state_dict(), not the model)"
    )


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__pandas__" in obj:
            import pandas as pd
            data = {c: _decode(obj["data"][str(i)], tensors) for i, c in enumerate(obj["columns"])}
            index = _decode(obj["index"], tensors) if obj["index"] is not None else None
            frame = pd.DataFrame(data, index=index, columns=obj["columns"])
            return frame.iloc[:, 0] if obj["__pandas__"] == "series" else frame
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def dumps(obj: Any, meta: dict[str, str] | None = None) -> bytes:
    """Encode a result as safetensors bytes with its structure and checksum in the header."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(obj, tensors, "")
    body = json.dumps(structure, allow_nan=False)
    digest = hashlib.sha256(body.encode())
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(name.encode())
        digest.update(_tensor_bytes(t))
    header = {"structure": body, "sha256": digest.hexdigest(), "format": str(FORMAT_VERSION), **(meta or {})}
    return st_save(tensors, metadata=header)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    if t.dtype in (torch.bfloat16,):
        t = t.view(torch.int16)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def loads(data: bytes) -> Any:
    """Decode bytes from :func:`dumps`; raises ``ValueError`` when they are damaged."""
    try:
        tensors = st_load(data)
        header = _read_header(data)
        body = header["structure"]
        expect = header["sha256"]
    except Exception as e:  # truncated or not a safetensors file at all
        raise ValueError(f"not a complete workbench result file ({type(e).__name__}: {e})") from e
    digest = hashlib.sha256(body.encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(_tensor_bytes(tensors[name]))
    if digest.hexdigest() != expect:
        raise ValueError("checksum mismatch: the file was changed or damaged after it was written")
    return _decode(json.loads(body), tensors)


def _read_header(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > len(data) - 8:
        raise ValueError("bad header length")
    return json.loads(data[8:8 + n]).get("__metadata__", {})


def cached(fn: Callable[[], Any], key: Any, *, name: str | None = None, version: str | int | None = None,
           refresh: bool = False, cache_dir: str | Path | None = None, verbose: bool = False) -> Any:
    """Return ``fn()``, computed once per distinct ``key`` and then read from disk.

    Args:
        fn: a function of no arguments that computes the result (use a lambda or
            ``functools.partial`` to bind arguments).
        key: everything that changes the result: configuration, data version,
            seed. Dicts, lists, numbers, strings, paths and tensors are allowed.
        name: a folder name for this kind of result (defaults to ``fn.__name__``).
        version: bump when the computing code changes; the package version is
            always part of the key too.
        refresh: recompute and overwrite even if an entry exists.
        cache_dir: defaults to :func:`workbench.config.cache_dir`.

    Returns:
        The result, freshly computed or loaded (loaded tensors are on the CPU).
    """
    name = name or getattr(fn, "__name__", "result")
    if name == "<lambda>":
        name = "result"
    path = cache_path(key, name, version, cache_dir)
    if not refresh and path.exists():
        try:
            out = loads(path.read_bytes())
            if verbose:
                print(f"cache hit: {path}")
            return out
        except ValueError as e:
            warnings.warn(f"discarding damaged cache entry {path}: {e}; recomputing", stacklevel=2)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    result = fn()
    atomic_write_bytes(path, dumps(result, {"name": name, "key": json.dumps(_canonical(key))[:2000]}))
    return result


def clear_cache(name: str | None = None, cache_dir: str | Path | None = None) -> int:
    """Delete cached results (of one ``name``, or all); returns the number of files removed."""
    root = (Path(cache_dir) if cache_dir is not None else config.cache_dir()) / "results"
    root = root / _safe_name(name) if name else root
    n = 0
    for p in root.rglob("*.safetensors") if root.exists() else []:
        p.unlink()
        n += 1
    return n
