"""Scaffold a paper notebook: its source, the paired notebook and its catalog entry.

    bash scripts/workbench.sh new NN short_name --paper N [--topic TOPIC]
    python tools/new_notebook.py NN short_name --paper N [--topic TOPIC] [--notebooks DIR] [--papers PATH]

writes ``notebooks/src/NN_short_name.py`` (jupytext percent format), the paired
``notebooks/NN_short_name.ipynb`` (clean) and an entry in ``notebooks/catalog.yml``: title
(and arXiv id, where it has one) from ``shared/papers.md`` by paper number, a ``topic``
placeholder, status ``mechanism only`` until the claim is shown. The notebook follows
shared/NOTEBOOKS.md's story and runs from the start: a ResNet-8 trained on a subset of CIFAR-10
(seconds in smoke mode) and a claim check that can fail, both for the author to replace.

``--paper`` is required: notebook numbers are not paper numbers (notebook 01 is paper 48).
``--paper none`` makes a notebook about no single paper (like the tour).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` and `workbench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import notebook_sources  # noqa: E402
from workbench.catalog import check_papers, parse_catalog, read_papers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPERS_MD = ROOT.parent / "shared" / "papers.md"
_SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_ARXIV = re.compile(r"(?:arxiv\.org/(?:abs|pdf)/|arXiv:?\s*)(\d{4}\.\d{4,5})", re.I)

SOURCE = '''# %% [markdown]
# # {title}
#
# TODO: the authors, *{title}*, the venue and year{arxiv_link}.
#
# **The question.** TODO: what the paper asks, in our own words (the abstract in papers.md is for
# reference only).
#
# **The claim.** TODO: what the paper shows, stated as something this notebook can check.
#
# **The experiment.** TODO: replace the placeholder below (a ResNet-8 trained on a subset of
# CIFAR-10) with the experiment that shows the claim on real data.

# %%
try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{{e.name}}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()

# %% tags=["parameters"]
MODEL = "resnet8"
EPOCHS = wb.by_mode(smoke=2, laptop=5, paper=30)
TRAIN_SUBSET = wb.by_mode(smoke=2_000, laptop=10_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=500, laptop=2_000, paper=None)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
MIN_GAIN = wb.by_mode(smoke=0.05, laptop=0.25, paper=0.5)  # the claim checked at the end: accuracy above chance

# %% [markdown]
# ## The experiment, on real data
#
# `wb.train.train_model` builds the model with a seed and trains it with `wb.fit`; the result is
# cached, so running the cell again returns at once.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
recipe = wb.train.recipe("laptop", epochs=EPOCHS)
results = {{seed: wb.train.train_model(MODEL, train, test, seed=seed, **recipe) for seed in SEEDS}}

# %% [markdown]
# ## What to look at
#
# TODO: plots first, a table of numbers next to them, and an explorer over the experiment's main knob.

# %%
import pandas as pd

table = pd.DataFrame([{{"seed": seed, **wb.evaluate(r.model, test)}} for seed, r in results.items()]).set_index("seed")
table

# %%
wb.viz.explorer(lambda seed: results[seed].plot(), seed=SEEDS)

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper (TODO: its table or figure) | this notebook, laptop mode |
# | --- | --- | --- |
# | TODO: metric | TODO | TODO |
#
# TODO: one sentence on what differs in scale.

# %% [markdown]
# ## The claim, as a check that can fail
#
# TODO: assert the paper's claim (laptop and paper mode), or the mechanism measured instead and
# set the catalog's status accordingly. Until then: accuracy at least `MIN_GAIN` above chance in
# every seed.

# %%
gain = table["acc"] - 1 / train.num_classes
print(f"accuracy above chance per seed: {{gain.round(3).to_dict()}} (mode {{info['mode']}})")
assert (gain > MIN_GAIN).all(), f"expected at least {{MIN_GAIN:.0%}} above chance in every seed: {{gain.to_dict()}}"

# %% [markdown]
# ## What to try next
#
# - TODO: two or three concrete changes of a parameter (for example `MODEL = "resnet20"`, more `EPOCHS`).
# - TODO: one or two exercises with checks (`wb.exercises`).
'''

ENTRY = '''  - notebook: {notebook}
    paper: {paper}
    title: {title}
    arxiv: {arxiv}
    topic: {topic}  # a short group name: quantization, pruning, ...
    status: "mechanism only"  # "claim shown" once the notebook asserts the claim
    claim: "TODO: the claim exactly as the notebook asserts it."
    datasets: [cifar10]
    minutes: {{smoke: 1, laptop: 15, paper: 60}}
    paper_mode_needs_gpu: true
'''


def _quote(s: str) -> str:
    """A YAML double-quoted scalar."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def paper_arxiv(papers_md: Path, number: int) -> str | None:
    """The arXiv id written in paper ``number``'s section of papers.md, if any."""
    text = papers_md.read_text(encoding="utf-8")
    m = re.search(rf"^## {number}\. .*?(?=^## \d+\. |\Z)", text, flags=re.M | re.S)
    found = _ARXIV.search(m.group(0)) if m else None
    return found.group(1) if found else None


