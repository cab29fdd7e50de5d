"""Write a notebook from a light-weight cell list (a maintainer's helper, not part of the package).

    python tools/make_notebook.py notebooks/src/00_tour.py notebooks/00_tour.ipynb

The source is a Python file whose cells are separated by lines ``# %%`` (code),
``# %% [markdown]`` (markdown, each line starting with ``# ``) or
``# %% parameters`` (the papermill parameters cell). Outputs are never written.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def parse(text: str) -> list:
    cells, kind, buf = [], None, []

    def flush():
        if kind is None:
            return
        src = "\n".join(buf).strip("\n")
        if kind == "markdown":
            src = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in src.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(src))
        else:
            cell = nbformat.v4.new_code_cell(src)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            cells.append(cell)

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            rest = line[4:].strip()
            kind = "markdown" if rest == "[markdown]" else "parameters" if rest == "parameters" else "code"
            buf = []
        else:
            buf.append(line)
    flush()
    return cells


def main(src: str, dst: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(Path(src).read_text())
    for i, c in enumerate(nb.cells):
        c.id = f"cell-{i:02d}"
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    Path(dst).write_text(nbformat.writes(nb) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
