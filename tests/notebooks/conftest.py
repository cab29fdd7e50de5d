"""The smoke runs of the notebooks: all executed once per session, in parallel kernels, by the
runner of docs/build.py (which the docs build then reuses), and a table of their cost at the end.

Without pytest-xdist the first smoke test starts every selected notebook at once on a pool of
kernels (as many as the cores allow, their torch threads set so that kernels x threads <= cores)
and each test then reports its own notebook. Under pytest-xdist (``-n N``) each worker executes
the notebooks it is given one at a time, with cores // N threads.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TEST = "test_notebook_runs_in_smoke_mode"


def _load_runner():
    name = "workbench_docs_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


runner = _load_runner()
_session: dict = {}   # what the pool did, for the summary (this process only)


@pytest.fixture(scope="session")
def smoke_runs(request):
    """``smoke_runs(path)`` -> the notebook's smoke-run stamp, or the exception it failed with."""
    results: dict[str, object] = {}
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:   # progress, live on the terminal (past pytest's output capture)
        if tr is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                tr.write_line(line)
        else:
            tr.write_line(line)

    def done(name, r, i, n):
        if isinstance(r, BaseException):
            say(f"[smoke {i}/{n}] {name}: FAILED ({type(r).__name__})")
        else:
            say(f"[smoke {i}/{n}] {name}: {r['seconds']:.1f} s = {r['units']:.1f} reference units")

    worker_count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")

    def get(path: Path):
        path = Path(path)
        key = str(path)
        if key in results:
            return results[key]
        if worker_count:   # an xdist worker: this notebook only, the cores shared among the workers
            if not results:
                runner.warm_datasets([path])
            threads = max(1, runner.usable_cores() // int(worker_count))
            results.update({str(path): r for r in runner.execute_all(
                [path], runner.EXECUTED, workers=1, threads=threads, on_done=done).values()})
            return results[key]
        # every selected smoke test's notebook, at once on the pool
        paths = []
        for item in request.session.items:
            if getattr(item, "originalname", None) == SMOKE_TEST and hasattr(item, "callspec"):
                p = Path(item.module.NB_DIR) / item.callspec.params["name"]
                if str(p) not in results and p not in paths:
                    paths.append(p)
        if path not in paths:
            paths.append(path)
        workers, threads = runner.plan(len(paths))
        t = time.perf_counter()
        warmed = runner.warm_datasets(paths)
        say(f"\nexecuting {len(paths)} notebooks in smoke mode: {workers} kernels at once, {threads} torch "
            f"thread{'s' if threads > 1 else ''} each, executed copies in {runner.EXECUTED} (datasets decoded "
            f"beforehand in {time.perf_counter() - t:.0f} s: {', '.join(warmed) or 'none'})")
        t = time.perf_counter()
        out = runner.execute_all(paths, runner.EXECUTED, workers=workers, threads=threads, on_done=done)
        by_name = {p.name: p for p in paths}
        results.update({str(by_name[n]): r for n, r in out.items()})
        _session.update(wall=time.perf_counter() - t, n=len(paths), workers=workers, threads=threads)
        return results[key]

    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The table of every smoke run: its time, the reference workload's and the ratio (units)."""
    rows = []
    for key in ("passed", "failed"):
        for rep in terminalreporter.stats.get(key, []):
            if getattr(rep, "when", None) != "call":
                continue
            for k, v in getattr(rep, "user_properties", []):
                if k == "smoke_run":
                    rows.append((v["notebook"], v))
    if not rows:
        return
    tr = terminalreporter
    tr.section("smoke runs: time in units of the reference workload")
    if _session:
        tr.write_line(f"{_session['n']} notebooks, {_session['workers']} kernels at once x {_session['threads']} "
                      f"torch threads, {_session['wall']:.0f} s wall; executed copies in {runner.EXECUTED}")
    budget = rows[0][1]["budget_units"]
    tr.write_line(f"unit: {runner.REFERENCE_STEPS} ResNet-20 training steps (batch 32, 3x32x32), timed in the "
                  f"notebook's own kernel before and after it; budget {budget:g} units (about 30 s on 2 idle cores)")
    width = max(len(n) for n, _ in rows)
    tr.write_line(f"{'notebook':<{width}}  {'seconds':>8}  {'reference s':>13}  {'units':>6}  verdict")
    for name, v in sorted(rows, key=lambda r: -(r[1]["units"] or 0)):
        refs = " / ".join(f"{x:.2f}" for x in v["reference_seconds"])
        verdict = "over budget" if v["units"] > v["budget_units"] else "ok"
        if len(v["reference_seconds"]) == 2 and max(v["reference_seconds"]) > 1.5 * min(v["reference_seconds"]):
            verdict += " (the load changed during the run)"
        tr.write_line(f"{name:<{width}}  {v['seconds']:>8.1f}  {refs:>13}  {v['units']:>6.1f}  {verdict}")