def scaffold(nn: str, name: str, paper: int | None, topic: str = "todo", nb_dir: Path = notebook_sources.NB_DIR,
             papers_md: Path = PAPERS_MD) -> list[Path]:
    """Write the source, the paired notebook and the catalog entry; returns the files written.

    Raises:
        ValueError: for a number that is not two digits or already taken, a name that is not
            snake_case, or a paper number that is not in ``papers_md``; nothing is written then.
    """
    if not re.fullmatch(r"\d\d", nn):
        raise ValueError(f"the notebook number must be two digits such as 06, got {nn!r}")
    if not _SNAKE.fullmatch(name):
        raise ValueError(f"the short name must be snake_case (lowercase words joined by '_', such as "
                         f"random_pruning), got {name!r}")
    catalog = nb_dir / "catalog.yml"
    text = catalog.read_text(encoding="utf-8")
    taken = sorted({p.name for p in nb_dir.glob(f"{nn}_*.ipynb")} | {p.name for p in nb_dir.glob(f"src/{nn}_*.py")}
                   | set(re.findall(rf"^\s*- notebook: ({nn}_\S+)", text, flags=re.M)))
    if taken:
        used = {int(n) for n in re.findall(r"^\s*- notebook: (\d\d)_", text, flags=re.M)}
        free = next(i for i in range(100) if i not in used)
        raise ValueError(f"notebook number {nn} is taken ({', '.join(taken)} in {nb_dir}); "
                         f"the first free number is {free:02d}")
    if not papers_md.is_file():
        raise ValueError(f"the list of papers {papers_md} is missing: pass --papers PATH to shared/papers.md")
    papers = read_papers(papers_md)
    if paper is not None and paper not in papers:
        raise ValueError(f"paper {paper} is not in {papers_md}, whose papers are numbered "
                         f"{min(papers)}..{max(papers)}: give --paper the N of its '## N. Title' line")
    title = papers[paper] if paper is not None else f"TODO: the title of notebook {nn}"
    arxiv = paper_arxiv(papers_md, paper) if paper is not None else None
    notebook = f"{nn}_{name}.ipynb"
    entry = ENTRY.format(notebook=notebook, paper="null" if paper is None else paper, title=_quote(title),
                         arxiv=_quote(arxiv) if arxiv else "null  # TODO: the arXiv id", topic=topic)
    new_text = text.rstrip("\n") + "\n" + entry
    check_papers(parse_catalog(new_text, str(catalog)), papers_md, str(catalog))  # before anything is written

    source = nb_dir / "src" / f"{nn}_{name}.py"
    link = f" ([arXiv {arxiv}](https://arxiv.org/abs/{arxiv}))" if arxiv else " (TODO: the arXiv link)"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(SOURCE.format(title=title, arxiv_link=link), encoding="utf-8")
    try:
        notebook_sources.sync([str(source)], nb_dir, quiet=True)
    except BaseException:
        source.unlink()
        (nb_dir / notebook).unlink(missing_ok=True)
        raise
    catalog.write_text(new_text, encoding="utf-8")
    return [source, nb_dir / notebook, catalog]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nn", help="the notebook's two-digit number (the next free one; not the paper's number)")
    ap.add_argument("name", help="a snake_case short name, such as random_pruning")
    ap.add_argument("--paper", help="the paper's number in shared/papers.md, or 'none'")
    ap.add_argument("--topic", default="todo", help="the catalog's group name (default: todo, edit it later)")
    ap.add_argument("--notebooks", type=Path, default=notebook_sources.NB_DIR, help=argparse.SUPPRESS)
    ap.add_argument("--papers", type=Path, default=PAPERS_MD, help="shared/papers.md (default: beside the checkout)")
    args = ap.parse_args(argv)
    if args.paper is None:
        ap.error(f"which paper is notebook {args.nn} about? add --paper N, the N of its '## N. Title' line in "
                 f"shared/papers.md (notebook numbers are not paper numbers: notebook 01 is paper 48), "
                 f"or --paper none")
    if args.paper.lower() != "none" and not args.paper.isdigit():
        ap.error(f"--paper must be a paper's number in shared/papers.md or 'none', got {args.paper!r}")
    try:
        written = scaffold(args.nn, args.name, None if args.paper.lower() == "none" else int(args.paper),
                           args.topic, args.notebooks.resolve(), args.papers)
    except ValueError as e:
        print(f"new notebook: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {notebook_sources._shown(p)}")
    print(f"next: edit {notebook_sources._shown(written[0])} (or open the notebook in JupyterLab), "
          f"then run `bash scripts/workbench.sh sync` and the tests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
