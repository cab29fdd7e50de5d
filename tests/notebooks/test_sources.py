"""Notebook sources, the catalog and the scaffold: each notebook is paired with its jupytext source,
clean, has a parameters cell and a claim check; the catalog matches the notebooks and papers.md;
``tools/new_notebook.py`` writes a notebook that passes all of this and runs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import requires_cifar
from tools import new_notebook, notebook_sources as ns
from workbench.catalog import check_papers, load_catalog, parse_catalog

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
PAPERS = ROOT.parent / "shared" / "papers.md"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
# the first two notebook numbers not yet taken: the scaffold tests write there
FREE = [f"{i:02d}" for i in range(100) if not any(n.startswith(f"{i:02d}_") for n in NOTEBOOKS)][:2]
PAIRS = sorted({p.stem for p in NB_DIR.glob("*.ipynb")} | {p.stem for p in (NB_DIR / "src").glob("*.py")})


def catalog() -> list[dict]:
    return load_catalog(NB_DIR / "catalog.yml")


# --- the catalog ---------------------------------------------------------------------------------

def test_catalog_and_notebooks_match():
    entries = [e["notebook"] for e in catalog()]
    assert len(entries) == len(set(entries)), "duplicate catalog entries"
    assert sorted(entries) == NOTEBOOKS, "every notebook needs a catalog entry and every entry a notebook"
    for e in catalog():
        assert set(e) >= {"notebook", "paper", "title", "topic", "status", "claim", "datasets", "minutes",
                          "paper_mode_needs_gpu"}, e
        assert set(e["minutes"]) == {"smoke", "laptop", "paper"}
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", e["notebook"])


@pytest.mark.skipif(not PAPERS.is_file(), reason="shared/papers.md not beside the checkout")
def test_catalog_papers_and_titles_match_papers_md():
    check_papers(catalog(), PAPERS, "notebooks/catalog.yml")


def _entry(**change) -> dict:
    e = {"notebook": "06_x.ipynb", "paper": 55, "title": "T", "topic": "pruning", "status": "claim shown",
         "claim": "c", "datasets": ["cifar10"], "minutes": {"smoke": 1, "laptop": 2, "paper": 3},
         "paper_mode_needs_gpu": False}
    return {**e, **change}


def _yaml(*entries) -> str:
    import yaml

    return yaml.safe_dump({"notebooks": list(entries)})


@pytest.mark.parametrize("change, words", [
    ({"status": "shown"}, ["'status' must be 'claim shown' or 'mechanism only'", "'shown'"]),
    ({"topic": "Quantization"}, ["'topic' must be a short lowercase group name", "'Quantization'"]),
    ({"topic": "a much too long name for a topic"}, ["'topic'"]),
    ({"topic": None}, ["field 'topic' must be a str"]),
])
def test_catalog_topic_and_status_are_checked(change, words):
    with pytest.raises(ValueError) as err:
        parse_catalog(_yaml(_entry(**change)), "notebooks/catalog.yml")
    assert "notebooks/catalog.yml entry 0 (06_x.ipynb)" in str(err.value)
    for w in words:
        assert w in str(err.value)


@pytest.fixture
def papers_md(tmp_path) -> Path:
    """A papers.md numbered 1..64: the real catalog's titles under their numbers, one section with an arXiv id."""
    titles = {e["paper"]: e["title"] for e in catalog() if e["paper"] is not None}
    lines = ["# The papers", ""]
    for n in range(1, 65):
        lines += [f"## {n}. {titles.get(n, f'Paper number {n}')}", "",
                  "Its abstract (arXiv:2103.00001)." if n == 7 else "Its abstract.", ""]
    p = tmp_path / "papers.md"
    p.write_text("\n".join(lines))
    return p


def test_catalog_paper_not_in_papers_md_is_refused(papers_md):
    entries = parse_catalog(_yaml(_entry(paper=65)), "notebooks/catalog.yml")
    with pytest.raises(ValueError) as err:
        check_papers(entries, papers_md, "notebooks/catalog.yml")
    msg = str(err.value)
    assert "notebooks/catalog.yml entry 0 (06_x.ipynb): paper 65 is not in" in msg and "numbered 1..64" in msg
    assert "set 'paper'" in msg


