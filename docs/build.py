"""Build the course site from the notebooks executed in smoke mode: write the syllabus from
notebooks/catalog.yml, run ``mkdocs build --strict`` (a warning, such as a broken link or a missing
page, fails the build), then open every page in headless Chromium and check that each plot is drawn.

Each notebook is executed once per CI run. The smoke test (tests/notebooks) executes them all in
parallel and leaves the executed copies in ``build/executed/``, each stamped with a digest of its
source and of the ``workbench`` package; this build reuses every copy whose digest still matches
and executes only what is missing or changed, saying which and why.

    python docs/build.py                 # -> docs/_build/site/index.html
    python docs/build.py --fresh         # execute every notebook again
    python docs/build.py --only 00_tour.ipynb

This file also holds the notebook runner the smoke test uses (``execute_all``): smoke mode, a
kernel per notebook, as many kernels at once as the cores allow with their torch threads set so
that kernels x threads <= cores, and a reference workload timed in each kernel before and after
its notebook, so that a notebook's cost can be stated in units of that workload.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "_build"
SRC = BUILD / "src"
NOTEBOOKS = ROOT / "notebooks"
# where the smoke test leaves the executed notebooks (WORKBENCH_EXECUTED_DIR moves it)
EXECUTED = Path(os.environ.get("WORKBENCH_EXECUTED_DIR") or ROOT / "build" / "executed")
CELL_TIMEOUT = 900        # s per cell: only a hang guard (a smoke cell takes seconds); budgets are in reference units
NOTEBOOK_TIMEOUT = 3600   # s per notebook: the same, for a notebook as a whole
sys.path.insert(0, str(ROOT))


def syllabus(entries: list[dict], papers: dict[str, str], only: list[str] | None = None) -> str:
    """The syllabus page: the notebooks grouped by the catalog's ``topic`` (in catalog order), each with its
    claim, whether the notebook shows it (``status``) and minutes per mode; then the papers not yet covered."""
    lines = ["# Syllabus", "",
             "Every paper with its notebook, grouped by topic: the claim the notebook checks, its status "
             "(*claim shown*, or *mechanism only* where the claim needs a scale a laptop cannot reach and the "
             "notebook checks the mechanism instead), and the minutes it takes per mode (smoke and laptop on "
             "2 CPU cores, paper on one GPU). Generated from `notebooks/catalog.yml`.", ""]
    topics: dict[str, list[dict]] = {}
    for e in entries:
        topics.setdefault(e["topic"], []).append(e)
    for topic, group in topics.items():
        lines += [f"## {topic} ({len(group)} notebook{'s' if len(group) > 1 else ''})", "",
                  "| # | paper | notebook | claim | status | smoke | laptop | paper |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for e in group:
            num = e["paper"] if e["paper"] is not None else "-"
            link = (f"[{e['notebook']}](notebooks/{e['notebook']})" if not only or e["notebook"] in only
                    else f"`{e['notebook']}`")
            arxiv = f" ([arXiv {e['arxiv']}](https://arxiv.org/abs/{e['arxiv']}))" if e.get("arxiv") else ""
            m = e["minutes"]
            gpu = " (GPU)" if e.get("paper_mode_needs_gpu") else ""
            claim = e["claim"].replace("|", "\\|")
            lines.append(f"| {num} | {e['title']}{arxiv} | {link} | {claim} | {e['status']} | {m['smoke']} | "
                         f"{m['laptop']} | {m['paper']}{gpu} |")
        lines.append("")
    listed = {str(e["paper"]) for e in entries if e["paper"] is not None}
    todo = [f"{n}. {t}" for n, t in papers.items() if n not in listed]
    if todo:
        lines += [f"## Not yet in the workbench ({len(todo)} of {len(papers)} papers)", ""]
        lines += [f"- {t}" for t in todo]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# The notebook runner (used by tests/notebooks and by this build)

# The reference workload, run in the notebook's own kernel right before and right after the
# notebook, with the notebook's torch threads: 5 training steps of a ResNet-20 (SGD, batch 32,
# CIFAR-10-sized input: 3x32x32, 10 classes) after one warm-up step. Measured in the same process,
# at the same moment and with the same neighbours as the notebook, it slows down as the notebook
# does when the machine is busy, so the notebook's time divided by it (its "units") is what a
# budget can be checked on. Global RNG state and the thread count are restored afterwards.
REFERENCE_STEPS = 5
REFERENCE_CODE = f"""
def __wb_reference_workload():
    import os, time, torch
    from workbench.models import create_model
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS") or threads))
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
            model = create_model("resnet20", num_classes=10)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            def step():
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            step()
            t = time.perf_counter()
            for _ in range({REFERENCE_STEPS}):
                step()
            return time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)
