"""Stored experiment records: small JSON files under ``results/``, one per run.

Paper-scale runs happen on a GPU; their records are committed so that a laptop
user sees paper-scale numbers next to the ones their own CPU produced.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd


def results_dir() -> Path:
    """``WORKBENCH_RESULTS_DIR``, else the ``results/`` folder of the checkout."""
    env = os.environ.get("WORKBENCH_RESULTS_DIR", "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[1] / "results"


def load_records(kind: str, folder: str | Path | None = None) -> pd.DataFrame:
    """All records of one kind (``"bn_only"``) as a table, one row per JSON file.

    Raises:
        ValueError: a file that is not a JSON object (the message names it).
    """
    root = Path(folder) if folder is not None else results_dir() / kind
    rows = []
    for p in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{p} is not a readable JSON record ({e}); delete or fix it") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{p} holds a {type(rec).__name__}, not a JSON object record")
        rec["file"] = p.name
        rows.append(rec)
    return pd.DataFrame(rows)
