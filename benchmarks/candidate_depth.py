"""Candidates per source chosen on validation (``ranker.candidates``) against keeping every
retrieved candidate, on the ml-100k demo config (``configs/ml100k.yaml``, no ablation).

For each seed and label protocol the run is made twice in one folder: the models and the
feature tables are the same (cached), only the ranker stage differs. Test NDCG@10 by full
ranking; the depth is chosen by the held-out label users' NDCG over the whole pool, never
by test.

    .venv/bin/python benchmarks/candidate_depth.py --seeds 2020,7 --labels valid,stacked \\
        --work /tmp/depth   # -> benchmarks/results/candidate_depth.{json,md}
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from pathlib import Path
from typing import Any

from fusionrank.io import write_json
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import run_pipeline

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml100k.yaml")
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--labels", default="valid,stacked")
    parser.add_argument("--work", type=Path, required=True, help="where the runs go")
    parser.add_argument("--prefix", default="depth-", help="run names: <prefix><labels>-<seed>")
    args = parser.parse_args()
    base = load_run_config(args.config)
    depths = base.ranker.candidates or (100, 50, 30)
    rows: list[dict[str, Any]] = []
    for labels in args.labels.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            row: dict[str, Any] = {"labels": labels, "seed": seed}
            for variant, candidates in (("chosen", depths), ("all", ())):
                config = dataclasses.replace(
                    base,
                    name=f"{args.prefix}{labels}-{seed}",
                    out=str(args.work),
                    split=dataclasses.replace(base.split, seed=seed),
                    protocol=dataclasses.replace(base.protocol, labels=labels),
                    ranker=dataclasses.replace(base.ranker, candidates=candidates),
                    ablation=False,
                    peers=None,
                )
                models = run_pipeline(config).metrics["models"]
                ltr = models["ltr"]
                row["ease"] = models["ease"]["metrics"]["ndcg@10"]
                row[variant] = ltr["metrics"]["ndcg@10"]
                if variant == "chosen":
                    row["depth"], row["depth_scores"] = ltr["candidates"], ltr["depth_scores"]
            rows.append(row)
            print(row, flush=True)
    write_json(
        RESULTS / "candidate_depth.json",
        {"config": args.config, "depths": list(depths), "machine": platform.machine(), "rows": rows},
    )
    lines = [
        "# Candidates per source chosen on validation (`benchmarks/candidate_depth.py`)",
        "",
        f"`{args.config}` without the ablation; depths tried {list(depths)}, chosen by the",
        "held-out label users' NDCG@10 over the whole retrieved pool (half of them stop each fit,",
        "the other half compare the depths); the same models and feature tables for both columns.",
        "Test NDCG@10, full ranking.",
        "",
        "| labels | seed | EASE | ranker, all candidates | ranker, chosen depth | depth "
        "| ÷ EASE (all) | ÷ EASE (chosen) | held-out pool NDCG per depth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tried = ", ".join(f"{d}: {v:.4f}" for d, v in r["depth_scores"].items())
        lines.append(
            f"| {r['labels']} | {r['seed']} | {r['ease']:.4f} | {r['all']:.4f} | {r['chosen']:.4f} "
            f"| {r['depth']} "
            f"| {r['all'] / r['ease']:.3f}× | {r['chosen'] / r['ease']:.3f}× | {tried} |"
        )
    (RESULTS / "candidate_depth.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
