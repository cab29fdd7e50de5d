"""One function over a grid of configurations, one JSON record per configuration.

A paper-scale study is a grid (depth x policy x seed, bit width x layer, sparsity x
method ...) and a function that runs one configuration and returns a small dict of
numbers. :func:`sweep` calls the function once per configuration that has no complete
record yet and writes what it returns to ``results/<study>/<name>.json``, where the
name is a readable function of the configuration (``depth=14-policy=bn_only-seed=0.json``),
with the device, commit, date, torch version, wall seconds and a ``complete`` flag added.

* In-process (the default): configurations run one after another with a progress bar,
  the way a laptop runs them.
* On Ray (``backend="ray"``): one task per configuration, as many at once as the
  resources allow. On one machine that is one configuration per GPU (or two with
  ``gpus_per_config=0.5``); with ``address=`` the same call runs on a Ray cluster
  (Ray itself runs on SLURM and Kubernetes). A worker that dies is retried
  (``max_retries``).

Records are written by the calling process (the driver), one file per configuration,
atomically (temporary file, fsync, rename: :func:`workbench.cache.atomic_write_bytes`),
under a name fixed by the configuration. So a worker killed at any moment has written
nothing and its retry starts afresh; a second write of a configuration replaces its file
rather than adding one; and a driver killed mid-sweep leaves each configuration with a
whole record or none. A rerun reads the folder and skips every configuration whose record
says ``complete: true``; incomplete ones (a time budget ran out) run again.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from . import config
from .cache import atomic_write_bytes
from .results import results_dir

__all__ = ["sweep", "sweep_folder", "record_name", "BACKENDS"]

BACKENDS = ("inprocess", "ray")
RAY_INSTALL = 'pip install -e ".[sweep]"'
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+-]+")
_SAFE_STEM = re.compile(r"[A-Za-z0-9_.+=,-]+")
MAX_NAME = 150
META_FIELDS = ("study", "device", "commit", "date", "torch", "wall_seconds", "complete")


def sweep(fn: Callable[..., Any], grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
          study: str | None = None, *, folder: str | Path | None = None, pack: str | Sequence[str] | None = None,
          name: Callable[[dict[str, Any]], str] | None = None, backend: str = "inprocess",
          address: str | None = None, gpus_per_config: float | None = None, cpus_per_config: float = 1,
          resources: Mapping[str, float] | None = None, max_retries: int = 3,
          ray_init: Mapping[str, Any] | None = None, refresh: bool = False, dry_run: bool = False,
          commit: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Run ``fn(**configuration)`` for every configuration of ``grid`` that has no complete record.

    Args:
        fn: a function whose keyword arguments are the grid's keys; it returns one record,
            a dict of JSON values (numbers, strings, booleans, ``None``, lists, dicts with string
            keys; NumPy scalars are converted). It may set ``complete`` (a bool: ``False`` when it
            stopped early, so that a rerun runs it again) and any of the added fields below
            (its values win). Returning ``None`` writes nothing; the configuration stays pending.
            Bind constants with ``functools.partial``. On Ray, ``fn`` must be importable on the
            workers (a function of a module, not of a notebook cell, unless the notebook's code
            travels with cloudpickle, which it does for functions defined in ``__main__``).
        grid: ``{axis: [values]}`` (every combination, in order, the last axis varying
            fastest) or a list of configuration dicts. Values are JSON values.
        study: the folder ``results/<study>/`` (:func:`workbench.results.results_dir`,
            ``WORKBENCH_RESULTS_DIR`` moves it).
        folder: an explicit folder instead of ``results/<study>/``.
        pack: axes that one call of ``fn`` handles together (the four policies of one depth
            trained as one packed network): configurations that differ only on these axes go to
            one call, which receives each packed axis as a list of the values still to run
            (aligned across packed axes) and returns a list of records, one per value, in order.
            Records stay one file per configuration, so a rerun after a partial run passes only
            the missing values.
        name: ``configuration -> file stem`` instead of the default ``key=value-key=value``
            (keys sorted; an odd or long value is replaced by a hash). Use it to keep the
            names of records written before a study moved to :func:`sweep`.
        backend: ``"inprocess"`` (default) or ``"ray"``.
        address: a Ray cluster (``"auto"``, ``"ray://head:10001"``); ``None`` starts a local Ray
            on this machine (unless one is already running in this process). Ray only.
        gpus_per_config: GPUs reserved for each call of ``fn`` on Ray (``0.5`` puts two on a
            GPU); default 1 when the Ray cluster has GPUs, else 0. Ray sets
            ``CUDA_VISIBLE_DEVICES`` for each task, so ``wb.device()`` inside ``fn`` is its GPU.
        cpus_per_config: CPUs reserved for each call on Ray.
        resources: custom Ray resources per call (``{"H200": 1}``).
        max_retries: times Ray reruns a call whose worker died (killed, out of memory, node lost);
            an exception raised by ``fn`` is not retried.
        ray_init: extra keyword arguments for ``ray.init`` when this call starts Ray
            (``num_cpus``, ``runtime_env``, ``_temp_dir`` ...). A Ray this call starts is shut
            down when it returns; one that was running is left running.
        refresh: run every configuration again, complete or not.
        dry_run: run nothing; return the plan, one row per configuration with its ``file`` and
            ``status`` (``complete``, ``incomplete`` or ``missing``) and ``run`` (what a real
            call would run).
        commit: recorded as ``commit``; default ``WORKBENCH_COMMIT``, else ``git rev-parse`` of
            the checkout (with ``-dirty`` when tracked files differ from it), else ``"unknown"``.
        progress: show a progress bar and a one-line summary.

    Each record holds the configuration, what ``fn`` returned, and: ``study``, ``device``
    (the GPU's name, else the CPU's), ``commit``, ``date`` (ISO), ``torch`` (version),
    ``wall_seconds`` (of the call of ``fn``, shared by the records of a packed call) and
    ``complete``.

    Returns:
        A DataFrame of the records of the grid's configurations (in grid order; those ``fn``
        returned ``None`` for are absent), read back from their files, with a ``file`` column.

    Raises:
        ValueError: a grid key ``fn`` does not take (or a parameter of ``fn`` the grid does not
            give), an empty axis, a grid that is neither a mapping of lists nor a list of dicts,
            a record file that does not parse, an unknown backend.
        TypeError: ``fn`` returned something that is not a JSON-able dict.
        ImportError: ``backend="ray"`` without Ray installed.
        RuntimeError: on Ray, after every other call finished, the calls that failed.

    Example:
        A study on one GPU, or a laptop (configurations one after another)::

            def run(depth, policy, seed, epochs=160):
                ...                                   # train, evaluate
                return {"test_acc": acc, "epochs": epochs_done, "complete": epochs_done == epochs}

            table = wb.sweep(run, {"depth": [14, 32], "policy": ["bn_only", "full"], "seed": [0, 1]},
                             study="bn_only")         # results/bn_only/depth=14-policy=bn_only-seed=0.json ...

        All GPUs of one machine, one configuration per GPU (two per GPU with ``0.5``)::

            table = wb.sweep(run, grid, study="bn_only", backend="ray", gpus_per_config=1)

        A Ray cluster: start Ray on the nodes (``ray start --head`` on one, ``ray start
        --address=HEAD:6379`` on the others; a SLURM job script or KubeRay does the same), then
        from the head node, or from anywhere through Ray Client::

            table = wb.sweep(run, grid, study="bn_only", backend="ray", address="auto")
            table = wb.sweep(run, grid, study="bn_only", backend="ray", address="ray://head:10001")

        Every node needs the workbench installed (``pip install -e ".[sweep]"`` of the same commit,
        or ``ray_init={"runtime_env": {"working_dir": "."}}``) and the data (``WORKBENCH_DATA_DIR``).
        Records are written on the machine that calls :func:`sweep`; the workers need no shared disk.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(map(repr, BACKENDS))}")
    if backend != "ray":
        given = [k for k, v in (("address", address), ("gpus_per_config", gpus_per_config),
                                ("resources", resources), ("ray_init", ray_init)) if v is not None]
        if given:
            raise ValueError(f"{given[0]}= is an option of backend='ray', and backend is {backend!r}: "
                             "pass backend='ray' to run on Ray")
    fn_name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) or repr(fn)
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {_a(fn)}")
    configs = _configurations(grid)
    packed = _pack_axes(pack, configs)
    _check_signature(fn, fn_name, configs)
    if folder is None:
        if not study or not isinstance(study, str) or any(c in study for c in "/\\\0") or study in (".", ".."):
            raise ValueError(f"study={study!r}: name the study (records go to results/<study>/) "
                             "or pass folder= explicitly")
        folder = results_dir() / study
    folder = Path(folder)
    study = study or folder.name
    names = _names(configs, name)
    paths = [folder / f"{n}.json" for n in names]
    status = [_status(p, c) for p, c in zip(paths, configs)]
    to_run = [i for i, s in enumerate(status) if refresh or s != "complete"]

    if dry_run:
        plan = pd.DataFrame(configs)
        plan["file"] = [p.name for p in paths]
        plan["status"] = status
        run = set(to_run)
        plan["run"] = [i in run for i in range(len(configs))]
        return plan

    groups = _groups(to_run, configs, packed)
    if progress:
        print(f"sweep {study}: {len(configs)} configurations, {len(configs) - len(to_run)} complete in {folder}, "
              f"{len(to_run)} to run ({backend}{', ' + str(len(groups)) + ' packed calls' if packed else ''})",
              flush=True)
    if groups:
        _make_folder(folder)
        meta = {"study": study, "commit": commit or _commit(), "mode": config.get_mode()}
        calls = [(_call_kwargs(group, configs, packed), [configs[i] for i in group], [names[i] for i in group])
                 for group in groups]

        written = []

        def write(group: list[int], texts: list[str | None]) -> None:
            for i, text in zip(group, texts):
                if text is not None:
                    _write(paths[i], text)
                    written.append(i)

        if backend == "inprocess":
            _run_inprocess(fn, fn_name, groups, calls, packed, meta, write, progress)
        else:
            _run_ray(fn, fn_name, groups, calls, packed, meta, write, progress, address=address,
                     gpus_per_config=gpus_per_config, cpus_per_config=cpus_per_config, resources=resources,
                     max_retries=max_retries, ray_init=ray_init)
        if progress:
            left = len(to_run) - len(written)
            print(f"sweep {study}: wrote {len(written)} records"
                  + (f"; {left} configurations returned None and stay pending" if left else ""), flush=True)
    return _load(paths, configs)


# -- the grid ------------------------------------------------------------------------------------------

def _a(value: Any) -> str:
    """'a float', 'an int': the type of ``value`` with its article."""
    t = type(value).__name__
    return f"{'an' if t[:1].lower() in 'aeiou' else 'a'} {t}"


def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON (tuples become lists, NumPy scalars Python numbers), or a TypeError naming ``where``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value}, which JSON cannot hold; return None or a string such as 'nan'")
        return value
    try:
        import numpy as np
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return _json_value(value.item(), where)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where} has the key {bad[0]!r}, not a string; JSON objects need string keys")
        return {k: _json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    hint = " (use .item() or .tolist())" if hasattr(value, "tolist") else ""
    raise TypeError(f"{where} is {_a(value)}, not a JSON value (number, string, bool, None, "
                    f"list or dict){hint}")


def _configurations(grid: Any) -> list[dict[str, Any]]:
    """The grid as a list of configuration dicts, checked."""
    form = "a mapping of lists ({'depth': [14, 32], 'seed': [0, 1]}) or a list of dicts ([{'depth': 14}, ...])"
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError(f"grid is empty: give it at least one axis, as {form}")
        axes = {}
        for key, values in grid.items():
            _check_key(key, "grid")
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, range)):
                raise ValueError(f"grid[{key!r}] is {values!r}, not a list of values; write {key!r}: [{values!r}] "
                                 f"for one value (the grid must be {form})")
            if len(values) == 0:
                raise ValueError(f"grid[{key!r}] is empty: every axis needs at least one value "
                                 "(an empty axis leaves no configurations); give it values or remove the axis")
            vals = [_json_value(v, f"grid[{key!r}][{i}]") for i, v in enumerate(values)]
            seen = set()
            for v in vals:
                t = _canonical(v)
                if t in seen:
                    raise ValueError(f"grid[{key!r}] lists {v!r} twice; each value once")
                seen.add(t)
            axes[key] = vals
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    if isinstance(grid, (list, tuple)):
        if not grid:
            raise ValueError(f"grid is an empty list: give at least one configuration, as {form}")
        configs, seen = [], {}
        for i, c in enumerate(grid):
            if not isinstance(c, Mapping):
                raise ValueError(f"grid[{i}] is {_a(c)}, not a dict; the grid must be {form}")
            if not c:
                raise ValueError(f"grid[{i}] is an empty dict: a configuration needs at least one key")
            for key in c:
                _check_key(key, f"grid[{i}]")
            cfg = {k: _json_value(v, f"grid[{i}][{k!r}]") for k, v in c.items()}
            t = _canonical(cfg)
            if t in seen:
                raise ValueError(f"grid[{i}] repeats grid[{seen[t]}] ({cfg}); list each configuration once")
            seen[t] = i
            configs.append(cfg)
        return configs
    raise ValueError(f"grid is {_a(grid)}; it must be {form}")


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key.isidentifier():
        raise ValueError(f"{where} has the key {key!r}: grid keys are the keyword arguments of fn, "
                         "so each must be a Python identifier such as 'depth'")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _pack_axes(pack: str | Sequence[str] | None, configs: list[dict[str, Any]]) -> tuple[str, ...]:
    if pack is None:
        return ()
    axes = (pack,) if isinstance(pack, str) else tuple(pack)
    keys = set().union(*configs)
    for a in axes:
        if a not in keys:
            raise ValueError(f"pack={pack!r}: {a!r} is not a grid key ({', '.join(sorted(keys))})")
    if len(set(axes)) != len(axes):
        raise ValueError(f"pack={pack!r} names an axis twice")
    return axes


def _check_signature(fn: Callable, fn_name: str, configs: list[dict[str, Any]]) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    params = sig.parameters
    kinds = inspect.Parameter
    takes_any = any(p.kind == kinds.VAR_KEYWORD for p in params.values())
    by_keyword = [n for n, p in params.items() if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    shown = f"{fn_name}({', '.join(by_keyword)})"
    for keyset in {tuple(c) for c in configs}:
        if not takes_any:
            for k in keyset:
                if k not in by_keyword:
                    raise ValueError(f"grid key {k!r} is not a parameter of {shown}: rename the axis to one of "
                                     f"its parameters, or add a parameter {k!r} to {fn_name}")
        for n, p in params.items():
            if p.default is p.empty and p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD,
                                                   kinds.KEYWORD_ONLY) and n not in keyset:
                raise ValueError(f"{shown} needs {n!r}, which the grid does not give: add an axis {n!r}: [...], "
                                 f"or bind it with functools.partial({fn_name}, {n}=...)")


# -- names and files -----------------------------------------------------------------------------------

def _value_text(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (bool, int)) or value is None:
        text = str(value)
    elif isinstance(value, str) and _SAFE_VALUE.fullmatch(value) and not value.startswith("."):
        text = value
    else:  # a list, a dict, or a string with characters a file name should not hold
        return "_" + hashlib.sha256(_canonical(value).encode()).hexdigest()[:10]
    return text if len(text) <= 40 else "_" + hashlib.sha256(_canonical(value).encode()).hexdigest()[:10]


def sweep_folder(study: str, constants: Mapping[str, Any]) -> Path:
    """A folder for a notebook's sweep records in the cache (``wb.config.cache_dir()/sweeps``) rather
    than in the checkout's ``results/``: named by ``study`` and a digest of ``constants``, the
    arguments every configuration shares (model, data sizes, epochs ...), so that changing one of
    them starts a fresh set of records instead of reading records made under other settings.

    >>> sweep_folder("random_pruning", {"epochs": 3}).parent.name
    'sweeps'
    """
    if not isinstance(study, str) or not _SAFE_VALUE.fullmatch(study):
        raise ValueError(f"study names a folder: letters, digits and _ . + - only, got {study!r}")
    digest = hashlib.sha256(_canonical({k: _json_value(v, f"constants[{k!r}]") for k, v in constants.items()})
                            .encode()).hexdigest()[:12]
    return config.cache_dir() / "sweeps" / f"{study}-{digest}"


def record_name(configuration: Mapping[str, Any]) -> str:
    """The default file stem of a configuration: ``key=value`` pieces, keys sorted, joined by ``-``.

    >>> record_name({"seed": 0, "depth": 14, "policy": "bn_only"})
    'depth=14-policy=bn_only-seed=0'

    A value that is not a short plain word or number (a path, a list) becomes ``_`` and ten hex
    digits of its hash; a name longer than 150 characters keeps its first pieces and ends with
    ``-h=`` and a hash of the whole configuration.
    """
    pieces = [f"{k}={_value_text(configuration[k])}" for k in sorted(configuration)]
    stem = "-".join(pieces)
    if len(stem) <= MAX_NAME:
        return stem
    digest = hashlib.sha256(_canonical(dict(configuration)).encode()).hexdigest()[:16]
    kept = ""
    for p in pieces:
        if len(kept) + len(p) + 1 > MAX_NAME - 20:
            break
        kept = f"{kept}-{p}" if kept else p
    return f"{kept}-h={digest}" if kept else f"h={digest}"


def _names(configs: list[dict[str, Any]], name: Callable | None) -> list[str]:
    names = []
    for c in configs:
        stem = record_name(c) if name is None else name(dict(c))
        if name is not None and (not isinstance(stem, str) or not _SAFE_STEM.fullmatch(stem)
                                 or stem.startswith(".") or len(stem) > 200):
            raise ValueError(f"name({c}) returned {stem!r}: a file stem needs letters, digits and _ . + = , - "
                             "only (no slashes, not starting with a dot, at most 200 characters)")
        names.append(stem)
    first: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in first:
            raise ValueError(f"configurations {configs[first[n]]} and {configs[i]} get the same record file "
                             f"{n}.json; pass name= that tells them apart")
        first[n] = i
    return names


def _read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable JSON record ({e}); delete or fix it "
                         "(deleting it makes the sweep run that configuration again)") from e
    if not isinstance(rec, dict):
        raise ValueError(f"{path} holds {_a(rec)}, not a JSON object record; delete or fix it")
    return rec


def _status(path: Path, cfg: dict[str, Any]) -> str:
    if not path.exists():
        return "missing"
    rec = _read_record(path)
    for k, v in cfg.items():
        if k in rec and _canonical(rec[k]) != _canonical(v):
            raise ValueError(f"{path} holds {k}={rec[k]!r}, but it is the file of the configuration {cfg}: "
                             "two configurations map to one file name; delete the file, or pass name= that "
                             "tells them apart")
    return "complete" if rec.get("complete") is True else "incomplete"


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the results folder {folder} ({e.strerror}); pass folder= a writable "
                      "folder or set WORKBENCH_RESULTS_DIR") from e
    if not os.access(folder, os.W_OK):
        raise OSError(f"the results folder {folder} is not writable; pass folder= a writable folder "
                      "or set WORKBENCH_RESULTS_DIR")


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_bytes(path, text.encode())
    except OSError as e:
        raise OSError(f"cannot write the record {path} ({e}); pass folder= a writable folder") from e


def _load(paths: list[Path], configs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for p, c in zip(paths, configs):
        if p.exists():
            rec = _read_record(p)
            rows.append({**c, **rec, "file": p.name})  # records written before a study used sweep may lack its keys
    return pd.DataFrame(rows)


# -- one call ------------------------------------------------------------------------------------------

def _groups(to_run: list[int], configs: list[dict[str, Any]], packed: tuple[str, ...]) -> list[list[int]]:
    if not packed:
        return [[i] for i in to_run]
    groups: dict[str, list[int]] = {}
    for i in to_run:
        rest = {k: v for k, v in configs[i].items() if k not in packed}
        groups.setdefault(_canonical(rest), []).append(i)
    return list(groups.values())


def _call_kwargs(group: list[int], configs: list[dict[str, Any]], packed: tuple[str, ...]) -> dict[str, Any]:
    first = configs[group[0]]
    kwargs = {k: v for k, v in first.items() if k not in packed}
    for a in packed:
        kwargs[a] = [configs[i][a] for i in group]
    return kwargs


def _device_name() -> str:
    dev = config.device()
    if dev.type == "cuda":
        import torch
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine() or "cpu"


def _commit() -> str:
    env = os.environ.get("WORKBENCH_COMMIT", "").strip()
    if env:
        return env
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "diff-index", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=20).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if head and dirty else head or "unknown"


def _as_records(out: Any, n: int, packed: tuple[str, ...], fn_name: str, label: str) -> list[Any]:
    if packed:
        if out is None:
            return [None] * n
        if not isinstance(out, (list, tuple)) or len(out) != n:
            got = f"{len(out)} records" if isinstance(out, (list, tuple)) else _a(out)
            raise TypeError(f"{fn_name}({label}) returned {got}; with pack= it returns a list of {n} records, "
                            "one dict per packed value, in the order given")
        return list(out)
    if isinstance(out, (list, tuple)):
        raise TypeError(f"{fn_name}({label}) returned {_a(out)}; it returns one dict per "
                        "configuration (to have one call handle several configurations, pass pack=)")
    return [out]


def _record_text(cfg: dict[str, Any], rec: Any, fn_name: str, stem: str, extra: dict[str, Any]) -> str:
    where = f"{fn_name}'s record for {stem}"
    if not isinstance(rec, Mapping):
        raise TypeError(f"{where} is {_a(rec)}; fn must return a dict of JSON values "
                        "(e.g. {'test_acc': 0.91}), or None to write nothing")
    out = dict(cfg)
    for k, v in rec.items():
        if not isinstance(k, str):
            raise TypeError(f"{where} has the key {k!r}, not a string; JSON objects need string keys")
        v = _json_value(v, f"{where}[{k!r}]")
        if k in cfg and _canonical(v) != _canonical(cfg[k]):
            raise ValueError(f"{where} sets {k}={v!r}, but the configuration has {k}={cfg[k]!r}; "
                             f"do not return grid keys, or return them unchanged")
        out[k] = v
    for k, v in extra.items():
        out.setdefault(k, v)
    if not isinstance(out["complete"], bool):
        raise TypeError(f"{where}['complete'] is {out['complete']!r}; it must be True or False")
    return json.dumps(out, indent=1, allow_nan=False) + "\n"


def _run_call(fn: Callable, fn_name: str, kwargs: dict[str, Any], cfgs: list[dict[str, Any]], stems: list[str],
              packed: tuple[str, ...], meta: dict[str, Any], remote: bool = False) -> list[str | None]:
    """Call ``fn`` once and return the JSON text of each record (``None``: nothing to write). Runs on a worker."""
    import torch

    if remote and meta.get("mode"):
        config.set_mode(meta["mode"])  # the driver's mode, which wb.setup may have set in a notebook
    label = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    t0 = time.perf_counter()
    out = fn(**kwargs)
    wall = time.perf_counter() - t0
    recs = _as_records(out, len(cfgs), packed, fn_name, label)
    extra = {"study": meta["study"], "device": _device_name(), "commit": meta["commit"],
             "date": datetime.date.today().isoformat(), "torch": torch.__version__, "wall_seconds": wall,
             "complete": True}
    return [None if r is None else _record_text(c, r, fn_name, s, extra) for c, r, s in zip(cfgs, recs, stems)]


# -- backends ------------------------------------------------------------------------------------------

def _run_inprocess(fn, fn_name, groups, calls, packed, meta, write, progress) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(map(len, groups)), desc=f"sweep {meta['study']}", unit="config", disable=not progress)
    try:
        for group, (kwargs, cfgs, stems) in zip(groups, calls):
            bar.set_postfix_str(", ".join(stems), refresh=True)
            write(group, _run_call(fn, fn_name, kwargs, cfgs, stems, packed, meta))
            bar.update(len(group))
    finally:
        bar.close()


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"backend='ray' needs Ray, which is not installed: {RAY_INSTALL} "
                          "(or pip install 'ray>=2.9'); or use backend='inprocess'") from e
    return ray


def _run_ray(fn, fn_name, groups, calls, packed, meta, write, progress, *, address, gpus_per_config,
             cpus_per_config, resources, max_retries, ray_init) -> None:
    ray = _import_ray()
    if gpus_per_config is not None and (gpus_per_config < 0 or (gpus_per_config > 1 and gpus_per_config % 1)):
        raise ValueError(f"gpus_per_config={gpus_per_config}: a fraction of one GPU (0.5) or a whole number")
    if cpus_per_config <= 0:
        raise ValueError(f"cpus_per_config={cpus_per_config}: it must be positive")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries={max_retries!r}: a whole number, 0 or more")
    started = False
    if not ray.is_initialized():
        kw = dict(ray_init or {})
        if address is not None:
            kw["address"] = address
        else:
            kw.setdefault("include_dashboard", False)
        ray.init(**kw)
        started = True
    pending: dict[Any, int] = {}
    try:
        gpus = gpus_per_config
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(_run_call).options(num_cpus=cpus_per_config, num_gpus=gpus, resources=dict(resources or {}),
                                            max_retries=max_retries, retry_exceptions=False)
        fn_ref = ray.put(fn)  # sent once, not once per call
        for g, (kwargs, cfgs, stems) in enumerate(calls):
            pending[task.remote(fn_ref, fn_name, kwargs, cfgs, stems, packed, meta, True)] = g
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, groups)), desc=f"sweep {meta['study']} (ray)", unit="config",
                   disable=not progress)
        failures = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                g = pending.pop(ready[0])
                try:
                    texts = ray.get(ready[0])
                except Exception as e:  # fn raised (RayTaskError), or its worker died max_retries + 1 times
                    failures.append((calls[g][2], e))
                else:
                    write(groups[g], texts)
                bar.update(len(groups[g]))
        finally:
            bar.close()
        if failures:
            listed = "; ".join(", ".join(stems) for stems, _ in failures)
            raise RuntimeError(f"{len(failures)} of {len(calls)} calls of {fn_name} failed on Ray ({listed}); "
                               f"the records of the others are written, a rerun runs only the failed ones. "
                               f"First error: {failures[0][1]}") from failures[0][1]
    finally:
        if pending and not started:
            for ref in pending:
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
