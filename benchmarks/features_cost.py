"""The features stage at 20M interactions before and after candidate-only source features:
the committed ``scale.json`` row (before) beside a new ``scale.py --sizes 20m`` run (after).

    .venv/bin/python benchmarks/scale.py --sizes 20m --work /work/scale-work --results /tmp/scale20m
    .venv/bin/python benchmarks/features_cost.py /tmp/scale20m/scale.json \
        --commit <the commit the new run measured>  # -> benchmarks/results/features_cost.{json,md}

The target (issue 23): the 20M features stage at most a third of the committed figure,
the ranker's test NDCG@10 within ±0.002 of it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def row(size: dict[str, Any]) -> dict[str, Any]:
    stages = size["stages_s"]
    ndcg = size["ndcg@10"]
    return {
        "run_s": size["run_s"],
        "models_s": stages["models"],
        "features_s": stages["features"],
        "ranker_s": stages["ranker"],
        "peak_rss_mb": size["peak_rss_mb"],
        "ease_ndcg@10": ndcg["ease"],
        "ltr_ndcg@10": ndcg["ltr"],
        "candidate_recall_test": size.get("candidate_recall_test"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("after", type=Path, help="scale.json of the new 20m run")
    parser.add_argument("--before", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--commit", required=True, help="the commit the new run measured")
    parser.add_argument("--note", default="", help="a line on the machine's load during the run")
    args = parser.parse_args()
    pick = lambda path: next(s for s in json.loads(path.read_text())["sizes"] if s["size"] == "20m")  # noqa: E731
    before, after = row(pick(args.before)), row(pick(args.after))
    ratio = after["features_s"] / before["features_s"]
    delta = after["ltr_ndcg@10"] - before["ltr_ndcg@10"]
    payload = {
        "before": before,
        "after": after,
        "commit": args.commit,
        "features_ratio": ratio,
        "ltr_delta": delta,
        "note": args.note,
    }
    (RESULTS / "features_cost.json").write_text(json.dumps(payload, indent=2) + "\n")
    names = [
        ("run_s", "run s", "{:.0f}"),
        ("models_s", "models s", "{:.0f}"),
        ("features_s", "features s", "{:.0f}"),
        ("ranker_s", "ranker s", "{:.0f}"),
        ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
        ("ease_ndcg@10", "EASE NDCG@10", "{:.4f}"),
        ("ltr_ndcg@10", "ranker NDCG@10", "{:.4f}"),
    ]
    lines = [
        "# Features stage at 20M interactions (`benchmarks/features_cost.py`)",
        "",
        f"Before: the committed `scale.json` 20m row. After: `scale.py --sizes 20m` at commit {args.commit}",
        "(candidate-only source features: each source's top-N and its scores of the candidate",
        "pairs; co-occurrence neighbours once per training matrix; EASE by `embedding_bag`).",
        "Same synthetic data shape, config and machine (x86_64, 2 cores).",
        *(["", args.note] if args.note else []),
        "",
        "| | " + " | ".join(n for _, n, _ in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, r in (("before", before), ("after", after)):
        lines.append(f"| {label} | " + " | ".join(f.format(r[k]) for k, _, f in names) + " |")
    lines += [
        "",
        f"- features stage ×{ratio:.2f} (target ≤ 0.33: {'met' if ratio <= 1 / 3 else 'missed'})",
        f"- ranker NDCG@10 {delta:+.4f} (target within ±0.002: {'met' if abs(delta) <= 0.002 else 'missed'})",
        "",
    ]
    (RESULTS / "features_cost.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
