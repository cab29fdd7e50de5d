"""Does CI scale to 64 notebooks? Generate throw-away notebooks of the typical smoke cost, run the
CI pipeline on them and time it; or calibrate the smoke budget on the real notebooks.

    python tools/ci_scale.py                 # 60 generated notebooks: smoke tests + docs build, timed
    python tools/ci_scale.py --count 8       # a quick look
    python tools/ci_scale.py --calibrate     # the real notebooks alone (all cores) and as CI runs them

The pipeline is the real one, on a temporary folder: ``pytest tests/notebooks/test_notebooks.py -k
smoke_mode`` with ``WORKBENCH_NOTEBOOKS_DIR`` pointing at the generated notebooks (parallel kernels,
reference workload, budget check, executed copies), then ``docs/build.py`` on them (reusing those
copies, mkdocs --strict, every page opened in Chromium). Each generated notebook makes real ``wb``
calls: the standard setup, CIFAR-10 from the data mirror, a ResNet-8 trained with ``wb.fit`` for a
number of steps, a table, two plotly figures and an explorer (static without a widget frontend),
and a check that can fail. A fresh cache folder stands in for the fresh clone of CI.

The extrapolation to a full ``bash .ci/run`` adds, to the measured pipeline scaled to 64 notebooks,
the parts that do not grow with the number of notebooks; give them (seconds, measured on the same
machine) with ``--fixed install=... unit=... browser=...``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST_CELL = '''try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()'''

PARAMETERS = '''SEED = {seed}
STEPS = wb.by_mode(smoke={steps}, laptop=2000, paper=20000)
TRAIN_SUBSET = wb.by_mode(smoke=2048, laptop=None, paper=None)
TEST_SUBSET = wb.by_mode(smoke=500, laptop=None, paper=None)
MIN_TEST_ACC = wb.by_mode(smoke=0.12, laptop=0.5, paper=0.8)'''

CELLS = [
    ("markdown", "# Generated notebook {seed}\n\nA throw-away notebook of the typical smoke cost "
                 "(tools/ci_scale.py): real data, a short training run, plots, a check."),
    ("code", FIRST_CELL),
    ("parameters", PARAMETERS),
    ("code", 'train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=SEED)\n'
             'test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=SEED)\n'
             'wb.viz.image_grid(train.images[:16], train.labels[:16], train.classes, cols=8, title="CIFAR-10")'),
    ("code", 'model = wb.create_model("resnet8", num_classes=train.num_classes)\n'
             'result = wb.fit(model, train, test, epochs=2, max_steps=STEPS, batch_size=64, lr=0.05, seed=SEED,\n'
             '                progress=False)\n'
             'result.history'),
    ("code", "result.plot()"),
    ("code", 'import plotly.graph_objects as go\n\n'
             'def render(metric):\n'
             '    h = result.history\n'
             '    return go.Figure([go.Bar(x=h["epoch"], y=h[f"{split}_{metric}"], name=split) for split in ("train", "test")],\n'
             '                     layout=dict(title=f"{metric} by epoch"))\n\n'
             'wb.viz.explorer(render, metric=["loss", "acc"])'),
    ("code", 'assert result.test_acc >= MIN_TEST_ACC, f"test accuracy {result.test_acc:.3f} < {MIN_TEST_ACC}"'),
]


def generate(folder: Path, count: int, steps: int) -> list[str]:
    """``count`` notebooks and their catalog.yml in ``folder``."""
    import nbformat
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    names, entries = [], []
    for i in range(count):
        cells = []
        for kind, text in CELLS:
            text = text.format(seed=i, steps=steps) if kind in ("markdown", "parameters") else text
            if kind == "markdown":
                cells.append(nbformat.v4.new_markdown_cell(text))
            else:
                cell = nbformat.v4.new_code_cell(text)
                if kind == "parameters":
                    cell.metadata["tags"] = ["parameters"]
                cells.append(cell)
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        name = f"{i:02d}_generated_{i}.ipynb"
        nbformat.write(nb, folder / name)
        names.append(name)
        entries.append({"notebook": name, "paper": None, "title": f"Generated notebook {i}", "topic": "scale",
                        "status": "mechanism only", "claim": "a ResNet-8 trained for a few steps beats chance",
                        "datasets": ["cifar10"], "minutes": {"smoke": 1, "laptop": 1, "paper": 1},
                        "paper_mode_needs_gpu": False})
    (folder / "catalog.yml").write_text(yaml.safe_dump({"notebooks": entries}, sort_keys=False))
    return names


def load() -> str:
    """The machine's load while we run: 1-minute load average and how many cores."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "load unknown"
    return f"load average {one:.2f} on {os.cpu_count()} cores"