def test_catalog_title_must_be_the_papers_title(papers_md):
    n, title = 12, next(e["title"] for e in catalog() if e["paper"] == 12)   # every paper has its notebook now
    entries = parse_catalog(_yaml(_entry(paper=n, title="Some other title")), "notebooks/catalog.yml")
    with pytest.raises(ValueError, match=f"'title' must be paper {n}'s title .*'{re.escape(title)}'"):
        check_papers(entries, papers_md, "notebooks/catalog.yml")
    check_papers(parse_catalog(_yaml(_entry(paper=n, title=title)), "c"), papers_md)  # passes


# --- each notebook and its source ------------------------------------------------------------------

@pytest.mark.parametrize("name", PAIRS)
def test_source_and_notebook_are_in_sync(name):
    problem = ns.pair_problem(NB_DIR / f"{name}.ipynb")
    assert problem is None, problem


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_with_parameters_and_claim_check(name):
    found = ns.problems(NB_DIR / name)
    assert not found, "\n".join(found)


@pytest.fixture
def nb_copy(tmp_path) -> Path:
    """A copy of notebooks/ (sources, notebooks, catalog, jupytext config) to change freely."""
    d = tmp_path / "notebooks"
    shutil.copytree(NB_DIR, d, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return d


def test_sync_of_the_committed_pairs_changes_nothing(nb_copy):
    before = {p: p.read_bytes() for p in nb_copy.rglob("*") if p.suffix in (".py", ".ipynb")}
    assert ns.sync([], nb_copy, quiet=True) == []
    assert {p: p.read_bytes() for p in before} == before


def test_notebooks_regenerated_from_their_sources_alone_are_the_committed_ones(nb_copy):
    for p in nb_copy.glob("*.ipynb"):
        p.unlink()
    ns.sync([], nb_copy, quiet=True)
    for name in NOTEBOOKS:
        assert (nb_copy / name).read_bytes() == (NB_DIR / name).read_bytes(), ns.sync_command(NB_DIR / name)


def test_an_edited_source_is_caught_and_sync_fixes_it(nb_copy):
    src, nb = nb_copy / "src" / "00_tour.py", nb_copy / "00_tour.ipynb"
    src.write_text(src.read_text().replace('MODEL = "resnet20"', 'MODEL = "resnet32"'))
    problem = ns.pair_problem(nb)
    assert problem and "from cell 2" in problem
    assert problem.endswith(f"sync them with bash scripts/workbench.sh sync {src}")
    os.utime(src, (nb.stat().st_mtime + 10,) * 2)  # the edit is the newer file
    assert ns.sync(["00_tour"], nb_copy, quiet=True) == [nb]
    assert ns.problems(nb) == []
    assert 'MODEL = "resnet32"' in nbformat.read(nb, as_version=4).cells[2].source


def test_a_changed_tag_is_caught(nb_copy):
    src = nb_copy / "src" / "00_tour.py"
    src.write_text(src.read_text().replace('# %% tags=["parameters"]', "# %%"))
    assert "differ (from cell 2" in ns.pair_problem(nb_copy / "00_tour.ipynb")


def test_outputs_and_metadata_are_caught_and_sync_removes_them(nb_copy):
    nb_path = nb_copy / "00_tour.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nb.cells[1].execution_count = 3
    nb.metadata["language_info"]["version"] = "3.11.2"
    nb.metadata["jupytext"] = {"formats": "ipynb,src//py:percent"}
    nbformat.write(nb, nb_path)
    assert "is not clean" in ns.clean_problem(nb_path)
    assert ns.pair_problem(nb_path) is None  # the inputs still match
    ns.sync([str(nb_path)], nb_copy, quiet=True)
    assert ns.problems(nb_path) == []
    assert nb_path.read_bytes() == (NB_DIR / "00_tour.ipynb").read_bytes()


def _notebook(tmp_path, cells) -> Path:
    nb = nbformat.v4.new_notebook(metadata=ns.METADATA)
    for kind, source, tags in cells:
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(source, metadata={"tags": tags} if tags else {}))
    p = tmp_path / "notebooks" / "07_bad.ipynb"
    p.parent.mkdir(exist_ok=True)
    nbformat.write(nb, p)
    return p


