"""Calibration against RecBole 1.2.1 on MovieLens-100K (per-user random 8:1:1, full ranking).

Runs RecBole's Pop and ItemKNN twice: on RecBole's own RO split of ml-100k (its protocol,
its shuffle) and on our saved split written as RecBole benchmark files (identical rows),
then ours on our split, and prints them side by side. Writes
``benchmarks/results/recbole_calibration.{json,md}``.

    make recbole-venv           # once: RecBole in its own venv
    .venv/bin/python benchmarks/peers/recbole_ml100k.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from recbole_runner import base_config, run_job, write_benchmark_files  # noqa: E402

import fusionrank as fr  # noqa: E402
from fusionrank.data.dataset import default_root, load_dataset  # noqa: E402
from fusionrank.data.splits import SplitConfig, prepare_split  # noqa: E402
from fusionrank.evaluation.table import format_table  # noqa: E402
from fusionrank.io import write_json  # noqa: E402

METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10")
POP_NOTE = (
    "RecBole 1.2.1 Pop counts with `item_cnt[item] = item_cnt[item] + 1` on a batch: with "
    "repeated indices in one batch the tensor update counts an item once per batch, not once "
    "per interaction, so its 'popularity' is the number of training batches an item occurs in. "
    "That ordering is far from true popularity; ours counts every training interaction."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=HERE.parent / "results" / "recbole_calibration")
    args = parser.parse_args()

    data = load_dataset("ml-100k", args.root)
    split = prepare_split(data, SplitConfig(kind="ratio", seed=args.seed))
    work = HERE.parent / ".work"
    bench_name = "ml-100k-fusionrank"
    write_benchmark_files(split, work / bench_name, bench_name)

    rows = []
    for model in ("Pop", "ItemKNN"):
        own = run_job(model, "ml-100k", args.root.resolve(), base_config(args.seed))
        rows.append(
            {
                "system": "RecBole",
                "model": model,
                "split": "RecBole's RO 8:1:1",
                **{m: own["test"].get(m) for m in METRICS},
                "time_s": own["timings"]["total_s"],
            }
        )
        cfg = {**base_config(args.seed), "benchmark_filename": ["train", "valid", "test"]}
        cfg.pop("eval_args")
        cfg["eval_args"] = {"group_by": "user", "order": "RO", "mode": "full"}
        same = run_job(model, bench_name, work.resolve(), cfg)
        rows.append(
            {
                "system": "RecBole",
                "model": model,
                "split": "ours (identical rows)",
                **{m: same["test"].get(m) for m in METRICS},
                "time_s": same["timings"]["total_s"],
            }
        )
    for name in ("Pop", "ItemKNN"):
        res = fr.evaluate(fr.build_model(name.lower()).fit(split), split, ks=(10, 20))
        rows.append(
            {
                "system": "fusionrank",
                "model": name,
                "split": "ours",
                **{m: res.metrics[m] for m in METRICS},
                "time_s": res.timings["fit_s"] + res.timings["evaluate_s"],
            }
        )

    def pick(system, model, split_label):
        return next(r for r in rows if (r["system"], r["model"], r["split"]) == (system, model, split_label))

    ours, theirs = pick("fusionrank", "ItemKNN", "ours"), pick("RecBole", "ItemKNN", "ours (identical rows)")
    gaps = {m: (ours[m] - theirs[m]) / theirs[m] for m in ("ndcg@10", "recall@10")}
    table = format_table(rows, ["system", "model", "split", *METRICS, "time_s"])
    print(table)
    print(
        "ItemKNN relative gap (ours vs RecBole, identical rows): "
        + ", ".join(f"{k} {v:+.2%}" for k, v in gaps.items())
    )
    payload = {
        "dataset": "ml-100k",
        "protocol": f"per-user random 8:1:1, full ranking, seed {args.seed}",
        "rows": rows,
        "itemknn_relative_gap": gaps,
        "pop_note": POP_NOTE,
    }
    write_json(args.out.with_suffix(".json"), payload)
    md = [
        "# Calibration against RecBole 1.2.1 — ml-100k, per-user random 8:1:1, full ranking",
        "",
        "Produced by `.venv/bin/python benchmarks/peers/recbole_ml100k.py` (one run, both systems).",
        "RecBole ran twice: on its own RO split and on our split written as benchmark files.",
        "",
        format_table(rows, ["system", "model", "split", *METRICS, "time_s"], markdown=True),
        "",
        "ItemKNN relative gap, ours vs RecBole on identical rows: "
        + ", ".join(f"{k} {v:+.2%}" for k, v in gaps.items())
        + " (target: within ±5%).",
        "",
        f"**Pop is not a calibration point.** {POP_NOTE}",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