print("__wb_reference_seconds__", __wb_reference_workload())
del __wb_reference_workload
"""

# Plotly's notebook renderer (the one a headless kernel uses, so that the site can draw the figures)
# inlines all of plotly.js, about 5 MB, in the first figure's output of every notebook. Kept inline it
# would be stored four times per notebook (the executed copy, the site's source, its page and its
# download): 1.4 GB for 64 notebooks, enough to fill a small CI disk. :func:`slim_plotly` moves it into
# one shared file that every page loads (the renderer's own wrapper included, so that it defines
# ``window.Plotly`` whatever module loader the page has).
PLOTLY_BUNDLE = re.compile(r"<script>(/\*\*\s*\n\* plotly\.js v.*?)</script>", re.S)
ASSETS = "assets"                    # beside the executed notebooks, and at the root of the site
ASSET_URL = "../../" + ASSETS + "/"  # from a notebook's page, site/notebooks/<name>/index.html


def slim_plotly(nb, assets: Path) -> int:
    """Replace every inlined copy of plotly.js in ``nb``'s outputs (a notebook as nbformat or json
    reads it, changed in place) by a ``<script src>`` of one file under ``assets`` named by its digest,
    written there once (atomically). Returns the number of characters taken out of the notebook."""
    moved = 0

    def swap(m: re.Match) -> str:
        nonlocal moved
        code = m.group(1)
        name = f"plotly-{hashlib.sha256(code.encode()).hexdigest()[:16]}.js"
        target = Path(assets) / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(code)
            os.replace(tmp, target)
        moved += len(m.group(0))
        return f'<script src="{ASSET_URL}{name}"></script>'

    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = data.get("text/html")
            if html is None:
                continue
            text = "".join(html) if isinstance(html, list) else html
            if "plotly.js v" in text:
                data["text/html"] = PLOTLY_BUNDLE.sub(swap, text)
    return moved


_package_digest: str | None = None


def package_digest() -> str:
    """A digest of the ``workbench`` package's Python files: an executed notebook is current only
    for the package it ran with."""
    global _package_digest
    if _package_digest is None:
        h = hashlib.sha256()
        for p in sorted((ROOT / "workbench").rglob("*.py")):
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
        _package_digest = h.hexdigest()
    return _package_digest


def notebook_digest(path: Path) -> str:
    """A digest of what a smoke run depends on: the notebook's cells (type and source), the package, the mode."""
    cells = [[c.get("cell_type"), "".join(c.get("source", ""))] for c in json.loads(Path(path).read_text())["cells"]]
    return hashlib.sha256(json.dumps([cells, package_digest(), "smoke"]).encode()).hexdigest()[:32]


