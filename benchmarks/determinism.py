"""What bitwise repetition costs: each trained model and the LightGBM ranker fitted on
ml-100k with ``deterministic`` on (the default) and off, side by side in one run, and
whether two fits repeat bit for bit in each mode.

    .venv/bin/python benchmarks/determinism.py

Writes ``benchmarks/results/determinism.{json,md}``. Models train a fixed number of
epochs without validation, so both modes do the same work.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import fusionrank as fr
from fusionrank.columns import TEST, TRAIN, USER_IDX, VALID
from fusionrank.data.dataset import default_root
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json
from fusionrank.ranker.lgbm import LTRRanker, RankerConfig

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {
    "bpr": {"epochs": 10},
    "neumf": {"epochs": 3},
    "lightgcn": {"epochs": 5},
    "sasrec": {"epochs": 5},
}


def fit_model(split: fr.Split, name: str, deterministic: bool) -> tuple[float, np.ndarray]:
    """Seconds to fit, and the scores of the first 64 users (to compare two fits)."""
    model = fr.build_model(
        name, **MODELS[name], validation=False, deterministic=deterministic, progress=False
    )
    t0 = time.perf_counter()
    model.fit(split)
    seconds = time.perf_counter() - t0
    model.at_stage(TEST)
    return seconds, model.score(np.arange(64))


def ranker_table(split: fr.Split) -> pd.DataFrame:
    """A small learning-to-rank table: EASE and popularity scores of 100 EASE candidates."""
    ease = fr.build_model("ease").fit(split)
    train, truth = split.matrix(TRAIN), split.matrix(VALID)
    pop = np.asarray(train.sum(axis=0)).ravel()
    rows = []
    users = np.arange(split.n_users)
    scores = ease.score(users)
    scores[train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    for u in users:
        items = top[u]
        rows.append(
            pd.DataFrame(
                {
                    USER_IDX: u,
                    "ease": scores[u, items],
                    "rank": np.arange(100),
                    "pop": pop[items],
                    "label": truth[u, items].toarray().ravel() > 0,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def fit_ranker(table: pd.DataFrame, deterministic: bool) -> tuple[float, str]:
    ranker = LTRRanker(RankerConfig(deterministic=deterministic, early_stopping_rounds=50))
    t0 = time.perf_counter()
    ranker.fit(table, ["ease", "rank", "pop"])
    return time.perf_counter() - t0, ranker.boosters[0].model_to_string()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root())
    args = parser.parse_args()
    split = fr.split(fr.load_dataset("ml-100k", args.root), "ratio", seed=2020)
    seq = fr.split(fr.load_dataset("ml-100k", args.root), "leave-last", seed=2020)
    rows = []
    for name in MODELS:
        on_split = seq if name == "sasrec" else split
        timed = {}
        for deterministic in (True, False, True, False):  # interleaved: drift in load hits both
            seconds, scores = fit_model(on_split, name, deterministic)
            timed.setdefault(deterministic, []).append((seconds, scores))
        rows.append(_row(name, timed))
    table = ranker_table(split)
    timed = {}
    for deterministic in (True, False, True, False):
        seconds, text = fit_ranker(table, deterministic)
        timed.setdefault(deterministic, []).append((seconds, text))
    rows.append(_row("lightgbm ranker", timed))
    write_json(RESULTS / "determinism.json", {"rows": rows, "threads": _threads()})
    md = [
        "# What bitwise repetition costs (`benchmarks/determinism.py`)",
        "",
        f"ml-100k, this 2-core CPU ({_threads()} torch threads). Each model is fitted twice with",
        "`deterministic: true` and twice with `false`, interleaved, fixed epochs, no validation;",
        "the time is the mean of the two fits; `repeats` says whether the two fits of a mode gave",
        "bit-identical scores (the ranker: the same model text).",
        "",
        format_table(rows, list(rows[0]), markdown=True),
        "",
    ]
    (RESULTS / "determinism.md").write_text("\n".join(md))
    print("\n".join(md))


def _row(name: str, timed: dict[bool, list[tuple[float, object]]]) -> dict:
    def same(runs: list[tuple[float, object]]) -> bool:
        a, b = runs[0][1], runs[1][1]
        return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else a == b

    on = float(np.mean([s for s, _ in timed[True]]))
    off = float(np.mean([s for s, _ in timed[False]]))
    return {
        "model": name,
        "deterministic_s": round(on, 2),
        "fast_s": round(off, 2),
        "cost": round(on / off, 3),
        "repeats (deterministic)": same(timed[True]),
        "repeats (fast)": same(timed[False]),
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