GOOD = [("markdown", "# Title", None), ("code", "import workbench as wb", None), ("code", "N = 1", ["parameters"]),
        ("markdown", "## The claim, as a check that can fail", None), ("code", "x = 2\nassert x > N, 'no'", None)]


def test_a_good_notebook_passes_the_checks(tmp_path):
    p = _notebook(tmp_path, GOOD)
    nb = nbformat.read(p, as_version=4)
    assert ns.parameters_problem(nb, p) is None and ns.claim_problem(nb, p) is None


def test_a_notebook_without_parameters_cell_is_refused(tmp_path):
    p = _notebook(tmp_path, [c if c[2] is None else (c[0], c[1], None) for c in GOOD])
    msg = ns.parameters_problem(nbformat.read(p, as_version=4), p)
    assert msg.startswith(f"{p} has no cell tagged 'parameters':")
    assert '`# %% tags=["parameters"]`' in msg and str(p.parent / "src" / "07_bad.py") in msg
    assert "bash scripts/workbench.sh sync" in msg
    assert any("no cell tagged 'parameters'" in m for m in ns.problems(p))


def test_a_notebook_with_two_parameters_cells_is_refused(tmp_path):
    p = _notebook(tmp_path, GOOD + [("code", "M = 2", ["parameters"])])
    assert "has 2 cells tagged 'parameters'" in ns.parameters_problem(nbformat.read(p, as_version=4), p)


@pytest.mark.parametrize("cells", [
    GOOD[:3],                                                                    # no claim section at all
    GOOD[:4] + [("code", "print('the claim holds')", None)],                     # a claim section without assert
    GOOD[:3] + [("code", "assert True", None)] + GOOD[3:4],                      # the assert is before it
    GOOD[:4] + [("markdown", "## What to try next", None), ("code", "assert 1", None)],  # ... or after it
])
def test_a_notebook_without_claim_check_is_refused(tmp_path, cells):
    p = _notebook(tmp_path, cells)
    msg = ns.claim_problem(nbformat.read(p, as_version=4), p)
    assert msg and msg.startswith(f"{p} has no claim check:") and "## The claim, as a check that can fail" in msg


# --- the scaffold -----------------------------------------------------------------------------------

@pytest.fixture
def scaffold_dir(tmp_path) -> Path:
    """An empty notebooks/ folder with the real catalog and jupytext config (the notebooks not copied)."""
    d = tmp_path / "nbs" / "notebooks"
    (d / "src").mkdir(parents=True)
    for f in ("catalog.yml", "jupytext.toml"):
        shutil.copy(NB_DIR / f, d / f)
    return d


def test_scaffold_writes_a_notebook_that_passes_every_check(scaffold_dir, papers_md):
    written = new_notebook.scaffold(FREE[0], "clip_zero_shot", 7, "vl", scaffold_dir, papers_md)
    nb = scaffold_dir / f"{FREE[0]}_clip_zero_shot.ipynb"
    assert written == [scaffold_dir / "src" / f"{FREE[0]}_clip_zero_shot.py", nb, scaffold_dir / "catalog.yml"]
    assert ns.problems(nb) == []
    entries = load_catalog(scaffold_dir / "catalog.yml")
    check_papers(entries, papers_md, "catalog.yml")
    e = entries[-1]
    title = next((x["title"] for x in catalog() if x["paper"] == 7), "Paper number 7")  # papers_md's title for 7
    assert (e["notebook"], e["paper"], e["title"], e["arxiv"]) == (f"{FREE[0]}_clip_zero_shot.ipynb", 7, title,
                                                                   "2103.00001")
    assert (e["topic"], e["status"]) == ("vl", "mechanism only")
    assert [x["notebook"] for x in entries[:-1]] == NOTEBOOKS  # the entries before are untouched
    cells = nbformat.read(nb, as_version=4).cells
    first = next(c.source for c in cells if c.cell_type == "code")
    assert "wb.setup()" in first
    code = "import sys\nsys.modules['workbench'] = None  # as if not installed\n" + first
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "'workbench' is not installed" in r.stderr and "bash scripts/workbench.sh lab" in r.stderr, r.stderr
    params = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "wb.by_mode(smoke=" in params and "laptop=" in params and "paper=" in params
    headings = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    for section in ("**The question.**", "**The claim.**", "## The experiment, on real data", "## What to look at",
                    "## The paper's numbers beside ours", "## The claim, as a check that can fail",
                    "## What to try next"):
        assert section in headings
    assert ns.sync([], scaffold_dir, quiet=True) == []  # already in its synced, clean form