def smoke_record(executed: Path) -> dict | None:
    """The stamp a smoke run left in an executed notebook (None when there is none)."""
    try:
        return json.loads(Path(executed).read_text())["metadata"]["workbench"]["smoke_run"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_current(executed: Path, source: Path) -> bool:
    rec = smoke_record(executed)
    return rec is not None and rec.get("digest") == notebook_digest(source)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan(n_notebooks: int, workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """How many kernels run at once and how many torch threads each gets, so that kernels x threads
    <= cores. One thread per kernel up to 8 cores (a smoke notebook spends much of its time in
    Python, where a second thread does not help and a second kernel does), two above; at most one
    kernel per 2 GiB of available memory. ``WORKBENCH_NOTEBOOK_WORKERS`` and ``WORKBENCH_THREADS``
    override the choice."""
    cores = usable_cores()

    def env_int(name: str) -> int | None:
        v = os.environ.get(name, "").strip()
        if not v:
            return None
        if not v.isdigit() or int(v) < 1:
            raise SystemExit(f"{name}={v!r} must be a positive integer (or unset it)")
        return int(v)

    threads = threads or env_int("WORKBENCH_THREADS") or (1 if cores <= 8 else 2)
    workers = workers or env_int("WORKBENCH_NOTEBOOK_WORKERS")
    if workers is None:
        workers = max(1, cores // threads)
        try:
            avail = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemAvailable:"))
            workers = max(1, min(workers, avail // (2 * 1024 * 1024)))
        except (OSError, StopIteration, ValueError):
            pass
    return max(1, min(workers, max(n_notebooks, 1))), threads


def warm_datasets(sources: list[Path]) -> list[str]:
    """Decode the datasets the catalog lists for these notebooks into the shared cache, once, before
    the kernels start: decoding is a one-time cost of a machine, not of a notebook, and would otherwise
    land in the time of whichever notebooks come first (about 10 reference units for CIFAR-10).
    Returns the datasets warmed; one that cannot be loaded is left for its notebook to report."""
    from workbench.catalog import load_catalog
    from workbench.data import list_datasets, load

    wanted: list[str] = []
    for folder in sorted({Path(s).parent for s in sources}):
        try:
            entries = load_catalog(folder / "catalog.yml")
        except ValueError:
            continue
        names = {Path(s).name for s in sources}
        for e in entries:
            if e["notebook"] in names:
                wanted += [d for d in e["datasets"] if d in list_datasets() and d not in wanted]
    warmed = []
    for name in wanted:
        try:
            load(name, "train"), load(name, "test")
            warmed.append(name)
        except Exception:  # noqa: BLE001 (the notebook that needs it says what is missing)
            pass
    return warmed


def _private_cache(share_data: bool = True) -> Path:
    """A cache folder of its own for one run, so that its time is that of a run from an empty
    results cache (a notebook run earlier in the session, by the browser test say, must not make it
    look cheap); with ``share_data`` the decoded datasets (``data/``) are shared with the session's
    cache, without it the run decodes them too (a first run on a new machine)."""
    import tempfile

    from workbench import config

    private = Path(tempfile.mkdtemp(prefix="wb-run-cache-"))
    if not share_data:
        return private
    shared = config.cache_dir() / "data"
    shared.mkdir(parents=True, exist_ok=True)
    try:
        (private / "data").symlink_to(shared, target_is_directory=True)
    except OSError:   # no symlinks here: the run decodes its datasets itself
        pass
    return private


async def _reference(client) -> float:
    import nbformat

    # nbclient stores an executed cell at its index in the notebook: give the reference a place at the
    # end for the time it runs, then take it out again (the executed copy never shows it)
    cell = nbformat.v4.new_code_cell(REFERENCE_CODE)
    client.nb.cells.append(cell)
    try:
        await client.async_execute_cell(cell, len(client.nb.cells) - 1, store_history=False)
    finally:
        client.nb.cells.pop()
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    m = re.search(r"__wb_reference_seconds__ ([0-9.eE+-]+)", text)
    if not m:
        raise RuntimeError(f"the reference workload printed no time: {cell.outputs}")
    return float(m.group(1))


async def execute_notebook(source: Path, out: Path | None, *, threads: int, workers: int = 1,
                           timeout: int = CELL_TIMEOUT, reference: bool = True, mode: str = "smoke",
                           share_data: bool = True) -> dict:
    """Execute one notebook in ``mode`` (smoke unless told) in a fresh kernel with ``threads`` torch
    threads and an empty results cache, the reference workload timed in the same kernel before and
    after it; write the executed copy to ``out`` (atomically, stamped with the digest and the times
    under ``metadata.workbench.<mode>_run``). Returns the stamp, with each code cell's seconds. A
    cell's error raises nbclient's CellExecutionError (its message holds the cell and the traceback)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.util import ensure_async

    source = Path(source)
    digest = notebook_digest(source)
    nb = nbformat.read(source, as_version=4)
    t = str(threads)
    cache = _private_cache(share_data)
    env = {**os.environ, "WORKBENCH_MODE": mode, "WORKBENCH_THREADS": t, "OMP_NUM_THREADS": t,
           "MKL_NUM_THREADS": t, "WORKBENCH_CACHE_DIR": str(cache)}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    refs: list[float] = []
    started = time.perf_counter()
    try:
        async with client.async_setup_kernel(env=env):
            reply = await client.async_wait_for_reply(await ensure_async(client.kc.kernel_info()))
            nb.metadata["language_info"] = reply["content"]["language_info"]
            if reference:
                refs.append(await _reference(client))
            t0 = time.perf_counter()
            count, cells = 0, []
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and cell.source.strip():
                    count += 1
                c0 = time.perf_counter()
                await client.async_execute_cell(cell, index, execution_count=count)
                if cell.cell_type == "code" and cell.source.strip():
                    cells.append([index, round(time.perf_counter() - c0, 2)])
            seconds = time.perf_counter() - t0
            if reference:
                refs.append(await _reference(client))
            client.set_widgets_metadata()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    ref = sum(refs) / len(refs) if refs else None
    record = {"digest": digest, "mode": mode, "seconds": round(seconds, 2),
              "kernel_seconds": round(time.perf_counter() - started, 2),
              "reference_seconds": [round(r, 3) for r in refs],
              "units": round(seconds / ref, 2) if ref else None, "threads": threads, "kernels_at_once": workers,
              "cell_seconds": cells}
    nb.metadata.setdefault("workbench", {})[f"{mode}_run"] = record
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        slim_plotly(nb, out.parent / ASSETS)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, out)
    return record


def execute_all(sources: list[Path], outdir: Path | None, *, workers: int | None = None, threads: int | None = None,
                timeout: int = CELL_TIMEOUT, reference: bool = True,
                on_done: Callable[[str, dict | BaseException, int, int], None] | None = None
                ) -> dict[str, dict | BaseException]:
    """Execute notebooks in parallel kernels (see :func:`plan`); the longest first when an earlier
    run in ``outdir`` says how long they take. Returns, per notebook name, its stamp or the
    exception it failed with; a failed notebook leaves no executed copy."""
    sources = [Path(s) for s in sources]
    workers, threads = plan(len(sources), workers, threads)
    if outdir is not None:
        before = {s.name: (smoke_record(outdir / s.name) or {}).get("seconds", 0.0) for s in sources}
        sources = sorted(sources, key=lambda s: -before[s.name])

    async def run() -> dict[str, dict | BaseException]:
        gate, done, results = asyncio.Semaphore(workers), [0], {}

        async def one(src: Path) -> None:
            out = outdir / src.name if outdir is not None else None
            async with gate:
                try:
                    results[src.name] = await asyncio.wait_for(
                        execute_notebook(src, out, threads=threads, workers=workers, timeout=timeout,
                                         reference=reference), NOTEBOOK_TIMEOUT)
                except asyncio.TimeoutError:
                    results[src.name] = TimeoutError(f"{src.name} did not finish within {NOTEBOOK_TIMEOUT} s (a hang)")
                except Exception as e:  # noqa: BLE001 (reported per notebook by the caller)
                    results[src.name] = e
            if isinstance(results[src.name], BaseException) and out is not None and out.exists():
                out.unlink()
            done[0] += 1
            if on_done:
                on_done(src.name, results[src.name], done[0], len(sources))

        await asyncio.gather(*(one(s) for s in sources))
        return results

    return asyncio.run(run())


def describe_failure(name: str, err: BaseException) -> str:
    """One message per failed notebook: what failed and how to see it."""
    text = str(err).strip()
    if len(text) > 3000:
        text = text[:1500] + "\n...\n" + text[-1500:]
    return (f"{name} failed in smoke mode ({type(err).__name__}):\n{text}\n"
            f"-> run it yourself: WORKBENCH_MODE=smoke jupyter execute notebooks/{name} (or open it in JupyterLab)")


# ---------------------------------------------------------------------------------------------
# The site

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", action="store_true", help="execute every notebook again, even with a current executed copy")
    ap.add_argument("--only", nargs="*", help="build just these notebooks (a quick look; the syllabus still lists all)")
    ap.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell before a cell counts as hung")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="the folder of notebooks and their catalog.yml")
    ap.add_argument("--executed", type=Path, default=EXECUTED, help="where executed notebooks are kept and reused")
    ap.add_argument("--out", type=Path, default=BUILD, help="the build folder (the site goes to OUT/site)")
    args = ap.parse_args()
    from workbench.catalog import load_catalog

    nb_dir, executed, build = args.notebooks.resolve(), args.executed.resolve(), args.out.resolve()
    src = build / "src"
    entries = load_catalog(nb_dir / "catalog.yml")
    papers_md = ROOT.parent / "shared" / "papers.md"
    papers = dict(re.findall(r"^## (\d+)\. (.+)$", papers_md.read_text(), flags=re.M)) if papers_md.is_file() else {}
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "index.md", src / "index.md")
    (src / "syllabus.md").write_text(syllabus(entries, papers, args.only))
    built = [e for e in entries if not args.only or e["notebook"] in args.only]

    t0 = time.perf_counter()
    todo, why = [], {}
    for e in built:
        source, copy = nb_dir / e["notebook"], executed / e["notebook"]
        if not source.is_file():
            raise SystemExit(f"{source} is listed in {nb_dir / 'catalog.yml'} but does not exist")
        if args.fresh or not is_current(copy, source):
            todo.append(source)
            why[source.name] = ("--fresh" if args.fresh else "not executed by the test run" if not copy.exists()
                                else "changed since it was executed (notebook or package)")
    reused = len(built) - len(todo)
    print(f"reusing {reused} of {len(built)} notebooks executed in smoke mode in {executed}", flush=True)
    if todo:
        workers, threads = plan(len(todo))
        warmed = warm_datasets(todo)
        print(f"executing {len(todo)} in smoke mode ({workers} kernels at once, {threads} torch threads each; "
              f"datasets decoded beforehand: {', '.join(warmed) or 'none'}):", flush=True)
        for s in todo:
            print(f"  {s.name}: {why[s.name]}", flush=True)

        def done(name, r, i, n):
            if isinstance(r, BaseException):
                print(f"  [{i}/{n}] {name}: FAILED ({type(r).__name__})", flush=True)
            else:
                print(f"  [{i}/{n}] {name}: {r['seconds']:.0f} s, {r['units']:.1f} reference units", flush=True)

        results = execute_all(todo, executed, timeout=args.timeout, on_done=done)
        failed = {n: r for n, r in results.items() if isinstance(r, BaseException)}
        if failed:
            raise SystemExit("\n\n".join(describe_failure(n, r) for n, r in sorted(failed.items())))
    for e in built:  # copies of an older runner may still hold plotly.js inline: slim them too
        nb = json.loads((executed / e["notebook"]).read_text())
        slim_plotly(nb, src / ASSETS)
        (src / "notebooks" / e["notebook"]).write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    if (executed / ASSETS).is_dir():
        shutil.copytree(executed / ASSETS, src / ASSETS, dirs_exist_ok=True)
    t_exec = time.perf_counter() - t0

    config = {
        "site_name": "ResNet Paper Workbench",
        "docs_dir": "src", "site_dir": "site", "strict": True,
        "theme": {"name": "material", "font": False},
        "plugins": ["search", {"mkdocs-jupyter": {"execute": False, "include_source": True,
                                                  "ignore_h1_titles": False}}],
        "nav": [{"Home": "index.md"}, {"Syllabus": "syllabus.md"},
                {"Notebooks": [{e["title"] if len(e["title"]) < 60 else e["title"][:57] + "...":
                                f"notebooks/{e['notebook']}"} for e in built]}],
    }
    (build / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    t1 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(build / "mkdocs.yml")],
                       capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode:
        raise SystemExit(f"mkdocs build failed (exit {r.returncode}): a warning above means a broken page")
    t2 = time.perf_counter()
    check_plots(built, src, build / "site")
    t3 = time.perf_counter()
    print(f"site: {build / 'site' / 'index.html'} (notebooks {t_exec:.0f} s for {len(todo)} executed, "
          f"mkdocs {t2 - t1:.0f} s, plot check {t3 - t2:.0f} s)")


def _plots_in(executed_nb: Path) -> int:
    nb = json.loads(executed_nb.read_text())
    return sum("application/vnd.plotly.v1+json" in o.get("data", {})
               for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))


def check_plots(entries: list[dict], src: Path = SRC, site: Path = BUILD / "site", wait_s: float = 30.0) -> None:
    """Open every notebook page in headless Chromium: each plotly output must be drawn. A page
    gets up to ``wait_s`` seconds for its plots (a hang guard; a page normally draws in well under
    one); every page is checked before the build fails, and the failures are listed together."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed: the rendered plots were not checked")
        return
    chromium = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        print(f"no Chromium at {chromium}: the rendered plots were not checked")
        return
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-dev-shm-usage"]
    count_js = "() => document.querySelectorAll('.js-plotly-plot .main-svg').length ? " \
               "document.querySelectorAll('.js-plotly-plot').length : 0"
    bad = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags, headless=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            for e in entries:
                want = _plots_in(src / "notebooks" / e["notebook"])
                url = (site / "notebooks" / Path(e["notebook"]).stem / "index.html").resolve().as_uri()
                errors.clear()
                page.goto(url)
                try:
                    page.wait_for_function(f"(want) => ({count_js})() >= want", arg=want, timeout=wait_s * 1000)
                except Exception:  # noqa: BLE001 (playwright's TimeoutError: reported below with the count)
                    pass
                drawn = page.evaluate(count_js)
                print(f"{e['notebook']}: {drawn} of {want} plots drawn on the site", flush=True)
                if drawn < want:
                    bad.append(f"{e['notebook']}: only {drawn} of {want} plotly figures render on its page "
                               f"({url}){'; page errors: ' + '; '.join(errors[:3]) if errors else ''}")
        finally:
            browser.close()
    if bad:
        raise SystemExit("plots missing on the site:\n" + "\n".join(bad))


if __name__ == "__main__":
    main()
