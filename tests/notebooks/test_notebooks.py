"""Every notebook runs in smoke mode, and the catalog matches the notebooks."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
PAPERS = ROOT.parent / "shared" / "papers.md"


def catalog() -> list[dict]:
    from workbench.catalog import load_catalog

    return load_catalog(NB_DIR / "catalog.yml")


def test_catalog_and_notebooks_match():
    entries = [e["notebook"] for e in catalog()]
    assert len(entries) == len(set(entries)), "duplicate catalog entries"
    assert sorted(entries) == NOTEBOOKS, "every notebook needs a catalog entry and every entry a notebook"
    for e in catalog():
        assert set(e) >= {"notebook", "paper", "title", "claim", "datasets", "minutes", "paper_mode_needs_gpu"}, e
        assert set(e["minutes"]) == {"smoke", "laptop", "paper"}
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", e["notebook"])


@pytest.mark.skipif(not PAPERS.is_file(), reason="shared/papers.md not beside the checkout")
def test_catalog_titles_match_papers_md():
    titles = dict(re.findall(r"^## (\d+)\. (.+)$", PAPERS.read_text(), flags=re.M))
    for e in catalog():
        if e["paper"] is not None:
            assert e["title"] == titles[str(e["paper"])], e["notebook"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_and_in_sync_with_source(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs for c in code), "commit notebooks without outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1, "exactly one 'parameters' cell"
    assert not any(".cuda()" in c.source for c in code), "use wb.device(), not .cuda()"
    src = NB_DIR / "src" / name.replace(".ipynb", ".py")
    if src.is_file():
        from tools.make_notebook import parse
        assert [c.source for c in parse(src.read_text())] == [c.source for c in nb.cells], \
            f"regenerate with: python tools/make_notebook.py {src.relative_to(ROOT)} notebooks/{name}"


@pytest.mark.notebooks
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NB_DIR / name, as_version=4)
    env_before = dict(os.environ)
    os.environ["WORKBENCH_MODE"] = "smoke"
    try:
        client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}})
        t = time.perf_counter()
        client.execute()
        elapsed = time.perf_counter() - t
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert elapsed < 120, f"{name} took {elapsed:.0f} s in smoke mode; the budget is 2 minutes"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cell_without_the_package_says_what_to_install(name):
    import subprocess
    import sys

    nb = nbformat.read(NB_DIR / name, as_version=4)
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    code = "import sys\nsys.modules['workbench'] = None  # as if not installed\n" + first
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=NB_DIR)
    assert r.returncode != 0
    assert "bash scripts/workbench.sh lab" in r.stderr and "'workbench' is not installed" in r.stderr, r.stderr[-800:]
