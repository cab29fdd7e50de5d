"""The catalog's laptop minutes against the stored measurements (notebooks/timings.json, written by
``bash scripts/workbench.sh time NN``): within a factor of 1.5, measured on the machine the catalog
names, for the notebook's current code, and within the 15-minute laptop limit of shared/NOTEBOOKS.md.
CI never runs laptop mode: the measurement is a file in the repository."""
from __future__ import annotations

import json

import pytest

from tools import time_notebook as tn
from workbench.catalog import load_catalog, parse_catalog

ENTRIES = load_catalog(tn.NB_DIR / "catalog.yml")
TIMINGS = tn.read_timings()
MEASURED = [e["notebook"] for e in ENTRIES if "laptop" in TIMINGS.get(e["notebook"], {})]


def check_entry(entry: dict, measurement: dict, code_digest: str) -> None:
    """Raise naming the notebook, the figures and the command that fixes it."""
    name, fix = entry["notebook"], f"bash scripts/workbench.sh time {entry['notebook'].split('_', 1)[0]}"
    if measurement["code_digest"] != code_digest:
        raise AssertionError(f"{name}: its code changed since its laptop time was measured "
                             f"({measurement['date']}); time it again: {fix}")
    measured, listed = measurement["minutes"], entry["minutes"]["laptop"]
    if not (measured / tn.TOLERANCE <= listed <= measured * tn.TOLERANCE):
        raise AssertionError(f"{name}: the catalog says {listed} laptop minutes, the last measurement "
                             f"{measured:.1f} ({measurement['measured_on']}); more than {tn.TOLERANCE}x apart. "
                             f"Set minutes.laptop to the measurement, or measure again: {fix}")
    if entry.get("measured_on", {}).get("laptop") != measurement["measured_on"]:
        raise AssertionError(f"{name}: catalog measured_on.laptop {entry.get('measured_on', {}).get('laptop')!r} "
                             f"is not the machine of the stored measurement {measurement['measured_on']!r}: {fix}")
    if measured > tn.LAPTOP_LIMIT_MINUTES:
        raise AssertionError(f"{name}: laptop mode took {measured:.1f} min, over the {tn.LAPTOP_LIMIT_MINUTES:g}-minute "
                             f"limit of shared/NOTEBOOKS.md; make its laptop= values cheaper, keeping the claim check")


def test_every_notebook_is_measured():
    missing = [e["notebook"] for e in ENTRIES if e["notebook"] not in MEASURED]
    assert not missing, (f"{missing} have no laptop measurement in notebooks/timings.json: "
                         f"bash scripts/workbench.sh time NN (on an idle 2-core machine)")


@pytest.mark.parametrize("name", MEASURED)
def test_catalog_laptop_minutes_match_the_measurement(name):
    entry = next(e for e in ENTRIES if e["notebook"] == name)
    check_entry(entry, TIMINGS[name]["laptop"], tn.code_digest(tn.NB_DIR / name))


def _measurement(**over):
    m = {"minutes": 10.0, "measured_on": "2 cores (x), 24 GiB, torch 2.13.0+cpu, 2026-12-03", "code_digest": "abc",
         "date": "2026-12-03T10:00:00+00:00"}
    return {**m, **over}


def _entry(**over):
    e = {"notebook": "07_x.ipynb", "minutes": {"smoke": 1, "laptop": 10.0, "paper": 5},
         "measured_on": {"laptop": "2 cores (x), 24 GiB, torch 2.13.0+cpu, 2026-12-03"}}
    return {**e, **over}


@pytest.mark.parametrize("entry, measurement, words", [
    (_entry(minutes={"smoke": 1, "laptop": 4, "paper": 5}), _measurement(), "more than 1.5x apart"),
    (_entry(minutes={"smoke": 1, "laptop": 16, "paper": 5}), _measurement(), "more than 1.5x apart"),
    (_entry(), _measurement(code_digest="other"), "code changed"),
    (_entry(measured_on={}), _measurement(), "measured_on.laptop"),
    (_entry(minutes={"smoke": 1, "laptop": 20, "paper": 5}), _measurement(minutes=20.0), "15-minute"),
])
def test_disagreements_are_caught(entry, measurement, words):
    with pytest.raises(AssertionError, match=words):
        check_entry(entry, measurement, "abc")
    check_entry(_entry(), _measurement(), "abc")   # and the agreeing pair passes


def test_catalog_update_keeps_comments_and_validates(tmp_path):
    text = (tn.NB_DIR / "catalog.yml").read_text()
    cat = tmp_path / "catalog.yml"
    cat.write_text(text)
    tn.update_catalog(cat, "05_vit_vs_resnet_sharpness.ipynb", "laptop", 9.3, 'a "quoted" machine, 2026-12-03')
    new = cat.read_text()
    assert new.splitlines()[0] == text.splitlines()[0]   # the comments stay
    e = next(x for x in parse_catalog(new) if x["notebook"] == "05_vit_vs_resnet_sharpness.ipynb")
    assert e["minutes"]["laptop"] == 9.3 and e["measured_on"]["laptop"] == 'a "quoted" machine, 2026-12-03'
    others = [x for x in parse_catalog(new) if x["notebook"] != "05_vit_vs_resnet_sharpness.ipynb"]
    assert others == [x for x in parse_catalog(text) if x["notebook"] != "05_vit_vs_resnet_sharpness.ipynb"]
    tn.update_catalog(cat, "05_vit_vs_resnet_sharpness.ipynb", "laptop", 9.4, "again")
    e = next(x for x in parse_catalog(cat.read_text()) if x["notebook"] == "05_vit_vs_resnet_sharpness.ipynb")
    assert e["minutes"]["laptop"] == 9.4 and e["measured_on"] == {"laptop": "again"}


def test_damaged_timings_file_names_the_fix(tmp_path):
    bad = tmp_path / "timings.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="does not parse.*git checkout"):
        tn.read_timings(bad)
    bad.write_text(json.dumps([1]))
    with pytest.raises(ValueError, match="mapping"):
        tn.read_timings(bad)


def test_rounding_up_to_a_tenth():
    assert tn.catalog_minutes(9.21) == 9.3 and tn.catalog_minutes(9.2) == 9.2 and tn.catalog_minutes(0.01) == 0.1
