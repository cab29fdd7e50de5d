"""The notebook catalog (``notebooks/catalog.yml``): one entry per notebook, validated."""
from __future__ import annotations

from pathlib import Path
from typing import Any

MODES = ("smoke", "laptop", "paper")
_FIELDS = {"notebook": str, "title": str, "claim": str, "datasets": list, "minutes": dict,
           "paper_mode_needs_gpu": bool}


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
        minutes = e["minutes"]
        for mode in MODES:
            v = minutes.get(mode)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 24 * 60:
                raise ValueError(f"{where} ({e['notebook']}): minutes.{mode} must be a number of minutes in "
                                 f"(0, 1440], got {v!r}")
    return entries


def load_catalog(path: str | Path | None = None) -> list[dict[str, Any]]:
    p = Path(path) if path is not None else catalog_path()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the catalog {p} ({e})") from None
    return parse_catalog(text, str(p))
