"""No pickle anywhere: a scan of the package source (and the benchmarks) for every way in.

Models and checkpoints are safetensors, JSON or LightGBM text. The scan walks each file's
syntax tree (not its text, so docstrings that *mention* pickle are fine) and refuses:
importing ``pickle``/``cPickle``/``dill``/``joblib``/``cloudpickle``/``shelve``;
``torch.load`` without ``weights_only=True``; ``torch.save`` (it writes pickles);
``numpy.load`` with ``allow_pickle``; ``yaml.load``/``unsafe_load``/``full_load`` and the
unsafe loader classes (only ``safe_load``); ``pandas.read_pickle`` / ``.to_pickle``; and
the ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switch. Import aliases (``import numpy as np``,
``from torch import load``) are followed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = sorted((REPO / "src" / "fusionrank").rglob("*.py")) + sorted((REPO / "benchmarks").glob("*.py"))
"""The package, and the benchmark scripts (``benchmarks/peers`` runs peers' own code in
their own environments and is not scanned)."""

PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "shelve"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from the file's imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load`` (None for anything but a chain of names)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan(source: str, filename: str = "<source>") -> list[str]:
    """Every unsafe-loading construct in ``source``, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in modules:
                if m.split(".")[0] in PICKLING_MODULES:
                    hit(node, f"imports {m} (pickle)")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, aliases) or ""
            attr = node.func.attr if isinstance(node.func, ast.Attribute) else name.rsplit(".", 1)[-1]
            if name in ("torch.load", "torch.serialization.load"):
                if not _is_const(_keyword(node, "weights_only"), True):
                    hit(node, "torch.load without weights_only=True")
            elif name in ("torch.save", "torch.serialization.save"):
                hit(node, "torch.save writes a pickle (use safetensors)")
            elif name in ("numpy.load", "numpy.lib.npyio.load"):
                allow = _keyword(node, "allow_pickle")
                if allow is not None and not _is_const(allow, False):
                    hit(node, "numpy.load with allow_pickle")
            elif name.startswith("yaml.") and name.split(".", 1)[1] in UNSAFE_YAML:
                hit(node, f"{name} (only yaml.safe_load)")
            if attr in ("read_pickle", "to_pickle"):
                hit(node, f"{attr} (pickle)")
        elif isinstance(node, ast.Attribute):
            name = _dotted(node, aliases) or ""
            if name.startswith("yaml.") and name.endswith("Loader") and name[5:] not in SAFE_YAML_LOADERS:
                hit(node, f"{name} (only yaml.safe_load)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in node.value and not _is_docstring(node, tree):
                hit(node, "switches torch.load's weights_only off")
    return found


def _is_docstring(node: ast.Constant, tree: ast.AST) -> bool:
    for parent in ast.walk(tree):
        body = getattr(parent, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and body[0].value is node:
            return True
    return False


FORBIDDEN = {
    "import pickle": "import pickle\npickle.loads(b'')\n",
    "from pickle": "from pickle import loads\n",
    "import cPickle": "import cPickle\n",
    "import dill": "import dill as d\n",
    "joblib": "from joblib import load\nload('m.joblib')\n",
    "torch.load bare": "import torch\ntorch.load('w.pt')\n",
    "torch.load weights_only=False": "import torch\ntorch.load('w.pt', weights_only=False)\n",
    "torch.load aliased": "from torch import load as L\nL('w.pt')\n",
    "torch.save": "import torch\ntorch.save({}, 'w.pt')\n",
    "np.load allow_pickle": "import numpy as np\nnp.load('a.npy', allow_pickle=True)\n",
    "numpy.load allow_pickle variable": "import numpy\nok = True\nnumpy.load('a.npy', allow_pickle=ok)\n",
    "yaml.load": "import yaml\nyaml.load(open('c.yaml'), Loader=yaml.SafeLoader)\n",
    "yaml.unsafe_load": "import yaml\nyaml.unsafe_load('a: 1')\n",
    "yaml.full_load": "import yaml as y\ny.full_load('a: 1')\n",
    "yaml.Loader": "import yaml\nyaml.add_constructor('!x', None, Loader=yaml.Loader)\n",
    "pd.read_pickle": "import pandas as pd\npd.read_pickle('f.pkl')\n",
    "to_pickle": "def f(frame):\n    frame.to_pickle('f.pkl')\n",
    "weights_only switch": "import os\nos.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'\n",
}

ALLOWED = """'''Docstrings may say pickle, torch.load and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.'''
import numpy as np
import torch
import yaml
from safetensors.torch import load_file

torch.load("w.pt", map_location="cpu", weights_only=True)
np.load("a.npy")
np.load("a.npy", allow_pickle=False)
yaml.safe_load("a: 1")
yaml.safe_dump({"a": 1})
load_file("w.safetensors")
model.load_state_dict({})
"""


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_the_scanner_catches_each_forbidden_pattern(what: str) -> None:
    assert scan(FORBIDDEN[what]), f"the scan missed: {what}"


def test_the_scanner_allows_the_safe_ways() -> None:
    assert scan(ALLOWED) == []


def test_no_pickle_in_the_package_or_the_benchmarks() -> None:
    assert len(SCANNED) > 50  # the package is really there
    found = [f for path in SCANNED for f in scan(path.read_text(), str(path.relative_to(REPO)))]
    assert found == [], "\n".join(found)
