"""The live test: the notebooks of ``LIVE`` run in a real JupyterLab driven by headless Chromium
(smoke mode): no error output, every widget and every plot rendered, one control of every explorer
moved and its figure redrawn in place, a live training plot filled in while the model trained.
Screenshots go to a temporary folder.

``LIVE`` is an explicit list, not a glob: the core notebooks (catalog topic ``core``) and at least
one notebook of every widget kind in use. The kinds are found by scanning every notebook's code
(``widget_kinds``): each ``<module>.explorer(...)`` is a kind of its own (``viz.explorer``,
``landscape.explorer``, the next paper group's), ``live=True`` or ``LivePlot(`` is the live
training plot, and direct widget code (ipywidgets, FigureWidget, interact) must be named first.
A listed notebook that does not exist, a core notebook not listed, or a kind in use that no listed
notebook covers fails ``test_live_list_covers_the_core_notebooks_and_every_widget_kind`` (which
needs no browser). Every other notebook's executed page is opened in Chromium by the docs build
(``docs/build.py``'s ``check_plots``: every plot drawn), from the copies the smoke test executed.
No time is checked here: the smoke tests budget time in units of a reference workload.

Needs Debian's Chromium (``apt-get install chromium``) and the ``playwright`` package; both
come with ``.ci/run``. ``playwright install`` is not needed: Chromium is launched from
``/usr/bin/chromium``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
# The notebooks run live in JupyterLab (Run All, controls moved), each listed for a reason; a notebook
# with a new widget kind needs one notebook of that kind here. The list keeps the live test's cost fixed
# as notebooks are added.
LIVE = [
    "00_tour.ipynb",                      # the tour: live training plot (live=True), viz.explorer
    "01_training_batchnorm_only.ipynb",   # core
    "02_training_the_untrainable.ipynb",  # core
    "03_relabel_imagenet.ipynb",          # core
    "04_reassessing_imagenet.ipynb",      # core
    "05_vit_vs_resnet_sharpness.ipynb",   # core: landscape.explorer
]

# widget kinds, recognised in a notebook's code cells
_EXPLORER = re.compile(r"(?:\b(\w+)\.|(?<![\w.]))explorer\(")          # wb.viz.explorer(, wb.landscape.explorer(, explorer(
_LIVE_PLOT = re.compile(r"\blive\s*=\s*True\b|\bLivePlot\(")
_OTHER = re.compile(r"\bipywidgets\b|\bFigureWidget\(|\binteract(?:ive)?\(|\banywidget\b")


def widget_kinds(code: str) -> set[str]:
    """The widget kinds a notebook's code uses, e.g. {"viz.explorer", "live training plot"}."""
    kinds = {f"{m.group(1) or 'viz'}.explorer" for m in _EXPLORER.finditer(code)}
    if _LIVE_PLOT.search(code):
        kinds.add("live training plot")
    if _OTHER.search(code):
        kinds.add("other widgets")
    return kinds


def notebook_code(name: str) -> str:
    nb = json.loads((NB_DIR / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]

def test_live_list_covers_the_core_notebooks_and_every_widget_kind():
    from workbench.catalog import load_catalog

    here = Path(__file__).name
    missing = [n for n in LIVE if n not in NOTEBOOKS]
    assert not missing, f"LIVE names notebooks that do not exist: {missing}; edit LIVE in {here}"
    core = {e["notebook"] for e in load_catalog(NB_DIR / "catalog.yml") if e["topic"] == "core"}
    assert core <= set(LIVE), f"core notebooks not in LIVE: {sorted(core - set(LIVE))}; add them to LIVE in {here}"
    users: dict[str, list[str]] = {}
    for name in NOTEBOOKS:
        for kind in widget_kinds(notebook_code(name)):
            users.setdefault(kind, []).append(name)
    assert "other widgets" not in users, (
        f"{', '.join(users['other widgets'])} use widgets directly (ipywidgets, FigureWidget, interact): go through "
        f"wb.viz.explorer, or name the new kind in widget_kinds() and give it a check in the live test ({here})")
    covered = set().union(*(widget_kinds(notebook_code(n)) for n in LIVE))
    uncovered = {k: v for k, v in users.items() if k not in covered}
    assert not uncovered, "widget kinds no notebook of LIVE uses: " + "; ".join(
        f"{k} (used by {', '.join(v)})" for k, v in sorted(uncovered.items())) + f"; add one of each to LIVE in {here}"


@pytest.mark.parametrize("code, kinds", [
    ("wb.viz.explorer(render, depth=[14, 32])", {"viz.explorer"}),
    ("from workbench.viz import explorer\nexplorer(render, k=[1, 2])", {"viz.explorer"}),
    ("wb.landscape.explorer(lands)", {"landscape.explorer"}),
    ("wb.quant.explorer(runs)", {"quant.explorer"}),
    ("result = wb.train.train_model(m, train, test, live=True)", {"live training plot"}),
    ("import ipywidgets as W\nW.IntSlider()", {"other widgets"}),
    ("wb.fit(m, train, live=False)\nn_explorers = 2\nmy_explorer(x)", set()),
])
def test_widget_kinds_are_recognised(code, kinds):
    assert widget_kinds(code) == kinds


playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser tests)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium", allow_module_level=True)



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a token, over a copy of the notebooks of LIVE; stopped afterwards."""
    root = tmp_path_factory.mktemp("lab")
    for name in LIVE:
        if (NB_DIR / name).is_file():
            shutil.copy(NB_DIR / name, root / name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "WORKBENCH_MODE": "smoke", "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(root / 'lab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("JupyterLab did not answer within 2 minutes")
        yield {"base": base, "token": token, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


STATE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext || !w.sessionContext.session) return null;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  let pending = 0, errors = [], widgets = 0, plots = 0;
  for (const c of cells) {
    if (c.model.executionCount === null || c.promptNode?.textContent.includes('*')) pending++;
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
      const data = o.data || {};
      if ('application/vnd.jupyter.widget-view+json' in data) widgets++;
      if ('application/vnd.plotly.v1+json' in data) plots++;
    }
  }
  const k = w.sessionContext.session.kernel;
  return {pending, errors, widgets, plots, cells: cells.length, status: k ? k.status : 'none'};
}"""