def run(cmd: list[str], env: dict, log: Path) -> tuple[float, int]:
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - t, rc


def scale(args) -> int:
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="wb-ci-scale-")).resolve()
    nb_dir, executed, cache = tmp / "notebooks", tmp / "executed", tmp / "cache"
    names = generate(nb_dir, args.count, args.steps)
    env = {**os.environ, "WORKBENCH_NOTEBOOKS_DIR": str(nb_dir), "WORKBENCH_EXECUTED_DIR": str(executed),
           "WORKBENCH_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "NO_MKDOCS_2_WARNING": "1"}
    if "WORKBENCH_DATA_DIR" not in env and (ROOT.parent / "shared" / "data").is_dir():
        env["WORKBENCH_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    print(f"{len(names)} notebooks generated in {nb_dir} ({args.steps} training steps each); {load()}", flush=True)
    print("1/2 smoke tests: pytest tests/notebooks/test_notebooks.py -k smoke_mode ...", flush=True)
    t_test, rc = run([sys.executable, "-m", "pytest", "tests/notebooks/test_notebooks.py", "-k", "smoke_mode",
                      "-p", "no:cacheprovider", "-q"], env, tmp / "pytest.log")
    log = (tmp / "pytest.log").read_text()
    print(f"    {t_test:.0f} s (exit {rc}); {load()}", flush=True)
    table = log[log.find("smoke runs: time in units"):]
    table = table[:table.find("short test summary")] if "short test summary" in table else table
    units = [float(u) for u in re.findall(r"\.ipynb\s+[\d.]+\s+[\d.]+ / [\d.]+\s+([\d.]+)", table)]
    secs = [float(s) for s in re.findall(r"\.ipynb\s+([\d.]+)\s+[\d.]+ / ", table)]
    if rc:
        print(log[-4000:])
        return rc
    print("2/2 docs build: docs/build.py --notebooks ... (reusing the executed copies)", flush=True)
    t_docs, rc = run([sys.executable, "docs/build.py", "--notebooks", str(nb_dir), "--executed", str(executed),
                      "--out", str(tmp / "_build")], env, tmp / "docs.log")
    docs_log = (tmp / "docs.log").read_text()
    print(f"    {t_docs:.0f} s (exit {rc}); {load()}", flush=True)
    if rc:
        print(docs_log[-4000:])
        return rc
    reused = re.search(r"reusing (\d+) of (\d+)", docs_log)
    parts = re.search(r"notebooks (\d+) s for (\d+) executed, mkdocs (\d+) s, plot check (\d+) s", docs_log)

    n, target = len(names), 64
    wall = re.search(r"(\d+) notebooks, (\d+) kernels at once x (\d+) torch threads, (\d+) s wall", log)
    print("\n== measured ==")
    if wall:
        print(f"smoke runs of {n} notebooks: {wall.group(4)} s wall ({wall.group(2)} kernels x {wall.group(3)} "
              f"threads); per notebook {sum(secs) / max(len(secs), 1):.1f} s, "
              f"{sum(units) / max(len(units), 1):.1f} reference units (min {min(units):.1f}, max {max(units):.1f})")
    print(f"pytest of the smoke tests: {t_test:.0f} s")
    if reused and parts:
        print(f"docs build: {t_docs:.0f} s (reused {reused.group(1)} of {reused.group(2)} executed copies, "
              f"executed {parts.group(2)}; mkdocs {parts.group(3)} s, plot check of every page {parts.group(4)} s)")
    pipeline = t_test + t_docs
    per_nb = pipeline / n
    print(f"pipeline: {pipeline:.0f} s for {n} notebooks = {per_nb:.1f} s per notebook")
    print("\n== extrapolated to a full bash .ci/run ==")
    grows = per_nb * target
    print(f"notebook-dependent part for {target} notebooks of this cost: {grows:.0f} s ({grows / 60:.1f} min)")
    fixed = dict(kv.split("=", 1) for kv in args.fixed)
    if fixed:
        total = grows + sum(float(v) for v in fixed.values())
        print("plus the parts that do not grow with the notebooks: " +
              ", ".join(f"{k} {float(v):.0f} s" for k, v in fixed.items()))
        print(f"full .ci/run: about {total:.0f} s = {total / 60:.1f} min (limit 30 min)")
    else:
        print("(give the fixed parts with --fixed install=SECONDS unit=SECONDS browser=SECONDS for a total)")
    print(f"\nlogs: {tmp}/pytest.log, {tmp}/docs.log")
    return 0


def calibrate(args) -> int:
    """The real notebooks alone (one kernel, every core as a torch thread) and as CI runs them."""
    sys.path.insert(0, str(ROOT))
    import importlib.util

    spec = importlib.util.spec_from_file_location("workbench_docs_build", ROOT / "docs" / "build.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "WORKBENCH_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
        os.environ["WORKBENCH_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="wb-calibrate-cache-"))
    import workbench as wb   # decode CIFAR-10 once, so that no run's time holds the decoding

    wb.load("cifar10", "train"), wb.load("cifar10", "test")
    sources = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.only:
        sources = [s for s in sources if s.name in args.only]
    cores = runner.usable_cores()
    ci_workers, ci_threads = runner.plan(len(sources))
    configs = {"alone": (1, cores), "ci": (ci_workers, ci_threads)}
    out = {}
    for label, (w, t) in configs.items():
        print(f"{label}: {w} kernel(s) at once x {t} threads; {load()}", flush=True)
        start = time.perf_counter()
        res = runner.execute_all(sources, None, workers=w, threads=t,
                                 on_done=lambda n, r, i, k: print(f"  {n}: {r if isinstance(r, BaseException) else r['seconds']}", flush=True))
        out[label] = {"wall": round(time.perf_counter() - start, 1), "load_after": load(),
                      "runs": {n: (None if isinstance(r, BaseException) else r) for n, r in res.items()}}
    print(f"\n{'notebook':<36} {'alone s':>8} {'ref':>6} {'units':>6}   {'ci s':>6} {'ref':>6} {'units':>6}")
    for s in sources:
        a, c = out["alone"]["runs"].get(s.name), out["ci"]["runs"].get(s.name)
        if not a or not c:
            print(f"{s.name:<36} failed")
            continue
        ra, rc = (sum(x["reference_seconds"]) / len(x["reference_seconds"]) for x in (a, c))
        print(f"{s.name:<36} {a['seconds']:>8.1f} {ra:>6.2f} {a['units']:>6.1f}   {c['seconds']:>6.1f} {rc:>6.2f} "
              f"{c['units']:>6.1f}")
    print(json.dumps({k: {"wall": v["wall"], "load_after": v["load_after"]} for k, v in out.items()}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=60, help="how many notebooks to generate (default 60)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per generated notebook (the typical cost)")
    ap.add_argument("--keep", help="generate into this folder and keep it (default: a temporary folder)")
    ap.add_argument("--fixed", nargs="*", default=[], metavar="PART=SECONDS",
                    help="parts of .ci/run that do not grow with the notebooks, for the total")
    ap.add_argument("--calibrate", action="store_true", help="time the real notebooks alone and as CI runs them")
    ap.add_argument("--only", nargs="*", help="with --calibrate: just these notebooks")
    args = ap.parse_args()
    return calibrate(args) if args.calibrate else scale(args)


if __name__ == "__main__":
    sys.exit(main())
