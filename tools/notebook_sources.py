"""Notebook sources: each ``notebooks/NN_name.ipynb`` is paired with ``notebooks/src/NN_name.py``.

The ``.py`` files are jupytext percent-format scripts (``notebooks/jupytext.toml`` pairs them, so
JupyterLab's jupytext extension saves both files). This maintainer's tool syncs the pairs and
checks what the tests check, with messages that name the file and the fix:

    python tools/notebook_sources.py sync [NAME_OR_PATH ...]    # bash scripts/workbench.sh sync
    python tools/notebook_sources.py check [NAME_OR_PATH ...]

``sync`` runs ``jupytext --sync`` (the newer file of a pair gives the cells), then writes the
``.ipynb`` clean: no outputs, standard metadata, cell ids ``cell-00``, ``cell-01``, ...

A notebook's *claim check* is an ``assert`` statement in a code cell of a section whose markdown
heading mentions the claim (``## The claim, as a check that can fail``): the code cells after
that heading, up to the next markdown heading, must hold at least one ``assert``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SYNC = "bash scripts/workbench.sh sync"
METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s", re.M)
_CLAIM_HEADING = re.compile(r"^\s{0,3}#{1,6}\s.*\bclaims?\b", re.M | re.I)
_ASSERT = re.compile(r"^\s*assert\b", re.M)


def source_of(notebook: Path) -> Path:
    """``notebooks/NN_name.ipynb`` -> ``notebooks/src/NN_name.py``."""
    return notebook.parent / "src" / f"{notebook.stem}.py"


def notebook_of(source: Path) -> Path:
    """``notebooks/src/NN_name.py`` -> ``notebooks/NN_name.ipynb``."""
    return source.parent.parent / f"{source.stem}.ipynb"


def _shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it (what a message shows)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def sync_command(notebook: Path) -> str:
    """The exact command that syncs one pair."""
    return f"{SYNC} {_shown(source_of(notebook))}"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The committed form of a notebook: no outputs, standard metadata, only ``tags`` in cell metadata."""
    out = nbformat.v4.new_notebook(metadata=nbformat.from_dict(METADATA))
    for i, c in enumerate(nb.cells):
        tags = list(c.get("metadata", {}).get("tags", []))
        meta = {"tags": tags} if tags else {}
        new = nbformat.v4.new_code_cell if c.cell_type == "code" else (
            nbformat.v4.new_markdown_cell if c.cell_type == "markdown" else nbformat.v4.new_raw_cell)
        cell = new(c.source, metadata=meta)
        cell.id = f"cell-{i:02d}"
        out.cells.append(cell)
    return out


def write_clean(nb: nbformat.NotebookNode, path: Path) -> bool:
    """Write ``clean(nb)`` to ``path`` when it differs from what is there; True when it wrote."""
    text = nbformat.writes(clean(nb)) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def _pairs(args: list[str], nb_dir: Path) -> list[Path]:
    """The notebooks named by ``args`` (names, .ipynb or .py paths); every pair when none."""
    if not args:
        names = {p.stem for p in nb_dir.glob("*.ipynb")} | {p.stem for p in (nb_dir / "src").glob("*.py")}
        return [nb_dir / f"{n}.ipynb" for n in sorted(names)]
    out = []
    for a in args:
        p = Path(a)
        stem = p.stem if p.suffix in (".py", ".ipynb") else p.name
        nb = nb_dir / f"{stem}.ipynb"
        if not nb.is_file() and not source_of(nb).is_file():
            raise SystemExit(f"no notebook {nb_dir / stem}.ipynb nor source {source_of(nb)}: name one of "
                             f"{', '.join(sorted(q.stem for q in nb_dir.glob('*.ipynb')))}")
        out.append(nb)
    return out


def sync(args: list[str] = (), nb_dir: Path = NB_DIR, quiet: bool = False) -> list[Path]:
    """Sync the named pairs (all when none) and write their notebooks clean; returns the files changed."""
    import importlib.util

    if importlib.util.find_spec("jupytext") is None:
        raise SystemExit("jupytext is not installed in this environment: run `bash scripts/workbench.sh setup` "
                         "(it installs .[dev]) or `pip install 'jupytext>=1.16'`")
    pairs = _pairs(list(args), nb_dir)
    before = {p: p.read_bytes() if p.is_file() else None for nb in pairs for p in (nb, source_of(nb))}
    inputs = [str(source_of(nb)) if source_of(nb).is_file() else str(nb) for nb in pairs]
    r = subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", *inputs],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"jupytext --sync failed:\n{r.stderr.strip()}")
    for nb in pairs:
        write_clean(nbformat.read(nb, as_version=4), nb)
        src = source_of(nb)
        os.utime(src)  # the text file stays the newer one, as JupyterLab's jupytext extension expects
    changed = [p for p, b in before.items() if p.is_file() and p.read_bytes() != b]
    if not quiet:
        for p in changed:
            print(f"updated {_shown(p)}")
        print(f"{len(pairs)} notebook(s) in sync, {len(changed)} file(s) updated")
    return changed