def test_scaffold_without_paper_number(scaffold_dir, papers_md):
    new_notebook.scaffold(FREE[1], "shortcuts", None, "todo", scaffold_dir, papers_md)
    e = load_catalog(scaffold_dir / "catalog.yml")[-1]
    assert e["paper"] is None and e["arxiv"] is None and e["title"].startswith("TODO")


@pytest.mark.parametrize("nn, name, paper, words", [
    ("6", "x", 7, "must be two digits such as 06, got '6'"),
    ("006", "x", 7, "must be two digits"),
    (FREE[0], "RandomPruning", 7, "must be snake_case"),
    (FREE[0], "random-pruning", 7, "must be snake_case"),
    (FREE[0], "_x", 7, "must be snake_case"),
    ("01", "other", 7, "notebook number 01 is taken (01_training_batchnorm_only.ipynb"),
    (FREE[0], "x", 65, "paper 65 is not in"),
    (FREE[0], "x", 0, "numbered 1..64"),
])
def test_scaffold_refuses_bad_input_and_writes_nothing(scaffold_dir, papers_md, nn, name, paper, words):
    before = (scaffold_dir / "catalog.yml").read_text()
    with pytest.raises(ValueError, match=re.escape(words)):
        new_notebook.scaffold(nn, name, paper, "todo", scaffold_dir, papers_md)
    assert (scaffold_dir / "catalog.yml").read_text() == before
    assert list((scaffold_dir / "src").iterdir()) == [] and not list(scaffold_dir.glob("*.ipynb"))


def test_scaffold_taken_number_says_the_first_free_one(scaffold_dir, papers_md):
    taken = set(re.findall(r"^\s*- notebook: (\d\d)_", (scaffold_dir / "catalog.yml").read_text(), flags=re.M))
    free = next(f"{i:02d}" for i in range(100) if f"{i:02d}" not in taken)  # the catalog's first gap
    with pytest.raises(ValueError, match=f"the first free number is {free}"):
        new_notebook.scaffold("05", "again", 7, "todo", scaffold_dir, papers_md)


def test_scaffold_command_line(scaffold_dir, papers_md, capsys):
    argv = [FREE[0], "x", "--notebooks", str(scaffold_dir), "--papers", str(papers_md)]
    with pytest.raises(SystemExit):
        new_notebook.main(argv)
    assert "add --paper N" in capsys.readouterr().err
    assert new_notebook.main(argv + ["--paper", "99"]) == 2
    assert "numbered 1..64" in capsys.readouterr().err
    assert new_notebook.main(argv + ["--paper", "12"]) == 0
    assert "wrote" in capsys.readouterr().out and (scaffold_dir / f"{FREE[0]}_x.ipynb").is_file()


@pytest.mark.slow
@pytest.mark.timeout(400)
@requires_cifar
def test_scaffolded_notebook_runs_in_smoke_mode(scaffold_dir, papers_md):
    from nbclient import NotebookClient

    new_notebook.scaffold(FREE[0], "clip_zero_shot", 7, "vl", scaffold_dir, papers_md)
    nb = nbformat.read(scaffold_dir / f"{FREE[0]}_clip_zero_shot.ipynb", as_version=4)
    env_before = dict(os.environ)
    os.environ.update(WORKBENCH_MODE="smoke")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(scaffold_dir)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "accuracy above chance per seed" in printed
