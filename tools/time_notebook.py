"""Time a notebook in laptop mode (or another mode) from an empty cache, and store the measurement.

    bash scripts/workbench.sh time 05            # notebook 05 in laptop mode, every core, empty cache
    bash scripts/workbench.sh time 05 --mode paper
    bash scripts/workbench.sh time 05 --no-catalog   # measure and store, leave catalog.yml alone

The notebook runs in a fresh kernel with every usable core as torch threads and an empty cache
(datasets decoded too, as on a first run), the reference workload of the smoke budget (5 ResNet-20
training steps) timed in the same kernel before and after it. The measurement goes to
``notebooks/timings.json`` (atomically): wall time, time in reference units, the seconds of the
costliest cells, the machine, the load average before and after, the date and the commit, and a
digest of the notebook's code cells. Unless ``--no-catalog``, the catalog's ``minutes.<mode>`` becomes
the measured minutes (rounded up to a tenth) and ``measured_on.<mode>`` the machine and date.

Measure on an otherwise idle machine: the load average before the run is stored beside the time,
and a run that starts on a busy machine says so. ``tests/notebooks/test_timings.py`` checks the
catalog against the stored measurements (within a factor of 1.5) and the 15-minute laptop limit of
shared/NOTEBOOKS.md; a notebook whose code changed since its measurement must be timed again.
A run whose notebook raises (its claim check included) stores nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
TIMINGS = NB_DIR / "timings.json"
LAPTOP_LIMIT_MINUTES = 15.0    # shared/NOTEBOOKS.md: laptop mode at most 15 minutes on 2 cores
TOLERANCE = 1.5                # catalog figure vs the stored measurement


def code_digest(path: Path) -> str:
    """A digest of the notebook's code cells: what its running time depends on (prose does not count)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    code = ["".join(c.get("source", "")) for c in nb["cells"] if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()[:16]


def machine() -> dict:
    """What the time was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:")) / 2**20
    except (OSError, StopIteration, ValueError):
        mem = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    import torch

    return {"cpu": cpu, "cores": cores, "memory_gib": round(mem) if mem else None, "torch": torch.__version__,
            "python": platform.python_version(), "system": f"{platform.system()} {platform.machine()}"}


def describe_machine(m: dict) -> str:
    return f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, torch {m['torch']}"


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def resolve(which: str, folder: Path = NB_DIR) -> Path:
    """A notebook by its number ("05"), its name without or with ``.ipynb``."""
    names = sorted(p.name for p in folder.glob("*.ipynb"))
    hits = [n for n in names if n == which or n == f"{which}.ipynb" or
            (which.isdigit() and n.split("_", 1)[0] == f"{int(which):02d}")]
    if len(hits) != 1:
        raise SystemExit(f"no single notebook matches {which!r} in {folder} (give its number, e.g. 05, or its name); "
                         f"there are: {', '.join(names)}")
    return folder / hits[0]


def read_timings(path: Path = TIMINGS) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} does not parse ({e}); restore it from git (git checkout -- {path.name}) or "
                         f"delete it and time the notebooks again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping notebook -> mode -> measurement")
    return data


def write_json_atomic(path: Path, data: dict) -> None:
    from workbench.cache import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def catalog_minutes(minutes: float) -> float:
    """The figure the catalog shows: the measured minutes rounded up to a tenth."""
    return math.ceil(minutes * 10 - 1e-9) / 10


def update_catalog(catalog: Path, notebook: str, mode: str, minutes: float, measured_on: str) -> None:
    """Set ``minutes.<mode>`` and ``measured_on.<mode>`` of one entry, keeping the file's comments and layout."""
    from workbench.catalog import parse_catalog

    text = catalog.read_text(encoding="utf-8")
    start = text.find(f"  - notebook: {notebook}\n")
    if start < 0:
        raise SystemExit(f"{catalog} has no entry for {notebook}: add one (bash scripts/workbench.sh new makes it)")
    end = text.find("\n  - notebook:", start + 1)
    end = len(text) if end < 0 else end + 1
    block = text[start:end]
    m = re.search(r"^    minutes: \{(.*)\}\n", block, re.M)
    if not m:
        raise SystemExit(f"{catalog}: the entry of {notebook} has no 'minutes: {{smoke: ..., laptop: ..., paper: ...}}' line")
    fields = dict(kv.split(":", 1) for kv in (x.strip() for x in m.group(1).split(",")) if kv)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    fields[mode] = f"{minutes:g}"
    block = block[:m.start()] + "    minutes: {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n" + block[m.end():]
    on = re.search(r"^    measured_on: \{(.*)\}\n", block, re.M)
    have = {}
    if on:
        have = dict(re.findall(r'(\w+): ("(?:[^"\\]|\\.)*")', on.group(1)))
    have[mode] = json.dumps(measured_on)
    line = "    measured_on: {" + ", ".join(f"{k}: {v}" for k, v in have.items()) + "}\n"
    if on:
        block = block[:on.start()] + line + block[on.end():]
    else:
        mm = re.search(r"^    minutes: .*\n", block, re.M)
        block = block[:mm.end()] + line + block[mm.end():]
    new = text[:start] + block + text[end:]
    parse_catalog(new, str(catalog))   # never write a catalog that does not validate
    from workbench.cache import atomic_write_bytes

    atomic_write_bytes(catalog, new.encode("utf-8"))


def commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "workbench", "notebooks/src"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return (out.stdout.strip() + ("+changes" if dirty else "")) or None
    except OSError:
        return None


def time_notebook(source: Path, mode: str = "laptop", *, timings: Path = TIMINGS, catalog: Path | None = None,
                  executed: Path | None = None, threads: int | None = None) -> dict:
    """Run ``source`` in ``mode`` from an empty cache, store the measurement in ``timings`` and, given
    ``catalog``, set its minutes. Returns the measurement."""
    sys.path.insert(0, str(ROOT))
    import importlib.util

    spec = importlib.util.spec_from_file_location("workbench_docs_build", ROOT / "docs" / "build.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    read_timings(timings)   # a damaged file is reported before an hour of work, not after
    threads = threads or runner.usable_cores()
    load_before = load_average()
    if load_before is not None and load_before > 0.5 * threads:
        print(f"warning: load average {load_before} before the run on {threads} cores: the machine is busy, "
              f"the time will be long (it is stored with the load)", flush=True)
    print(f"timing {source.name} in {mode} mode: 1 kernel, {threads} torch threads, empty cache ...", flush=True)
    started = datetime.now(timezone.utc)
    t = time.perf_counter()
    record = asyncio.run(runner.execute_notebook(source, executed, threads=threads, mode=mode, share_data=False,
                                                 timeout=6 * 3600))
    wall = time.perf_counter() - t
    nb = json.loads(source.read_text(encoding="utf-8"))

    def first_line(i):
        return "".join(nb["cells"][i].get("source", "")).strip().splitlines()[0][:80]

    costly = sorted(record["cell_seconds"], key=lambda c: -c[1])[:5]
    m = machine()
    out = {"mode": mode, "minutes": round(record["seconds"] / 60, 2), "seconds": record["seconds"],
           "kernel_seconds": round(wall, 1), "units": record["units"], "reference_seconds": record["reference_seconds"],
           "threads": threads, "cache": "empty (datasets decoded in the run)",
           "costliest_cells": [{"cell": i, "seconds": s, "code": first_line(i)} for i, s in costly],
           "machine": m, "measured_on": f"{describe_machine(m)}, {started:%Y-%m-%d}",
           "load_before": load_before, "load_after": load_average(), "date": started.isoformat(timespec="seconds"),
           "commit": commit(), "code_digest": code_digest(source)}
    data = read_timings(timings)
    data.setdefault(source.name, {})[mode] = out
    write_json_atomic(timings, data)
    if catalog is not None:
        update_catalog(catalog, source.name, mode, catalog_minutes(out["minutes"]), out["measured_on"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", nargs="+", help="notebook numbers or names (e.g. 05 or 05_vit_vs_resnet_sharpness)")
    ap.add_argument("--mode", default="laptop", choices=["smoke", "laptop", "paper"])
    ap.add_argument("--no-catalog", action="store_true", help="store the measurement, leave catalog.yml alone")
    ap.add_argument("--threads", type=int, help="torch threads (default: every usable core)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    mirror = ROOT.parent / "shared" / "data"
    if not os.environ.get("WORKBENCH_DATA_DIR") and mirror.is_dir():  # as .ci/run does: the data beside the checkout
        os.environ["WORKBENCH_DATA_DIR"] = str(mirror.resolve())
        print(f"data from {mirror.resolve()} (WORKBENCH_DATA_DIR)", flush=True)
    sources = [resolve(w) for w in args.notebook]
    for source in sources:
        out = time_notebook(source, args.mode, catalog=None if args.no_catalog else NB_DIR / "catalog.yml",
                            executed=ROOT / "build" / f"timed-{args.mode}" / source.name, threads=args.threads)
        print(f"{source.name}: {out['minutes']:.1f} min in {args.mode} mode ({out['units']:.0f} reference units; "
              f"load {out['load_before']} -> {out['load_after']}) on {out['measured_on']}", flush=True)
        for c in out["costliest_cells"]:
            print(f"    cell {c['cell']:>3}: {c['seconds']:>7.1f} s  {c['code']}")
        if args.mode == "laptop" and out["minutes"] > LAPTOP_LIMIT_MINUTES:
            print(f"  over the {LAPTOP_LIMIT_MINUTES:g}-minute laptop limit of shared/NOTEBOOKS.md: make its laptop "
                  f"mode cheaper (its laptop= values), keeping the claim check", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
