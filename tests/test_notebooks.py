"""The notebooks run top to bottom (reduced settings), so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
NAMES = ["01_quickstart.ipynb", "02_cold_start.ipynb", "03_hybrid_ranking.ipynb"]


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == NAMES


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
