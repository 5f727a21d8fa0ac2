"""Kill -9 at several moments of ``fusionrank run`` and ``fusionrank train``: the rerun
ends with the same bytes as an uninterrupted run, and no stage is reused half-written.

(``fusionrank embed`` killed mid-job and resumed: tests/test_embed_engine.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import write_atomic
from typer.testing import CliRunner

from fusionrank.io import MARKER, read_json, verify_stage
from fusionrank.pipelines.cli import app
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import run_pipeline

CLI = [sys.executable, "-c", "from fusionrank.pipelines.cli import main; main()"]
RUN_CONFIG = {
    "name": "t",
    "dataset": "tiny",
    "modalities": [],
    "models": {
        "pop": {},
        "itemknn": {"k": 10},
        "ease": {"reg": 10.0},
        "bpr": {"epochs": 40, "patience": 0},
        "lightgcn": {"epochs": 10, "patience": 0},
    },
    "retrieval": {"n": 20, "sources": ["ease", "itemknn", "bpr", "lightgcn", "pop"]},
    "ranker": {"n_estimators": 300, "min_child_samples": 5, "early_stopping_rounds": 300},
    "evaluation": {"ks": [5, 10]},
    "ablation": False,
}

KILL_POINTS = {
    # moment: (the stage line to wait for, seconds to wait after it)
    "model fitting": ("  bpr: fitting", 0.3),
    "retrieval": ("candidates and features:", 0.0),
    "features": ("  valid:", 0.05),
    "ranker": ("ranker:", 0.1),
    "report": ("trees, test ndcg@10", 0.0),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_atomic(root / "tiny", "tiny", n_users=120, n_items=150, per_user=25)
    return root


def _config(root: Path, out: Path) -> Path:
    path = out.with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**RUN_CONFIG, "root": str(root), "out": str(out)}))
    return path


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> Path:
    """An uninterrupted run's folder."""
    out = tmp_path_factory.mktemp("reference") / "runs"
    return run_pipeline(load_run_config(_config(data_root, out)), log=lambda m: None).folder


def _kill_at(args: list[str], line: str, delay: float, timeout: float = 300) -> list[str]:
    """Start the CLI, SIGKILL it ``delay`` seconds after it prints ``line``; its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    seen: list[str] = []
    deadline = time.time() + timeout
    assert proc.stdout is not None
    for out in proc.stdout:
        seen.append(out.rstrip("\n"))
        if line in out:
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.time() < deadline, "the command did not reach the kill point in time"
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the command ended before the kill ({seen[-3:]})"
    return seen


def _assert_every_stage_verifies(folder: Path) -> None:
    markers = list(folder.rglob(MARKER))
    assert markers
    for marker in markers:
        assert verify_stage(marker.parent) is None, marker


@pytest.mark.parametrize(
    "moment", [m if m == "features" else pytest.param(m, marks=pytest.mark.slow) for m in KILL_POINTS]
)
def test_run_killed_then_rerun_equals_an_uninterrupted_run(moment, data_root, reference, tmp_path):
    path = _config(data_root, tmp_path / "runs")
    line, delay = KILL_POINTS[moment]
    _kill_at(["run", str(path)], line, delay)
    folder = tmp_path / "runs" / "t"
    assert not (folder / "metrics.json").exists(), "killed before the end: no final metrics"
    lines: list[str] = []
    run_pipeline(load_run_config(path), log=lines.append)
    assert (folder / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
    assert (folder / "ranker" / "model-0.txt").read_bytes() == (
        reference / "ranker" / "model-0.txt"
    ).read_bytes()
    _assert_every_stage_verifies(folder)
    assert not [p for p in folder.rglob(".*") if p.name != ".lock"], "temporary files left behind"


@pytest.mark.slow
def test_train_killed_while_saving_is_refused_by_recommend_then_rerun(data_root, tmp_path):
    args = ["train", "--dataset", "tiny", "--root", str(data_root), "--model", "bpr", "--epochs", "30"]
    args += ["--patience", "0", "--quiet", "--out"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "model"
    proc = subprocess.Popen(
        [*CLI, *args, str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 300
    while not (out / "model").exists():  # the save has begun
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / MARKER).exists()
    refused = CliRunner().invoke(app, ["recommend", "--run", str(out), "--user", "u1"])
    assert refused.exit_code == 2
    assert refused.output.startswith("error: ") and str(out) in refused.output
    assert "cannot be used" in refused.output or "is not a finished" in refused.output
    done = subprocess.run([*CLI, *args, str(out)], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    clean = tmp_path / "clean"
    again = subprocess.run([*CLI, *args, str(clean)], capture_output=True, env=env, timeout=300)
    assert again.returncode == 0
    assert read_json(out / "metrics.json")["metrics"] == read_json(clean / "metrics.json")["metrics"]
    weights = "model/weights.safetensors"
    assert (out / weights).read_bytes() == (clean / weights).read_bytes()
    assert verify_stage(out) is None
    ok = CliRunner().invoke(app, ["recommend", "--run", str(out), "--user", "u1", "--root", str(data_root)])
    assert ok.exit_code == 0, ok.output
