"""``fusionrank run`` with ``engine: ray``: candidates, feature rows and the ranker's test
predictions computed in Ray actors that load the run folder's stage outputs give the
same tables and the same metrics as the local engine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fusionrank.pipelines.config import ConfigError, parse_run_config
from fusionrank.pipelines.run import run_pipeline

pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("ray_instance")


def _raw(root: Path, out: Path, **extra) -> dict:
    return {
        "name": "r",
        "dataset": "tiny",
        "root": str(root),
        "out": str(out),
        "modalities": ["text"],
        "models": {
            "pop": {},
            "itemknn": {"k": 10},
            "ease": {"reg": 10.0},
            "sasrec": {"epochs": 2, "hidden": 16, "inner": 32, "max_len": 10},  # reads history by stage
        },
        "retrieval": {"n": 15},
        "features": {"chunk_size": 16},  # 30 users: 2 chunks per stage
        "ranker": {"n_estimators": 30, "min_child_samples": 5, "early_stopping_rounds": 10},
        "evaluation": {"ks": [5, 10]},
        "ablation": False,
        **extra,
    }


def test_the_ray_engine_writes_the_local_engines_tables_and_metrics(tiny_root, tmp_path):
    local = run_pipeline(parse_run_config(_raw(tiny_root, tmp_path / "local")), log=lambda _: None)
    lines: list[str] = []
    raw = _raw(tiny_root, tmp_path / "ray", engine="ray", ray={"actors": 2})
    on_ray = run_pipeline(parse_run_config(raw), log=lines.append)
    assert "  valid: 2 chunks of users on 2 Ray actors" in lines, lines  # 30 users, 16 per chunk at least
    for stage in ("valid", "test"):
        a = pd.read_parquet(local.folder / "features" / f"features_{stage}.parquet")
        b = pd.read_parquet(on_ray.folder / "features" / f"features_{stage}.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert on_ray.metrics["models"]["ltr"] == local.metrics["models"]["ltr"]
    assert on_ray.metrics["candidate_recall"] == local.metrics["candidate_recall"]
    assert (on_ray.folder / "ranker" / "model-0.txt").read_bytes() == (
        local.folder / "ranker" / "model-0.txt"
    ).read_bytes()


def test_the_engine_setting_is_checked(tiny_root, tmp_path):
    with pytest.raises(ConfigError, match="engine: expected 'local' or 'ray', got 'spark'"):
        parse_run_config(_raw(tiny_root, tmp_path, engine="spark"))
    with pytest.raises(ConfigError, match="ray.actors must be >= 1"):
        parse_run_config(_raw(tiny_root, tmp_path, ray={"actors": 0}))
