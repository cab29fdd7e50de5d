"""The widget frontend installed for JupyterLab matches the kernel-side packages, and
environment.yml pins the versions the project was tested with."""
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _labextension(name: str) -> dict:
    for base in [Path(sys.prefix), Path(sys.base_prefix), Path.home() / ".local"]:
        p = base / "share" / "jupyter" / "labextensions" / name / "package.json"
        if p.is_file():
            return json.loads(p.read_text())
    pytest.fail(f"the JupyterLab extension {name} is not installed: pip install the package that ships it")


def test_frontend_and_kernel_versions_agree():
    import anywidget
    import ipywidgets
    import jupyterlab_widgets
    import plotly

    assert _labextension("anywidget")["version"] == anywidget.__version__
    manager = _labextension("@jupyter-widgets/jupyterlab-manager")["version"]
    # ipywidgets 8 <-> jupyterlab_widgets 3 <-> the JupyterLab extension jupyterlab-manager 5
    assert ipywidgets.__version__.startswith("8.") and jupyterlab_widgets.__version__.startswith("3.")
    assert manager.startswith("5."), f"jupyterlab-manager {manager} does not pair with ipywidgets 8"
    assert _labextension("jupyterlab-plotly")["version"] == plotly.__version__


def test_environment_pins_the_installed_widget_stack():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {d.split("=")[0]: d.split("=", 1)[1] for d in env["dependencies"] if isinstance(d, str) and "=" in d}
    import anywidget
    import ipywidgets

    assert anywidget.__version__.startswith(pins["anywidget"])
    assert ipywidgets.__version__.startswith(pins["ipywidgets"])
