"""The standard first cell of every notebook: ``wb.setup()``."""
from __future__ import annotations

import os
from typing import Any

import torch

from . import config


def setup(mode: str | None = None, seed: int | None = None, device: str | None = None, threads: int | None = None,
          verbose: bool = True) -> dict[str, Any]:
    """Set mode, seed and device, pick a plotly renderer that works in this frontend, report the environment.

    Args:
        mode: override ``WORKBENCH_MODE`` for this kernel (``"smoke"``, ``"laptop"``, ``"paper"``).
        seed: seed everything (default ``WORKBENCH_SEED`` or 0).
        device: override the automatic device choice.
        threads: torch CPU threads (default ``WORKBENCH_THREADS`` when set, which the notebook runner of
            the tests and the docs build sets so that parallel kernels do not oversubscribe the cores;
            else the number of cores this process may use, at most 8).

    Returns:
        The settings in force (also printed).
    """
    from .viz.env import check_environment, frontend

    if mode is not None:
        config.set_mode(mode)
    if device is not None:
        config.set_device(device)
    used_seed = config.seed_everything(seed)
    if threads is None:
        threads = _default_threads()
    torch.set_num_threads(threads)
    try:
        import plotly.io as pio

        fe = frontend()
        pio.renderers.default = {"colab": "colab", "jupyterlab": "plotly_mimetype", "vscode": "plotly_mimetype",
                                 "headless-kernel": "plotly_mimetype+notebook"}.get(fe, pio.renderers.default)
    except ImportError:
        pass
    info = config.summary()
    info["seed"] = used_seed
    if verbose:
        print(" | ".join(f"{k}: {v}" for k, v in info.items() if k in ("mode", "device", "seed", "threads", "data_dir")))
    env = check_environment(verbose=verbose)
    info.update(frontend=env["frontend"], widgets=env["widgets"])
    return info


def _default_threads() -> int:
    """``WORKBENCH_THREADS`` if set (a positive integer), else the usable cores, at most 8."""
    env = os.environ.get("WORKBENCH_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"WORKBENCH_THREADS={env!r} must be a positive number of torch threads, e.g. 2 "
                             "(or unset it to use every core)")
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return min(cores, 8)
