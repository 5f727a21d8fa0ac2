"""The notebooks run top to bottom (reduced settings), so they never rot, and the committed
files are exactly what ``notebooks/make_notebooks.py`` writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", FOLDER / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_are_what_the_generator_writes(tmp_path):
    generator = _generator()
    assert [p.name for p in NOTEBOOKS] == sorted(generator.NOTEBOOKS)
    for path in generator.write(tmp_path):
        committed = FOLDER / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} differs from the generator: run .venv/bin/python notebooks/make_notebooks.py"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, ml100k_root, monkeypatch):
    monkeypatch.setenv("FUSIONRANK_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("FUSIONRANK_DATA", str(ml100k_root))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    if path.name.startswith("03"):
        assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots display
