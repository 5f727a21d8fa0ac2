"""The 1M size of the scale benchmark as a test (slow: a few minutes on two cores).

A synthetic log of 1,000,000 interactions (6,900 users x 27,000 items, MovieLens-20M's
catalogue) through ``fusionrank data synth`` and ``fusionrank run`` in a child process:
the run completes, its peak RSS stays far below users x items x sources, the ranker is
at least the best single source, and every model sits below the planted oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_a_million_interactions_run_end_to_end_in_bounded_memory(tmp_path):
    env = {**os.environ, "FUSIONRANK_DATA": str(tmp_path / "data")}
    synth = [
        str(BIN / "fusionrank"),
        "data",
        "synth",
        "--name",
        "m1",
        "--users",
        "6900",
        "--items",
        "27000",
        "--interactions",
        "1000000",
    ]
    subprocess.run(synth, env=env, check=True, capture_output=True)
    config = {
        "name": "m1",
        "dataset": "m1",
        "out": str(tmp_path / "runs"),
        "modalities": [],
        "models": {
            "pop": {},
            "itemknn": {"k": 50},
            "ease": {"top_items": 5000},
            "bpr": {"epochs": 2, "batch_size": 8192, "patience": 2},
        },
        "retrieval": {"n": 50},
        "ranker": {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20, "max_users": 3000},
        "evaluation": {"ks": [10]},
        "ablation": False,
    }
    path = tmp_path / "m1.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([str(BIN / "fusionrank"), "run", str(path)], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    peak_gb = usage.ru_maxrss / 1024**2
    dense_gb = 6900 * 27000 * 4 * 4 / 1024**3  # users x items float32, once per source: 2.8 GB
    assert peak_gb < dense_gb, f"peak RSS {peak_gb:.1f} GB"
    metrics = json.loads((tmp_path / "runs" / "m1" / "metrics.json").read_text())
    ndcg = {m: r["metrics"]["ndcg@10"] for m, r in metrics["models"].items()}
    oracle = json.loads((tmp_path / "data" / "m1" / "synth.json").read_text())["oracle"]["metrics"]["ndcg@10"]
    best = max(v for m, v in ndcg.items() if m != "ltr")
    assert ndcg["ltr"] >= best, ndcg
    assert max(ndcg.values()) < oracle
    stages = json.loads((tmp_path / "runs" / "m1" / "timings.json").read_text())["stages_s"]
    assert set(stages) == {"split and content", "models", "features", "ranker", "report"}
