"""The ranker's seed-to-seed spread: the same label tables, candidate depth and settings,
fitted with several ranker seeds (which draw the stopping users or folds and LightGBM's
sampling), for one held-out share against ``stop_folds`` cross-fitted boosters and for
the lambdarank and pointwise (``binary``) objectives. Test NDCG@10 by full ranking.

It reads finished runs' feature tables (``ranker_settings.py --work DIR`` leaves them:
``DIR/<prefix><labels>-<seed>``), fits only rankers, and caches nothing.

    .venv/bin/python benchmarks/ranker_seeds.py --runs /tmp/rs/q-valid-2020,/tmp/rs/q-valid-7
        # -> benchmarks/results/ranker_seeds.json (merged by run name)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from fusionrank.columns import VALID
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.features.shards import ShardedTable
from fusionrank.io import read_json, write_json
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import RunSource
from fusionrank.pipelines.stages.ranker import fit_ranker, label_table, ranker_metrics, stacked_table
from fusionrank.ranker.lgbm import RankerConfig

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS: dict[str, dict[str, Any]] = {
    "lambdarank/held-out": {"objective": "lambdarank", "stop_folds": 0},
    "lambdarank/stop_folds-5": {"objective": "lambdarank", "stop_folds": 5},
    "binary/held-out": {"objective": "binary", "stop_folds": 0},
    "binary/stop_folds-5": {"objective": "binary", "stop_folds": 5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="comma-separated run folders with feature tables")
    parser.add_argument("--seeds", default="2020,11,12,13", help="ranker seeds")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="names of VARIANTS, comma-separated")
    parser.add_argument("--depth", type=int, default=30, help="candidates per source kept (one depth)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_seeds.json")
    args = parser.parse_args()
    results = read_json(args.out) if args.out.exists() else {}
    evaluation = EvalConfig(ks=(10,), metrics=("ndcg",))
    for folder in (Path(p) for p in args.runs.split(",")):
        config = load_run_config(folder / "config.json")
        _, split = RunSource(config.dataset, config.root, config.split).open()
        base = dataclasses.replace(config.ranker, candidates=(args.depth,), tune=False)
        features = folder / "features"
        tables = {p.stem.removeprefix("features_"): p for p in sorted(features.glob("features_*.parquet"))}
        tables.pop("test")
        stop_pool = None
        if len(tables) > 1:
            labels, stop_pool = stacked_table(tables, base, split.n_users)
        else:
            labels = label_table(tables[VALID], base)
        columns = ShardedTable(tables[VALID]).feature_names()
        ease = read_json(folder / "metrics.json")["models"]["ease"]["metrics"]["ndcg@10"]
        row: dict[str, Any] = {"protocol": config.protocol.name, "depth": args.depth, "ease": ease}
        for name in args.variants.split(","):
            scores, seconds = [], []
            for seed in (int(s) for s in args.seeds.split(",")):
                start = time.perf_counter()
                ranker_config: RankerConfig = dataclasses.replace(base, seed=seed, **VARIANTS[name])
                ranker = fit_ranker(ranker_config, labels, columns, stop_pool=stop_pool)
                test = ranker_metrics(ranker, features / "features_test.parquet", split, evaluation)
                scores.append(test.metrics["ndcg@10"])
                seconds.append(time.perf_counter() - start)
            row[name] = {
                "ndcg@10": scores,
                "mean": float(np.mean(scores)),
                "sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                "ratio_to_ease": float(np.mean(scores)) / ease,
                "seconds_per_fit": float(np.mean(seconds)),
            }
            print(folder.name, name, [round(s, 4) for s in scores], f"mean {np.mean(scores):.4f}", flush=True)
        results[folder.name] = row
        write_json(args.out, results)


if __name__ == "__main__":
    main()
