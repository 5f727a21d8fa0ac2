"""The end-to-end ranking run on ml-100k for several split seeds and ranking protocols, and
its committed table.

    .venv/bin/python benchmarks/hybrid_ranking.py --seeds 2020,7 \
        --protocols valid,valid+refit,stacked,stacked+refit

Runs ``fusionrank run configs/ml100k.yaml`` per seed and protocol (one run folder per seed,
so the models a protocol shares with another are fitted once; the ablation only for the
first seed and protocol) and writes ``benchmarks/results/hybrid_ranking.json`` and ``.md``:
every single model and the LightGBM ranker under each protocol (every single model is
measured under the ranker's protocol), the ratio to the best single model of the same run,
the candidate pool's headroom, and RecTools' figures on the same split from
``rectools_ml100k.json`` (its own venv: ``benchmarks/peers/rectools_ml100k.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from pathlib import Path
from typing import Any

from fusionrank.evaluation.table import format_table
from fusionrank.io import read_json, write_json
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import LTR, run_pipeline

RESULTS = Path(__file__).parent / "results"
NOTES = "## Against the target"


LABELS: dict[str, dict[str, Any]] = {
    "valid": {"labels": "valid"},
    "stacked": {"labels": "stacked"},
    "stacked8v": {"labels": "stacked", "folds": 8, "fold_fit": "train+valid"},
    "stacked3of8v": {"labels": "stacked", "folds": 8, "fold_fit": "train+valid", "fold_tables": 3},
}
"""The label protocols by name: valid, stacked (the config's folds), eight folds whose
models are fitted on valid too (``protocol.fold_fit``), and the first three of those
eight (``protocol.fold_tables``)."""


def protocol_settings(name: str) -> dict[str, Any]:
    """A name of :data:`LABELS`, optionally with ``+refit`` -> the config's protocol."""
    labels, _, refit = name.partition("+")
    if labels not in LABELS or refit not in ("", "refit"):
        raise SystemExit(f"unknown protocol {name!r}: use {', '.join(LABELS)}, and +refit")
    return {**LABELS[labels], "refit": refit == "refit"}


def rectools_rows() -> list[dict[str, Any]]:
    """RecTools' rows on the same splits, when its benchmark was run (its protocol names:
    ``valid`` fits on train, ``refit`` on train + valid)."""
    path = RESULTS / "rectools_ml100k.json"
    return list(read_json(path)["rows"]) if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml100k.yaml")
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--protocols", default="valid,valid+refit,stacked,stacked+refit")
    parser.add_argument(
        "--split",
        default=None,
        help="split kind instead of the config's (temporal-ratio ...: results in hybrid_ranking_<kind>.*)",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="ranker.tune: choose the ranker's settings among TUNING_GRID on the held-out label users",
    )
    parser.add_argument(
        "--no-ablation",
        action="store_true",
        help="skip the config's ablation (it refits the ranker ~15 times)",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    protocols = args.protocols.split(",")
    runs, rows = [], []
    for n, seed in enumerate(seeds):
        for p, protocol in enumerate(protocols):
            base = load_run_config(args.config)
            kind = args.split or base.split.kind
            config = dataclasses.replace(
                base,
                name=f"{base.name}-seed{seed}" if kind == "ratio" else f"{base.name}-{kind}-seed{seed}",
                split=dataclasses.replace(base.split, seed=seed, kind=kind),
                protocol=dataclasses.replace(base.protocol, **protocol_settings(protocol)),
                ranker=dataclasses.replace(base.ranker, tune=base.ranker.tune or args.tune),
                ablation=base.ablation and not args.no_ablation and n == 0 and p == 0,
                peers=None,
            )
            out = run_pipeline(config)
            models = out.metrics["models"]
            singles = {k: v["metrics"]["ndcg@10"] for k, v in models.items() if k != LTR}
            best = max(singles, key=lambda k: singles[k])
            ltr = models[LTR]
            for name, m in models.items():
                rows.append(
                    {
                        "seed": seed,
                        "protocol": out.metrics["protocol"],
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
                    "protocol": out.metrics["protocol"],
                    "best_single": best,
                    "best_single_ndcg@10": singles[best],
                    "ltr_ndcg@10": ltr["metrics"]["ndcg@10"],
                    "ltr_vs_best_single": ltr["metrics"]["ndcg@10"] / singles[best],
                    "ltr_stop_ndcg@10": ltr["stop_ndcg@10"],
                    "ranker_tuning": ltr.get("tuning", []),
                    "ranker_settings": ltr.get("settings"),
                    "dropped_groups": ltr["dropped_groups"],
                    "headroom": out.metrics["candidate_headroom"],
                    "candidate_recall": out.recall,
                    "ablation": out.ablation,
                    "time_s": out.time_s,
                }
            )
            print(
                f"seed {seed} {out.metrics['protocol']}: ranker {ltr['metrics']['ndcg@10']:.4f}, "
                f"best single {best} {singles[best]:.4f} ({ltr['metrics']['ndcg@10'] / singles[best]:.3f}x)",
                flush=True,
            )
    kind = args.split or load_run_config(args.config).split.kind
    split_name = "per-user random 8:1:1" if kind == "ratio" else f"{kind} 8:1:1"
    stem = "hybrid_ranking" if kind == "ratio" else f"hybrid_ranking_{kind}"
    peers = rectools_rows() if kind == "ratio" else []
    payload = {
        "dataset": "ml-100k",
        "split": f"{split_name}, full ranking",
        "config": args.config,
        "machine": f"{platform.machine()}, 2 CPU cores, no GPU",
        "rows": rows,
        "runs": runs,
        "rectools": peers,
    }
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"{stem}.json", payload)
    lines = [
        f"# Hybrid ranking on ml-100k, {split_name} split (`fusionrank run {args.config}`)",
        "",
        f"Command: `.venv/bin/python benchmarks/hybrid_ranking.py --seeds {args.seeds} "
        f"--protocols {args.protocols}{' --split ' + kind if args.split else ''}"
        f"{' --tune' if args.tune else ''}{' --no-ablation' if args.no_ablation else ''}`.",
        "Test split, metrics by full ranking; every single model is measured under the ranker's",
        "protocol (`valid`: fitted on train, the ranker's labels from valid; `stacked-5`: out-of-fold",
        "labels from 5 folds of train besides; `stacked-3of8+valid`: from 3 of 8 folds of train, their",
        "models fitted on the other 7 and on valid; `+refit`: every model refit on train + valid before",
        "test). Headroom: the NDCG@10 of a perfect reordering of the test candidates.",
        "",
        "| seed | protocol | best single | LightGBM ranker | ranker / best single | headroom | time s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {r['protocol']} | {r['best_single']} {r['best_single_ndcg@10']:.4f} "
            f"| {r['ltr_ndcg@10']:.4f} | {r['ltr_vs_best_single']:.3f}× | {r['headroom']['test']:.4f} "
            f"| {r['time_s']:.0f} |"
        )
    if peers:
        lines += [
            "",
            "RecTools 0.19.0 on the same splits (`rectools_ml100k.md`; its `valid` protocol fits on",
            "train, `refit` on train + valid), our ranker beside its best single and two-stage models:",
            "",
            "| seed | RecTools protocol | its best single | its best two-stage | our ranker "
            "| ÷ its single | ÷ its two-stage |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            theirs = "refit" if r["protocol"].endswith("+refit") else "valid"
            mine = [p for p in peers if p["seed"] == r["seed"] and p["protocol"] == theirs]
            if not mine:
                continue
            ndcg = lambda p: p["ndcg@10"]  # noqa: E731
            single = max((p for p in mine if not p["model"].startswith("two-stage")), key=ndcg)
            staged = max((p for p in mine if p["model"].startswith("two-stage")), key=ndcg)
            ours = r["ltr_ndcg@10"]
            lines.append(
                f"| {r['seed']} | {theirs} (ours: {r['protocol']}) | {single['model']} {ndcg(single):.4f} "
                f"| {staged['model']} {ndcg(staged):.4f} | {ours:.4f} "
                f"| {ours / ndcg(single):.3f}× | {ours / ndcg(staged):.3f}× |"
            )
    lines += ["", "## Every model", "", format_table(rows, list(rows[0]), markdown=True)]
    first = runs[0]
    if first["ablation"]:
        lines += [
            "",
            f"## Ablation (seed {first['seed']}, {first['protocol']}): the ranker refitted without each "
            "group or source",
            "",
            format_table(first["ablation"], list(first["ablation"][0]), markdown=True),
        ]
    path = RESULTS / f"{stem}.md"
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""  # the hand-written notes are kept
    path.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
