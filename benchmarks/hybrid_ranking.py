"""The end-to-end ranking run on ml-100k for one or more split seeds, and its committed table.

    .venv/bin/python benchmarks/hybrid_ranking.py --seeds 2020,7

Runs ``fusionrank run configs/ml100k.yaml`` per seed (cached stages are reused; the
ablation only for the first seed) and writes ``benchmarks/results/hybrid_ranking.json``
and ``.md``: every single model, the LightGBM ranker, the ratio to the best single model
of the same run, RecBole's best figure from ``collab_vs_peers.json``, candidate recall and
the ablation.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from pathlib import Path

from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import LTR, run_pipeline
from fusionrank.pipelines.stages.report import peer_rows

RESULTS = Path(__file__).parent / "results"
NOTES = "## Against the target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml100k.yaml")
    parser.add_argument("--seeds", default="2020,7")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    peers = [r for r in peer_rows(RESULTS) if r["source"] == "collab_vs_peers.json"]
    best_peer = max(peers, key=lambda r: r["ndcg@10"]) if peers else None
    runs, rows = [], []
    for n, seed in enumerate(seeds):
        base = load_run_config(args.config)
        config = dataclasses.replace(
            base,
            name=f"{base.name}-seed{seed}" if seed != base.split.seed else base.name,
            split=dataclasses.replace(base.split, seed=seed),
            ablation=base.ablation and n == 0,
        )
        out = run_pipeline(config)
        models = out.metrics["models"]
        singles = {k: v["metrics"]["ndcg@10"] for k, v in models.items() if k != LTR}
        best = max(singles, key=singles.get)
        ltr = models[LTR]["metrics"]
        for name, m in models.items():
            rows.append(
                {
                    "seed": seed,
                    "model": name,
                    "ndcg@10": m["metrics"]["ndcg@10"],
                    "recall@10": m["metrics"]["recall@10"],
                    "mrr@10": m["metrics"]["mrr@10"],
                    "vs best single": m["metrics"]["ndcg@10"] / singles[best],
                }
            )
        runs.append(
            {
                "seed": seed,
                "best_single": best,
                "best_single_ndcg@10": singles[best],
                "ltr_ndcg@10": ltr["ndcg@10"],
                "ltr_vs_best_single": ltr["ndcg@10"] / singles[best],
                "ltr_vs_best_recbole": ltr["ndcg@10"] / best_peer["ndcg@10"] if best_peer else None,
                "candidate_recall": out.recall,
                "ablation": out.ablation,
                "time_s": out.time_s,
            }
        )
    payload = {
        "dataset": "ml-100k",
        "protocol": "per-user random 8:1:1, full ranking; ranker labels from valid; see the run report",
        "config": args.config,
        "machine": f"{platform.machine()}, 2 CPU cores, no GPU",
        "best_recbole": best_peer,
        "rows": rows,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "hybrid_ranking.json", payload)
    lines = [
        "# Hybrid ranking on ml-100k (`fusionrank run configs/ml100k.yaml`)",
        "",
        f"Command: `.venv/bin/python benchmarks/hybrid_ranking.py --seeds {args.seeds}`.",
        "Test split, metrics by full ranking. The last column is the ratio to the best single model",
        "of the same run.",
        "",
        format_table(rows, list(rows[0]), markdown=True),
        "",
        "| seed | best single | LightGBM ranker | ranker / best single | ranker / best RecBole |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        vs_peer = f"{r['ltr_vs_best_recbole']:.3f}×" if r["ltr_vs_best_recbole"] else "-"
        lines.append(
            f"| {r['seed']} | {r['best_single']} {r['best_single_ndcg@10']:.4f} | {r['ltr_ndcg@10']:.4f} "
            f"| {r['ltr_vs_best_single']:.3f}× | {vs_peer} |"
        )
    if best_peer:
        lines += [
            "",
            f"Best RecBole model in `collab_vs_peers.json`: {best_peer['model']} {best_peer['ndcg@10']:.4f}.",
        ]
    first = runs[0]
    if first["ablation"]:
        lines += [
            "",
            f"## Ablation (seed {first['seed']}): the ranker refitted without each group or source",
            "",
            format_table(first["ablation"], list(first["ablation"][0]), markdown=True),
        ]
    path = RESULTS / "hybrid_ranking.md"
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""  # the hand-written notes are kept
    path.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
