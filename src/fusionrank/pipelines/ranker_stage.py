"""The ``ranker`` stage of ``fusionrank run``: LightGBM lambdarank fitted on the label
stage's features, evaluated on test by full ranking (items outside a user's candidates
rank last), and the ablation (refits without each feature group and each source)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fusionrank.columns import ITEM_IDX, TEST, TRAIN, USER_IDX, VALID
from fusionrank.data.splits import Split
from fusionrank.evaluation.ranking import EvalResult, evaluate_ranking
from fusionrank.features.table import feature_columns, feature_group
from fusionrank.pipelines.config import RunConfig
from fusionrank.ranker.lgbm import LTRRanker
from fusionrank.scoring import ScoreFn

Log = Callable[[str], None]


def candidate_scores(table: pd.DataFrame, scores: np.ndarray, n_items: int) -> ScoreFn:
    """A score function over all items from scores of a user-sorted candidate table:
    candidates get their score, every other item ``-inf``. Memory: one chunk of users."""
    users = table[USER_IDX].to_numpy()
    if len(users) and np.any(np.diff(users) < 0):
        raise ValueError("the candidate table must be sorted by user")
    items = table[ITEM_IDX].to_numpy()
    scores = np.asarray(scores, dtype=np.float32)

    def score(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), n_items), -np.inf, np.float32)
        lo, hi = np.searchsorted(users, rows, side="left"), np.searchsorted(users, rows, side="right")
        for r, (a, b) in enumerate(zip(lo, hi)):
            out[r, items[a:b]] = scores[a:b]
        return out

    return score


def evaluate_scores(score: ScoreFn, split: Split, config: RunConfig) -> EvalResult:
    """Test metrics of a score function by full ranking, train and valid items excluded."""
    train = split.matrix(TRAIN)
    return evaluate_ranking(
        score,
        split.matrix(TEST),
        split.matrix(TRAIN, VALID),
        config.evaluation,
        popularity=np.asarray(train.sum(axis=0)).ravel(),
    )


def fit_ranker(config: RunConfig, valid: pd.DataFrame, columns: list[str]) -> LTRRanker:
    return LTRRanker(config.ranker).fit(valid, columns)


def ranker_metrics(ranker: LTRRanker, test: pd.DataFrame, split: Split, config: RunConfig) -> EvalResult:
    return evaluate_scores(candidate_scores(test, ranker.predict(test), split.n_items), split, config)


def ablation_rows(
    config: RunConfig,
    split: Split,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    full: LTRRanker,
    full_ndcg: float,
    log: Log,
) -> list[dict[str, Any]]:
    """Test NDCG@10 of the ranker refitted without each feature group and without each source,
    beside the NDCG@10 on its held-out stopping users (valid), the figure a choice may use."""
    columns = feature_columns(valid)
    rows = [
        {
            "variant": "all features",
            "dropped": "",
            "n_features": len(columns),
            "stop ndcg@10 (valid)": full.stop_score,
            "ndcg@10": full_ndcg,
        }
    ]
    variants = []
    for group in sorted({feature_group(c) for c in columns}):
        variants.append((f"without group {group}", group, [c for c in columns if feature_group(c) != group]))
    for source in config.models:
        mine = {f"score_{source}", f"z_{source}", f"rank_{source}"}
        if mine & set(columns):
            variants.append((f"without source {source}", source, [c for c in columns if c not in mine]))
    ease_only = [c for c in columns if c in {"score_ease", "z_ease", "rank_ease"}]
    if ease_only:
        variants.append(("EASE features only", "all but ease", ease_only))
    for label, dropped, cols in variants:
        if not cols:
            continue
        ranker = fit_ranker(config, valid, cols)
        ndcg = ranker_metrics(ranker, test, split, config).metrics["ndcg@10"]
        log(f"  ablation {label}: ndcg@10 {ndcg:.4f}")
        rows.append(
            {
                "variant": label,
                "dropped": dropped,
                "n_features": len(cols),
                "stop ndcg@10 (valid)": ranker.stop_score,
                "ndcg@10": ndcg,
            }
        )
    return rows