def pair_problem(notebook: Path) -> str | None:
    """Why ``notebook`` and its source are out of sync (cell kinds, sources, tags), or None."""
    import jupytext

    src = source_of(notebook)
    if not src.is_file():
        return f"{_shown(notebook)} has no source {_shown(src)}: create it with {sync_command(notebook)}"
    if not notebook.is_file():
        return f"{_shown(src)} has no notebook {_shown(notebook)}: create it with {sync_command(notebook)}"
    ours = nbformat.read(notebook, as_version=4).cells
    theirs = jupytext.read(src).cells

    def key(c):
        return c.cell_type, c.source, list(c.get("metadata", {}).get("tags", []))

    if [key(c) for c in ours] == [key(c) for c in theirs]:
        return None
    i = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if key(a) != key(b)), min(len(ours), len(theirs)))
    return (f"{_shown(notebook)} and {_shown(src)} differ (from cell {i}; {len(ours)} against {len(theirs)} cells): "
            f"sync them with {sync_command(notebook)}")


def clean_problem(notebook: Path) -> str | None:
    """Why ``notebook`` is not in its committed form (outputs, metadata, ids), or None."""
    text = notebook.read_text(encoding="utf-8")
    if text == nbformat.writes(clean(nbformat.reads(text, as_version=4))) + "\n":
        return None
    return (f"{_shown(notebook)} is not clean (outputs, execution counts, extra metadata or cell ids): "
            f"commit notebooks without outputs; run {sync_command(notebook)}")


def parameters_problem(nb: nbformat.NotebookNode, notebook: Path) -> str | None:
    """A notebook needs exactly one code cell tagged ``parameters``."""
    n = sum("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells if c.cell_type == "code")
    if n == 1:
        return None
    what = "has no cell tagged 'parameters'" if n == 0 else f"has {n} cells tagged 'parameters' (one is wanted)"
    return (f"{_shown(notebook)} {what}: in {_shown(source_of(notebook))} start the one cell that holds every "
            f"knob with the line `# %% tags=[\"parameters\"]`, then run {sync_command(notebook)}")


def claim_problem(nb: nbformat.NotebookNode, notebook: Path) -> str | None:
    """A notebook needs a claim check: an ``assert`` in the code after a markdown heading naming the claim."""
    in_claim = False
    for c in nb.cells:
        if c.cell_type == "markdown" and _HEADING.search(c.source):
            in_claim = bool(_CLAIM_HEADING.search(c.source))
        elif in_claim and c.cell_type == "code" and _ASSERT.search(c.source):
            return None
    return (f"{_shown(notebook)} has no claim check: in {_shown(source_of(notebook))} add a markdown heading "
            f"such as `## The claim, as a check that can fail` followed by a code cell that asserts the claim "
            f"(`assert gain > MIN_GAIN, \"...\"`), then run {sync_command(notebook)}")


def problems(notebook: Path) -> list[str]:
    """Every problem of one notebook: pairing, cleanliness, parameters cell, claim check, ``.cuda()``."""
    found = [pair_problem(notebook)]
    if notebook.is_file():
        nb = nbformat.read(notebook, as_version=4)
        found += [clean_problem(notebook), parameters_problem(nb, notebook), claim_problem(nb, notebook)]
        if any(".cuda()" in c.source for c in nb.cells if c.cell_type == "code"):
            found.append(f"{_shown(notebook)} calls .cuda(): use wb.device() (tensor.to(wb.device()))")
    return [p for p in found if p]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("sync", "check"):
        print(__doc__)
        return 2
    if argv[0] == "sync":
        sync(argv[1:])
        return 0
    found = [p for nb in _pairs(argv[1:], NB_DIR) for p in problems(nb)]
    print("\n".join(found) if found else "every notebook is in sync, clean, with a parameters cell and a claim check")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
