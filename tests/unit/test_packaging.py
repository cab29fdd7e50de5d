"""pyproject.toml and environment.yml describe the same environment."""
import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
CONDA_NAMES = {"torch": "pytorch"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].strip().lower()


def test_environment_yml_has_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {_name(d) for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for d in env["dependencies"]:
        if isinstance(d, dict):
            names |= {_name(x) for x in d.get("pip", [])}
        else:
            names.add(_name(d))
    missing = sorted(d for d in deps if CONDA_NAMES.get(d, d) not in names)
    assert not missing, f"add to environment.yml: {missing}"
    assert "torchvision" not in names | deps, "torchvision does not import beside the CPU torch used here"


def test_widget_frontend_versions_are_pinned():
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"anywidget=\d", env) and re.search(r"jupyterlab_widgets=\d", env)
