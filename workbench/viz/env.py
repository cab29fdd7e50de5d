"""Which notebook frontend is running, and whether it can show widgets.

Detected, not configured: a kernel started by JupyterLab or Notebook has
``JPY_SESSION_NAME`` set by jupyter_server, VS Code sets ``VSCODE_PID`` (or
``VSCODE_CWD``), Colab has the ``google.colab`` module. A kernel driven by a
headless runner (nbclient, papermill, nbconvert, the docs build) has none of
these: there the workbench returns static figures that survive in the saved
notebook. ``WORKBENCH_WIDGETS=0/1`` forces either way.
"""
from __future__ import annotations

import importlib.util
import os
import sys


def frontend() -> str:
    """``"jupyterlab"``, ``"vscode"``, ``"colab"``, ``"headless-kernel"`` or ``"console"``."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:  # pragma: no cover
        shell = None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return "console"
    if os.environ.get("VSCODE_PID") or os.environ.get("VSCODE_CWD"):
        return "vscode"
    if os.environ.get("JPY_SESSION_NAME"):
        return "jupyterlab"
    return "headless-kernel"


def widgets_available() -> bool:
    """True when a live widget frontend and the kernel-side packages are present."""
    forced = os.environ.get("WORKBENCH_WIDGETS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if frontend() not in ("jupyterlab", "vscode", "colab"):
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("ipywidgets", "anywidget", "plotly"))


def missing_widget_packages() -> list[str]:
    return [m for m in ("ipywidgets", "anywidget", "plotly") if importlib.util.find_spec(m) is None]


def _enable_colab_widgets() -> bool:
    """Colab shows third-party widgets (ipywidgets 8, anywidget) only through its custom widget manager,
    which a notebook has to switch on: do it, and say whether it worked."""
    try:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()
        return True
    except Exception:  # an older Colab without it, or no Colab after all: widgets stay as detected
        return False


def check_environment(verbose: bool = True) -> dict[str, object]:
    """What the setup cell prints: the frontend, and the one fix when widgets cannot work. In Colab it switches
    on the custom widget manager that the workbench's widgets need."""
    info = {"frontend": frontend(), "widgets": widgets_available(), "missing": missing_widget_packages()}
    colab_manager = info["frontend"] == "colab" and info["widgets"] and _enable_colab_widgets()
    if verbose:
        fix = None
        if info["missing"]:
            fix = f"pip install {' '.join(info['missing'])} and restart the kernel"
        elif info["frontend"] == "colab" and info["widgets"] and not colab_manager:
            fix = "in Colab run: from google.colab import output; output.enable_custom_widget_manager()"
        msg = f"frontend: {info['frontend']}; interactive widgets: {'on' if info['widgets'] else 'off (static figures)'}"
        print(msg + (f"\nto enable widgets: {fix}" if fix else ""))
    return info
