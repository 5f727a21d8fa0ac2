"""The ``ranker`` stage of ``fusionrank run``: LightGBM lambdarank fitted on the label
stage's features, evaluated on test by full ranking (items outside a user's candidates
rank last), and the ablation (refits without each feature group and each source)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusionrank.columns import ITEM_IDX, TEST, TRAIN, USER_IDX, VALID
from fusionrank.data.splits import Split
from fusionrank.evaluation.ranking import EvalResult, evaluate_ranking
from fusionrank.features.shards import ShardedTable
from fusionrank.features.table import LABEL, feature_columns, feature_group
from fusionrank.pipelines.config import RunConfig
from fusionrank.ranker.lgbm import LTRRanker, RankerConfig, training_users
from fusionrank.scoring import ScoreFn

Log = Callable[[str], None]


def _fill(
    out: np.ndarray, rows: np.ndarray, users: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> None:
    lo, hi = np.searchsorted(users, rows, side="left"), np.searchsorted(users, rows, side="right")
    for r, (a, b) in enumerate(zip(lo, hi)):
        out[r, items[a:b]] = scores[a:b]


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
        _fill(out, rows, users, items, scores)
        return out

    return score


class ShardScores:
    """A score function over all items backed by a feature table on disk: the ranker
    scores one row group (chunk of users) at a time, when the evaluator first asks for
    one of its users; candidates get the ranker's score, every other item ``-inf``.
    Memory: the row groups of one evaluation chunk, never the whole table. ``scores``:
    the ranker's scores of every row group, computed elsewhere (``engine: ray``)."""

    def __init__(
        self,
        path: Path,
        ranker: LTRRanker,
        n_items: int,
        keep: int = 4,
        scores: list[np.ndarray] | None = None,
    ) -> None:
        self.table = ShardedTable(path)
        self.ranker, self.n_items, self.keep, self.scores = ranker, n_items, keep, scores
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def _group(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if g not in self._cache:
            if self.scores is not None:
                rows = self.table.read_group(g, [USER_IDX, ITEM_IDX])
                scores = self.scores[g]
            else:
                rows = self.table.read_group(g, [USER_IDX, ITEM_IDX, *self.ranker.features])
                scores = np.asarray(self.ranker.predict(rows), dtype=np.float32)
            self._cache[g] = (rows[USER_IDX].to_numpy(), rows[ITEM_IDX].to_numpy(), scores)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return self._cache[g]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        out = np.full((len(rows), self.n_items), -np.inf, np.float32)
        for g in self.table.groups_of(rows):
            _fill(out, rows, *self._group(int(g)))
        return out


def label_table(path: Path, config: RankerConfig) -> pd.DataFrame:
    """The label stage's rows of the users the ranker trains on: users with a positive,
    at most ``config.max_users`` of them (seeded), read from the table's row groups."""
    table = ShardedTable(path)
    keys = pd.DataFrame({USER_IDX: table.read_column(USER_IDX), LABEL: table.read_column(LABEL)})
    positives = keys.groupby(USER_IDX)[LABEL].sum()
    users = training_users(positives.index[positives.to_numpy() > 0].to_numpy(), config)
    return table.read_users(users)


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


def ranker_metrics(
    ranker: LTRRanker, test: Path, split: Split, config: RunConfig, saved: Path | None = None
) -> EvalResult:
    """Test metrics of the ranker over the test feature table (scored a row group at a time).
    With ``engine: ray`` and the ranker ``saved`` in a folder, Ray actors score the groups."""
    scores = None
    if config.engine == "ray" and saved is not None:
        from fusionrank.pipelines.ray_stages import predictions_on_ray

        scores = predictions_on_ray(config, saved, test, ShardedTable(test).n_groups)
    return evaluate_scores(ShardScores(test, ranker, split.n_items, scores=scores), split, config)


def ablation_rows(
    config: RunConfig,
    split: Split,
    valid: pd.DataFrame,
    test: Path,
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
