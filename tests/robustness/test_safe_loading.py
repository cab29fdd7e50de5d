"""No code path can run code hidden in a file: a scan of the package's source for every
deserializer that can (pickle, torch.load without weights_only, numpy without
allow_pickle=False, yaml.load, pandas' read_pickle, eval and exec)."""
import ast
from pathlib import Path

import workbench

PACKAGE = Path(workbench.__file__).resolve().parent


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def offences(source: str, where: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [f"{where}: imports {a.name}" for a in node.names if a.name in ("pickle", "dill", "joblib", "marshal")]
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "dill", "joblib", "marshal"):
            out.append(f"{where}: imports from {node.module}")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        line = f"{where}:{node.lineno}"
        if isinstance(f, ast.Name) and name in ("eval", "exec"):
            out.append(f"{line}: {name}()")
        if owner == "torch" and name == "load" and not _is_const(_kw(node, "weights_only"), True):
            out.append(f"{line}: torch.load without weights_only=True")
        if owner == "np" and name == "load" and not _is_const(_kw(node, "allow_pickle"), False):
            out.append(f"{line}: np.load without allow_pickle=False")
        if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
            out.append(f"{line}: yaml.{name} (use yaml.safe_load)")
        if name in ("read_pickle", "loads") and owner in ("pd", "pickle"):
            out.append(f"{line}: {owner}.{name}")
    return out


def test_the_scanner_catches_each_pattern():
    bad = ("import pickle\nimport torch, numpy as np, yaml, pandas as pd\n"
           "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x')\nyaml.load(s)\n"
           "pd.read_pickle('x')\neval('1')\n")
    assert len(offences(bad, "bad.py")) == 7
    good = "import torch, numpy as np\ntorch.load('x', weights_only=True)\nnp.load('x', allow_pickle=False)\n"
    assert offences(good, "good.py") == []


def test_the_package_never_unpickles():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += offences(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "\n".join(found)
