"""Run-wide settings: mode, device, seed, cache and data folders.

Every notebook starts by reading these. Each setting comes from an environment
variable so CI and users can change it without touching a notebook, and each can
be overridden from Python:

=====================  ===========================  ==============================
variable               default                      meaning
=====================  ===========================  ==============================
``WORKBENCH_MODE``     ``laptop``                   ``smoke`` | ``laptop`` | ``paper``
``WORKBENCH_DEVICE``   best available               ``cuda`` > ``mps`` > ``cpu``
``WORKBENCH_SEED``     ``0``                        default seed
``WORKBENCH_CACHE_DIR`` ``~/.cache/resnet-workbench`` results, decoded datasets
``WORKBENCH_DATA_DIR`` unset                        a local mirror of the datasets
=====================  ===========================  ==============================

Modes:

* ``smoke``: seconds, for CI; checks that the code runs, numbers are not meaningful.
* ``laptop``: a student's CPU, a few minutes per notebook; the paper's claim shows.
* ``paper``: a GPU, as close to the paper's scale as is reasonable.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "MODES", "get_mode", "set_mode", "by_mode", "device", "set_device",
    "seed_everything", "cache_dir", "data_dir", "default_seed",
]

MODES = ("smoke", "laptop", "paper")
T = TypeVar("T")

_overrides: dict[str, Any] = {}


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(
            f"unknown mode {mode!r}: expected one of {', '.join(MODES)} "
            f"(set WORKBENCH_MODE or call wb.config.set_mode)"
        )
    return mode


def get_mode() -> str:
    """The current mode: an override from :func:`set_mode`, else ``WORKBENCH_MODE``, else ``laptop``."""
    if "mode" in _overrides:
        return _overrides["mode"]
    return _check_mode(os.environ.get("WORKBENCH_MODE", "laptop").strip().lower() or "laptop")


def set_mode(mode: str | None) -> str:
    """Override the mode for this process (``None`` returns to the environment's)."""
    if mode is None:
        _overrides.pop("mode", None)
    else:
        _overrides["mode"] = _check_mode(mode)
    return get_mode()


def by_mode(smoke: T, laptop: T, paper: T, mode: str | None = None) -> T:
    """Pick the value for the current (or given) mode.

    Example:
        >>> by_mode(smoke=500, laptop=10_000, paper=None, mode="smoke")
        500
    """
    return {"smoke": smoke, "laptop": laptop, "paper": paper}[_check_mode(mode or get_mode())]


def _best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device() -> torch.device:
    """The device to compute on: override, else ``WORKBENCH_DEVICE``, else cuda > mps > cpu."""
    if "device" in _overrides:
        return _overrides["device"]
    env = os.environ.get("WORKBENCH_DEVICE", "").strip()
    if env:
        return _validate_device(env)
    return _best_device()


def _validate_device(name: str | torch.device) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device {name!r} is not a torch device name (try 'cpu', 'cuda', 'cuda:0' or 'mps')") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU; use 'cpu' or install a CUDA build of torch")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for, but MPS is not available on this machine; use 'cpu'")
    return dev


def set_device(name: str | torch.device | None) -> torch.device:
    """Override the device for this process (``None`` returns to automatic choice)."""
    if name is None:
        _overrides.pop("device", None)
    else:
        _overrides["device"] = _validate_device(name)
    return device()


def default_seed() -> int:
    return int(os.environ.get("WORKBENCH_SEED", "0"))


def seed_everything(seed: int | None = None, deterministic: bool = True) -> int:
    """Seed Python, NumPy and torch so that a CPU run repeats exactly.

    With ``deterministic=True`` torch is also asked for deterministic kernels where
    they exist (``warn_only``, so a GPU op without one warns instead of failing).
    Returns the seed used.
    """
    seed = default_seed() if seed is None else int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed


def _dir_from(var: str, default: Path) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else default


def cache_dir() -> Path:
    """Where results and decoded datasets are cached (``WORKBENCH_CACHE_DIR``)."""
    if "cache_dir" in _overrides:
        return _overrides["cache_dir"]
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return _dir_from("WORKBENCH_CACHE_DIR", base / "resnet-workbench")


def set_cache_dir(path: str | Path | None) -> Path:
    if path is None:
        _overrides.pop("cache_dir", None)
    else:
        _overrides["cache_dir"] = Path(path).expanduser()
    return cache_dir()


def data_dir() -> Path | None:
    """A local mirror of the datasets (``WORKBENCH_DATA_DIR``), or ``None``."""
    if "data_dir" in _overrides:
        return _overrides["data_dir"]
    value = os.environ.get("WORKBENCH_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else None


def set_data_dir(path: str | Path | None) -> Path | None:
    if path is None:
        _overrides.pop("data_dir", None)
    else:
        _overrides["data_dir"] = Path(path).expanduser()
    return data_dir()


def summary() -> dict[str, Any]:
    """The settings in force, for the top of a notebook."""
    return {
        "mode": get_mode(), "device": str(device()), "seed": default_seed(),
        "cache_dir": str(cache_dir()), "data_dir": str(data_dir()) if data_dir() else None,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