EXPLORERS_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output .widget-vbox'))
  .filter(v => v.querySelector('.js-plotly-plot') && v.querySelector('select, .widget-slider'))
  .map((v, i) => { v.setAttribute('data-wb-explorer', String(i)); return i; })"""

LIVE_PLOT_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot'))
  .filter(gd => !gd.closest('[data-wb-explorer]'))
  .map(gd => (gd.data || []).reduce((n, t) => n + ((t.x && t.x.length) || 0), 0))"""

FIGURE_JS = """(i) => {
  const gd = document.querySelector(`[data-wb-explorer="${i}"] .js-plotly-plot`);
  return JSON.stringify([(gd.data || []).map(t => [t.x, t.y, t.z, t.type]), (gd.layout || {}).title]);
}"""


def _run_all(page, timeout: float = 900.0) -> dict:
    """Run All and wait until every cell ran; ``timeout`` only guards against a hang."""
    page.wait_for_function("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                           " return w && w.sessionContext && w.sessionContext.session &&"
                           " w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }",
                           timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    t, state = time.time(), None
    while time.time() - t < timeout:
        time.sleep(1.0)
        state = page.evaluate(STATE_JS)
        if state and state["errors"]:
            return state
        if state and state["pending"] == 0 and state["status"] == "idle":
            return state
    raise AssertionError(f"the notebook did not finish within {timeout:.0f} s (a hang, or a machine many times "
                         f"slower than usual): {state}")


@pytest.mark.browser
@pytest.mark.timeout(1800)   # a hang guard only
@pytest.mark.parametrize("name", LIVE)
def test_notebook_runs_renders_and_responds(name, lab, browser, tmp_path):
    if name not in NOTEBOOKS:
        pytest.fail(f"{name} is in LIVE but not in notebooks/: edit LIVE in {Path(__file__).name}", pytrace=False)
    kinds = widget_kinds(notebook_code(name))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        # a workspace of its own, reset: JupyterLab would otherwise reopen the earlier notebooks too
        workspace = Path(name).stem.replace("_", "-")
        page.goto(f"{lab['base']}/lab/workspaces/{workspace}/tree/{name}?token={lab['token']}&reset",
                  timeout=120_000)
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        state = _run_all(page)  # its time is not checked: the smoke tests budget it in reference units
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        assert not state["errors"], f"{name}: error output: {state['errors']}"

        # every widget output rendered (no placeholder or error text), every plot drawn
        page.wait_for_timeout(1500)
        widget_roots = page.locator(".jp-OutputArea-output .jupyter-widgets").count()
        assert widget_roots >= state["widgets"] > 0, f"{name}: {state['widgets']} widget outputs, {widget_roots} shown"
        body = page.inner_text(".jp-Notebook")
        assert "Error displaying widget" not in body and "Loading widget..." not in body, name
        drawn = page.locator(".js-plotly-plot .main-svg").count()
        assert drawn >= state["plots"], f"{name}: {state['plots']} plotly outputs but {drawn} drawn"

        # move one control of every explorer and see its figure change in place
        explorers = page.evaluate(EXPLORERS_JS)
        n_kinds = sum(k.endswith(".explorer") for k in kinds)
        assert len(explorers) >= n_kinds, \
            f"{name}: its code uses {sorted(kinds)} but {len(explorers)} explorers (controls above a figure) rendered"

        # the live training plot: a figure widget outside the explorers that got points while the model trained
        if "live training plot" in kinds:
            points = page.evaluate(LIVE_PLOT_JS)
            assert points and max(points) > 0, f"{name}: the live training plot shows no points ({points})"
        for i in explorers:
            box = page.locator(f'[data-wb-explorer="{i}"]')
            before = page.evaluate(FIGURE_JS, i)
            selects = box.locator("select")
            moved = False
            for j in range(selects.count()):
                options = selects.nth(j).locator("option")
                if options.count() > 1:
                    selects.nth(j).select_option(index=1)
                    moved = True
                    break
            if not moved:
                handle = box.locator(".widget-slider .noUi-handle").first
                handle.focus()
                page.keyboard.press("ArrowRight")
            page.wait_for_function(f"(b) => ({FIGURE_JS})({i}) !== b", arg=before, timeout=60_000)
        page.screenshot(path=str(tmp_path / f"{name}-after.png"), full_page=True)
    finally:
        page.close()
        _shutdown_kernels(lab)


def _shutdown_kernels(lab) -> None:
    """Stop every kernel the test started, so the next notebook has the machine to itself."""
    url = f"{lab['base']}/api/sessions?token={lab['token']}"
    with urllib.request.urlopen(url, timeout=10) as r:
        sessions = json.loads(r.read())
    for sess in sessions:
        req = urllib.request.Request(f"{lab['base']}/api/sessions/{sess['id']}?token={lab['token']}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
