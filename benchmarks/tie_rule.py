"""What the one tie rule costs and what it moves: full-ranking evaluation with
``scoring.ranked_topk`` (higher score, then the smaller item index) against the plain
``torch.topk`` it replaced, side by side in one run, on ml-100k and on the synthetic 1M
dataset (MovieLens-20M's shape: 6,900 users, 27,000 items).

For each model the evaluation (``fr.evaluate``'s ranking at ks 5, 10, 20, 50) runs
``--repeats`` times with each top-k, alternated, and the median wall time is reported;
the figures of both are printed too, so the table says which metrics the rule moved.
Also checked: popularity's NDCG@10 asked with ``ks=(10,)`` and with ``ks=(5, 10, 20, 50)``.

    .venv/bin/python benchmarks/tie_rule.py            # -> benchmarks/results/tie_rule.{json,md}
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fusionrank as fr
import fusionrank.evaluation.ranking as ranking
from fusionrank.columns import TEST, TRAIN, VALID
from fusionrank.data.dataset import default_root
from fusionrank.data.synth import synth_dataset
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json
from fusionrank.scoring import ranked_topk

RESULTS = Path(__file__).resolve().parent / "results"
KS = (5, 10, 20, 50)


def plain_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluator's top-k before the rule: ``torch.topk``, ties in its own order."""
    return torch.topk(scores, min(k, scores.shape[1]), dim=1)


TOPKS: dict[str, Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]] = {
    "tie rule": ranked_topk,
    "torch.topk": plain_topk,
}


def evaluate_with(
    model: fr.Recommender, split: fr.Split, topk: str, ks: tuple[int, ...] = KS, inner: int = 1
) -> Any:
    """The evaluator's test ranking of ``model`` with the given top-k, and its seconds
    (the mean of ``inner`` back-to-back evaluations, for the short ones)."""
    ranking.ranked_topk = TOPKS[topk]  # type: ignore[assignment]
    try:
        truth, known = split.matrix(TEST), split.matrix(TRAIN, VALID)
        t0 = time.perf_counter()
        for _ in range(inner):
            result = evaluate_ranking(model.score, truth, known, EvalConfig(ks=ks))
        return result, (time.perf_counter() - t0) / inner
    finally:
        ranking.ranked_topk = ranked_topk  # type: ignore[assignment]


def measure(
    dataset: str, split: fr.Split, models: dict[str, dict], repeats: int, inner: int
) -> list[dict[str, Any]]:
    rows = []
    for name, settings in models.items():
        model = fr.build_model(name, **settings).fit(split)
        times: dict[str, list[float]] = {t: [] for t in TOPKS}
        results: dict[str, Any] = {}
        for _ in range(repeats):
            for topk in TOPKS:
                results[topk], seconds = evaluate_with(model, split, topk, inner=inner)
                times[topk].append(seconds)
        rule, plain = (statistics.median(times[t]) for t in TOPKS)
        row: dict[str, Any] = {
            "dataset": dataset,
            "model": name,
            "eval_s_rule": rule,
            "eval_s_topk": plain,
            "time_ratio": rule / plain,
        }
        for k in (10, 50):
            row[f"ndcg@{k}_rule"] = results["tie rule"].metrics[f"ndcg@{k}"]
            row[f"ndcg@{k}_topk"] = results["torch.topk"].metrics[f"ndcg@{k}"]
        if name == "pop":
            for topk in TOPKS:
                alone, _ = evaluate_with(model, split, topk, ks=(10,))
                row[f"pop_ndcg@10_ks10_{'rule' if topk == 'tie rule' else 'topk'}"] = alone.metrics["ndcg@10"]
        print(
            f"{dataset} {name}: {rule:.3f}s vs {plain:.3f}s ({rule / plain:.3f}x); "
            f"ndcg@10 {row['ndcg@10_rule']:.6f} vs {row['ndcg@10_topk']:.6f}",
            flush=True,
        )
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    table = [
        {
            "dataset": r["dataset"],
            "model": r["model"],
            "eval s (tie rule)": f"{r['eval_s_rule']:.3f}",
            "eval s (torch.topk)": f"{r['eval_s_topk']:.3f}",
            "time ratio": f"{r['time_ratio']:.3f}",
            "NDCG@10 rule": f"{r['ndcg@10_rule']:.6f}",
            "NDCG@10 topk": f"{r['ndcg@10_topk']:.6f}",
            "NDCG@50 rule": f"{r['ndcg@50_rule']:.6f}",
            "NDCG@50 topk": f"{r['ndcg@50_topk']:.6f}",
        }
        for r in result["rows"]
    ]
    lines = [
        "# The tie rule: evaluation time and the figures it moves",
        "",
        f"`{result['command']}` on {result['machine']}; median of {result['repeats']} alternated "
        "samples per model, each the mean of several back-to-back evaluations on ml-100k and one on "
        "synth-1m (full ranking of the test users, ks 5, 10, 20, 50).",
        "",
        format_table(table, list(table[0]), markdown=True),
        "",
        "Popularity's NDCG@10 asked alone (`ks=(10,)`) and beside other cut-offs (`ks=(5, 10, 20, 50)`):",
        "",
    ]
    for r in result["rows"]:
        if r["model"] == "pop":
            lines.append(
                f"- {r['dataset']}: tie rule {r['pop_ndcg@10_ks10_rule']:.6f} / {r['ndcg@10_rule']:.6f}; "
                f"torch.topk {r['pop_ndcg@10_ks10_topk']:.6f} / {r['ndcg@10_topk']:.6f}"
            )
    slowest = max(r["time_ratio"] for r in result["rows"])
    lines += ["", f"Largest time ratio (rule / torch.topk): {slowest:.3f} (target: within 1.05).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="ml-100k only, 2 repeats")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    repeats = 2 if args.quick else args.repeats
    ml = fr.split(fr.load_dataset("ml-100k", default_root()), "ratio", seed=2020)
    rows = measure("ml-100k", ml, {"pop": {}, "itemknn": {}, "ease": {}}, repeats, inner=10)
    if not args.quick:
        with tempfile.TemporaryDirectory() as work:
            data = synth_dataset("synth-1m", root=work, users=6_900, items=27_000, interactions=1_000_000)
            split = fr.split(data, "ratio", seed=2020)
            rows += measure("synth-1m", split, {"pop": {}, "itemknn": {}}, repeats, inner=1)
    result = {
        "command": "python benchmarks/tie_rule.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "repeats": repeats,
        "rows": rows,
    }
    if args.quick:
        print(markdown(result))
        return
    write_json(RESULTS / "tie_rule.json", result)
    (RESULTS / "tie_rule.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
