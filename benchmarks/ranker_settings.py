"""Ranker settings beside the demo's, on the same models and feature tables: ``demo`` (the
demo config's ranker settings, the baseline), ``bags`` (boosters averaged, each with its own
seed and stopping users) and ``tune`` (the setting of ``TUNING_GRID`` that ranks best the
held-out label users that did not stop it), ``cf5`` (five cross-fitted boosters: each label
user stops one), ``binary-cf5`` (those with the pointwise objective) and ``tune-cf5``; with
stacked labels and every candidate kept unless ``--labels`` / ``--depths`` say otherwise.

Runs reuse the cached models and tables of ``candidate_depth.py`` when given its ``--work``
and ``--prefix``; only the ranker stage runs again. Test NDCG@10 by full ranking.

    .venv/bin/python benchmarks/ranker_settings.py --variants demo,bags3,tune --work /tmp/depth
        # -> benchmarks/results/ranker_settings.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from fusionrank.io import read_json, write_json
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import run_pipeline

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS: dict[str, dict[str, Any]] = {
    "demo": {},
    "bags3": {"bags": 3},
    "tune": {"tune": True},
    "cf5": {"stop_folds": 5},
    "binary-cf5": {"objective": "binary", "stop_folds": 5},
    "tune-cf5": {"tune": True, "stop_folds": 5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml100k.yaml")
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--variants", default="demo,bags3,tune")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--prefix", default="depth-")
    parser.add_argument("--labels", choices=("stacked", "valid"), default="stacked")
    parser.add_argument(
        "--depths",
        choices=("all", "config"),
        default="all",
        help="all: every candidate kept; config: the config's candidate depths (chosen on validation)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_settings.json")
    args = parser.parse_args()
    base = load_run_config(args.config)
    results = read_json(args.out) if args.out.exists() else {}
    depths = () if args.depths == "all" else base.ranker.candidates
    plain = (args.labels, args.depths) == ("stacked", "all")
    key = "" if plain else f" ({args.labels}, depths {args.depths})"
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = dataclasses.replace(
                base,
                name=f"{args.prefix}{args.labels}-{seed}",
                out=str(args.work),
                split=dataclasses.replace(base.split, seed=seed),
                protocol=dataclasses.replace(base.protocol, labels=args.labels),
                ranker=dataclasses.replace(base.ranker, candidates=depths, **VARIANTS[variant]),
                ablation=False,
                peers=None,
            )
            start = time.perf_counter()
            run = run_pipeline(config)
            models = run.metrics["models"]
            ease, ltr = models["ease"]["metrics"]["ndcg@10"], models["ltr"]["metrics"]["ndcg@10"]
            tuning = run.folder / "ranker" / "tuning.json"
            row = {
                "ease": ease,
                "ltr": ltr,
                "ratio": ltr / ease,
                "ranker_s": round(time.perf_counter() - start),
                "tuning": read_json(tuning) if tuning.exists() else None,
            }
            results.setdefault(variant + key, {})[str(seed)] = row
            write_json(args.out, results)
            print(variant, seed, {k: v for k, v in row.items() if k != "tuning"}, flush=True)


if __name__ == "__main__":
    main()
