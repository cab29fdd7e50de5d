"""The notebook catalog (``notebooks/catalog.yml``): one entry per notebook, validated."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MODES = ("smoke", "laptop", "paper")
STATUSES = ("claim shown", "mechanism only")
_FIELDS = {"notebook": str, "title": str, "topic": str, "status": str, "claim": str, "datasets": list,
           "minutes": dict, "paper_mode_needs_gpu": bool}
_TOPIC = re.compile(r"[a-z][a-z0-9_-]{1,23}")
_PAPER_HEADING = re.compile(r"^## (\d+)\. (.+?)\s*$", re.M)


def catalog_path() -> Path:
    return Path(__file__).resolve().parents[1] / "notebooks" / "catalog.yml"


def parse_catalog(text: str, source: str = "catalog.yml") -> list[dict[str, Any]]:
    """Validate catalog YAML text; every problem names the entry and the field."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{source} is not valid YAML ({str(e).splitlines()[0]})") from None
    entries = doc.get("notebooks") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{source} must hold a mapping with a 'notebooks' list")
    seen = set()
    for i, e in enumerate(entries):
        where = f"{source} entry {i}"
        if not isinstance(e, dict):
            raise ValueError(f"{where} must be a mapping of fields, got {type(e).__name__}")
        for field, kind in _FIELDS.items():
            if not isinstance(e.get(field), kind):
                raise ValueError(f"{where} ({e.get('notebook', '?')}): field {field!r} must be a {kind.__name__}, "
                                 f"got {type(e.get(field)).__name__}")
        paper = e.get("paper")
        if paper is not None and (isinstance(paper, bool) or not isinstance(paper, int) or not 1 <= paper <= 1000):
            raise ValueError(f"{where} ({e['notebook']}): 'paper' must be the paper's number or null, got {paper!r}")
        if not e["notebook"].endswith(".ipynb") or "/" in e["notebook"]:
            raise ValueError(f"{where}: 'notebook' must be a file name ending in .ipynb, got {e['notebook']!r}")
        if e["notebook"] in seen:
            raise ValueError(f"{where}: {e['notebook']} is listed twice")
        seen.add(e["notebook"])
        if not _TOPIC.fullmatch(e["topic"]):
            raise ValueError(f"{where} ({e['notebook']}): 'topic' must be a short lowercase group name such as "
                             f"'quantization' or 'pruning' (2-24 characters: a-z, 0-9, '_', '-'), got {e['topic']!r}")
        if e["status"] not in STATUSES:
            raise ValueError(f"{where} ({e['notebook']}): 'status' must be 'claim shown' or 'mechanism only' "
                             f"(the claim needs a scale a laptop cannot reach), got {e['status']!r}")
        minutes = e["minutes"]
        for mode in MODES:
            v = minutes.get(mode)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 24 * 60:
                raise ValueError(f"{where} ({e['notebook']}): minutes.{mode} must be a number of minutes in "
                                 f"(0, 1440], got {v!r}")
        measured = e.get("measured_on", {})
        if not isinstance(measured, dict) or any(k not in MODES or not isinstance(v, str) for k, v in measured.items()):
            raise ValueError(f"{where} ({e['notebook']}): 'measured_on' must map a mode ({', '.join(MODES)}) to the "
                             f"machine and date of its measurement (written by bash scripts/workbench.sh time NN), "
                             f"got {measured!r}")
    return entries


def load_catalog(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read and validate the catalog file (default ``notebooks/catalog.yml``)."""
    p = Path(path) if path is not None else catalog_path()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the catalog {p} ({e})") from None
    return parse_catalog(text, str(p))


def read_papers(papers_md: str | Path) -> dict[int, str]:
    """The papers of ``papers.md`` by number: its ``## N. Title`` lines."""
    p = Path(papers_md)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the list of papers {p} ({e})") from None
    papers = {int(n): t for n, t in _PAPER_HEADING.findall(text)}
    if not papers:
        raise ValueError(f"{p} lists no papers: expected lines such as '## 48. Training BatchNorm and Only BatchNorm'")
    return papers


def check_papers(entries: list[dict[str, Any]], papers_md: str | Path, source: str = "catalog.yml") -> None:
    """Every entry's ``paper`` is a number in ``papers_md`` and its ``title`` is that paper's title there.

    Raises:
        ValueError: naming the catalog file, the entry, the wrong value and the fix.
    """
    papers = read_papers(papers_md)
    first, last = min(papers), max(papers)
    for i, e in enumerate(entries):
        where, num = f"{source} entry {i} ({e.get('notebook', '?')})", e.get("paper")
        if num is None:
            continue
        if num not in papers:
            raise ValueError(f"{where}: paper {num!r} is not in {papers_md}, whose papers are numbered "
                             f"{first}..{last}; set 'paper' to the number of its '## N. Title' line there "
                             f"(or null for a notebook about no single paper)")
        if e.get("title") != papers[num]:
            raise ValueError(f"{where}: 'title' must be paper {num}'s title as in {papers_md}: {papers[num]!r}, "
                             f"got {e.get('title')!r}")
