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
        threads: torch CPU threads (default: the number of cores, at most 8).

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
        threads = min(os.cpu_count() or 1, 8)
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
