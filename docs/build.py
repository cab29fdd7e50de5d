"""Build the course site: execute every notebook in smoke mode, write the syllabus from
notebooks/catalog.yml, then run ``mkdocs build --strict`` (a warning, such as a broken
link or a missing page, fails the build).

    python docs/build.py            # -> docs/_build/site/index.html
    python docs/build.py --reuse    # keep already executed notebooks
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "_build"
SRC = BUILD / "src"
sys.path.insert(0, str(ROOT))


def syllabus(entries: list[dict], papers: dict[str, str], only: list[str] | None = None) -> str:
    lines = ["# Syllabus", "",
             "Every paper with its notebook, the claim the notebook checks, and the minutes it takes per mode "
             "(smoke and laptop on 2 CPU cores, paper on one GPU). Generated from `notebooks/catalog.yml`.", "",
             "| # | paper | notebook | claim | smoke | laptop | paper |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        num = e["paper"] if e["paper"] is not None else "-"
        link = (f"[{e['notebook']}](notebooks/{e['notebook']})" if not only or e["notebook"] in only
                else f"`{e['notebook']}`")
        arxiv = f" ([arXiv {e['arxiv']}](https://arxiv.org/abs/{e['arxiv']}))" if e.get("arxiv") else ""
        m = e["minutes"]
        gpu = " (GPU)" if e.get("paper_mode_needs_gpu") else ""
        claim = e["claim"].replace("|", "\\|")
        lines.append(f"| {num} | {e['title']}{arxiv} | {link} | {claim} | {m['smoke']} | {m['laptop']} | "
                     f"{m['paper']}{gpu} |")
    listed = {str(e["paper"]) for e in entries if e["paper"] is not None}
    todo = [f"{n}. {t}" for n, t in papers.items() if n not in listed]
    if todo:
        lines += ["", f"## Not yet in the workbench ({len(todo)} of {len(papers)} papers)", ""]
        lines += [f"- {t}" for t in todo]
    return "\n".join(lines) + "\n"


def execute(nb_path: Path, out: Path, timeout: int) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(nb_path, as_version=4)
    env_mode = os.environ.get("WORKBENCH_MODE")
    os.environ["WORKBENCH_MODE"] = "smoke"
    t = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(nb_path.parent)}}).execute()
    finally:
        if env_mode is None:
            os.environ.pop("WORKBENCH_MODE", None)
        else:
            os.environ["WORKBENCH_MODE"] = env_mode
    nbformat.write(nb, out)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reuse", action="store_true", help="keep notebooks executed by an earlier build")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--only", nargs="*", help="build just these notebooks (a quick look; the syllabus still lists all)")
    args = ap.parse_args()
    from workbench.catalog import load_catalog

    entries = load_catalog()
    papers_md = ROOT.parent / "shared" / "papers.md"
    import re
    papers = dict(re.findall(r"^## (\d+)\. (.+)$", papers_md.read_text(), flags=re.M)) if papers_md.is_file() else {}
    if not args.reuse and SRC.exists():
        shutil.rmtree(SRC)
    (SRC / "notebooks").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "index.md", SRC / "index.md")
    (SRC / "syllabus.md").write_text(syllabus(entries, papers, args.only))
    built = [e for e in entries if not args.only or e["notebook"] in args.only]
    for e in built:
        out = SRC / "notebooks" / e["notebook"]
        if args.reuse and out.is_file():
            continue
        secs = execute(ROOT / "notebooks" / e["notebook"], out, args.timeout)
        print(f"executed {e['notebook']} in smoke mode: {secs:.0f} s", flush=True)
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
    (BUILD / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(BUILD / "mkdocs.yml")],
                       capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode:
        raise SystemExit(f"mkdocs build failed (exit {r.returncode}): a warning above means a broken page")
    check_plots(built)
    print(f"site: {BUILD / 'site' / 'index.html'}")


def check_plots(entries: list[dict]) -> None:
    """Open every notebook page in headless Chromium: each plotly output must be drawn."""
    import json

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
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags, headless=True)
        page = browser.new_page()
        for e in entries:
            nb = json.loads((SRC / "notebooks" / e["notebook"]).read_text())
            want = sum("application/vnd.plotly.v1+json" in o.get("data", {})
                       for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
            url = (BUILD / "site" / "notebooks" / Path(e["notebook"]).stem / "index.html").resolve().as_uri()
            page.goto(url)
            page.wait_for_timeout(1000)
            drawn = page.locator(".js-plotly-plot .main-svg").count() and page.locator(".js-plotly-plot").count()
            print(f"{e['notebook']}: {drawn} of {want} plots drawn on the site")
            if drawn < want:
                browser.close()
                raise SystemExit(f"{e['notebook']}: only {drawn} of {want} plotly figures render on its page")
        browser.close()


if __name__ == "__main__":
    main()
