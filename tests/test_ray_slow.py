"""Ray beyond one process (slow: each starts its own Ray and takes about a minute or more).

- Two Ray nodes on this machine (``ray start --head --num-cpus 1`` and ``ray start
  --address ... --num-cpus 1``), joined by ``fusionrank embed --engine ray --address``:
  both nodes embed shards and the vectors equal the local engine's.
- The ranker on Ray Train (2 workers) reaches the local ranker's test NDCG@10 on ml-100k
  within 0.005, with the same candidates and features (only the ranker stage reruns).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusionrank.data.vectors import read_vectors
from fusionrank.encoders.tiny import save_tiny_bert
from fusionrank.pipelines.config import parse_run_config
from fusionrank.pipelines.run import run_pipeline

pytest.importorskip("ray")
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(folder: str) -> None:
    """Stop exactly the Ray processes of one cluster (their command lines name its folder);
    ``ray stop`` would stop every Ray on the machine."""
    subprocess.run(["pkill", "-f", folder], check=False)
    for _ in range(50):
        if subprocess.run(["pgrep", "-f", folder], capture_output=True).returncode != 0:
            return
        time.sleep(0.2)
    subprocess.run(["pkill", "-9", "-f", folder], check=False)


def test_an_embed_job_spreads_over_two_nodes_and_matches_local(tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    catalogue = tmp_path / "catalogue.csv"
    titles = [f"Film {k} " + "word " * (k % 7) for k in range(60)]
    pd.DataFrame({"item_id": [f"i{k}" for k in range(60)], "title": titles}).to_csv(catalogue, index=False)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # a private test cluster
    folder, port = tempfile.mkdtemp(prefix="fr2n-"), _free_port()
    ray = str(BIN / "ray")
    head = [ray, "start", "--head", "--num-cpus", "1", "--port", str(port), "--temp-dir", folder]
    try:
        subprocess.run([*head, "--include-dashboard", "false"], env=env, check=True, capture_output=True)
        join = [ray, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1"]
        subprocess.run(join, env=env, check=True, capture_output=True)
        embed = [str(BIN / "fusionrank"), "embed", "--catalogue", str(catalogue), "--model", str(bert)]
        embed += ["--fields", "title", "--shard-size", "10", "--quiet"]
        on_ray = [*embed, "--out", str(tmp_path / "ray"), "--engine", "ray", "--address", f"127.0.0.1:{port}"]
        done = subprocess.run([*on_ray, "--actors", "2"], env=env, capture_output=True, text=True)
    finally:
        _stop(folder)
    assert done.returncode == 0, done.stderr[-3000:]
    spread = re.search(r"ray: 6 shards on (\d+) node\(s\) \((.*)\)", done.stderr)  # the engine logs to stderr
    assert spread and spread.group(1) == "2", done.stderr  # both nodes embedded shards
    subprocess.run([*embed, "--out", str(tmp_path / "local")], env=env, check=True, capture_output=True)
    (ids_ray, vecs_ray), (ids_local, vecs_local) = (
        read_vectors(tmp_path / "ray"),
        read_vectors(tmp_path / "local"),
    )
    assert list(ids_ray) == list(ids_local) and len(ids_ray) == 60
    np.testing.assert_allclose(vecs_ray, vecs_local, atol=1e-5)


def test_the_ranker_on_ray_reaches_the_local_ranker_on_ml100k(ml100k_root, tmp_path):
    raw = {
        "name": "ray-ranker",
        "dataset": "ml-100k",
        "root": str(ml100k_root),
        "out": str(tmp_path / "runs"),
        "split": {"kind": "ratio", "seed": 2020},
        "modalities": [],
        "models": {"pop": {}, "itemknn": {}, "ease": {}},
        "retrieval": {"n": 100},
        "evaluation": {"ks": [10]},
        "ablation": False,
    }
    local = run_pipeline(parse_run_config(raw), log=lambda _: None).metrics["models"]["ltr"]["metrics"][
        "ndcg@10"
    ]
    lines: list[str] = []
    raw["ranker"] = {"engine": "ray", "workers": 2}
    on_ray = run_pipeline(parse_run_config(raw), log=lines.append).metrics["models"]["ltr"]
    assert sum("cached" in line for line in lines) >= 2, lines  # same models and features; only the ranker
    assert abs(on_ray["metrics"]["ndcg@10"] - local) <= 0.005, (on_ray["metrics"]["ndcg@10"], local)
    assert on_ray["best_iteration"] >= 1
