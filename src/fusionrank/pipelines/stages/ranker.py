"""The ``ranker`` stage of ``fusionrank run``: the LightGBM ranker fitted on the label
stage's features, evaluated on test by full ranking (items outside a user's candidates
rank last), and the ablation (refits without each feature group and each source); cached
under ``<run>/ranker/``. The stage reads its own section of the run
(:class:`RankerSettings`)."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import ITEM_IDX, QUERY, TEST, TRAIN, USER_IDX, VALID
from fusionrank.data.splits import Split
from fusionrank.engines import Engine, Work, get_engine
from fusionrank.errors import InvalidArgumentError
from fusionrank.evaluation.ranking import EvalConfig, EvalResult, evaluate_ranking
from fusionrank.features.shards import ShardedTable
from fusionrank.features.table import LABEL, feature_columns, feature_group
from fusionrank.io import begin_stage, mark_done, read_json, write_json
from fusionrank.pipelines.cache import is_fresh
from fusionrank.ranker.lgbm import TUNING_GRID, LTRRanker, RankerConfig, training_users
from fusionrank.scoring import ScoreFn

Log = Callable[[str], None]


@dataclass(frozen=True)
class RankerSettings:
    """The ranker stage's section of a run."""

    ranker: RankerConfig
    evaluation: EvalConfig
    ablation: bool
    """Refit without each feature group and each source (the report's ablation table)."""
    models: tuple[str, ...]
    """The run's models, in order (their features are the sources' features)."""


@dataclass
class RankerResult:
    """The ranker, its test metrics, and the ablation rows."""

    ranker: LTRRanker
    result: EvalResult
    ablation: list[dict[str, Any]]
    cached: bool
    tuning: list[dict[str, Any]]
    """With ``ranker.tune``: every setting tried, its NDCG on the half of the held-out users
    that stopped it and on the other half that compares the settings (the choice is the
    ranker's config)."""


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
        raise InvalidArgumentError("the candidate table must be sorted by user")
    items = table[ITEM_IDX].to_numpy()
    scores = np.asarray(scores, dtype=np.float32)

    def score(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), n_items), -np.inf, np.float32)
        _fill(out, rows, users, items, scores)
        return out

    return score


class GroupScores:
    """The ranker's scores of a feature table's row groups (chunk work of every engine):
    built once per worker from the ranker's state, it reads each group's feature columns
    and predicts them."""

    def __init__(self, ranker: LTRRanker | dict[str, Any], table: str | Path) -> None:
        self.ranker = ranker if isinstance(ranker, LTRRanker) else LTRRanker.from_state(ranker)
        self.table = ShardedTable(Path(table))

    def __call__(self, groups: Iterable[int]) -> Iterator[np.ndarray]:
        for g in groups:
            rows = self.table.read_group(g, [USER_IDX, ITEM_IDX, *self.ranker.columns])
            yield np.asarray(self.ranker.predict(rows), dtype=np.float32)


class ShardScores:
    """A score function over all items backed by a feature table on disk and the ranker's
    scores of each of its row groups: candidates get their score, every other item
    ``-inf``. Memory: the scores (one float per candidate) and the user and item columns
    of one evaluation chunk's row groups, never the whole table."""

    def __init__(self, path: Path, scores: list[np.ndarray], n_items: int, keep: int = 4) -> None:
        self.table = ShardedTable(path)
        self.scores, self.n_items, self.keep = scores, n_items, keep
        if len(scores) != self.table.n_groups:
            raise InvalidArgumentError(
                f"{len(scores)} score arrays for {self.table.n_groups} row groups of {path}"
            )
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def _group(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if g not in self._cache:
            rows = self.table.read_group(g, [USER_IDX, ITEM_IDX])
            self._cache[g] = (rows[USER_IDX].to_numpy(), rows[ITEM_IDX].to_numpy(), self.scores[g])
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
    at most ``config.max_users`` of them (seeded), read from the table's row groups. Its
    ``attrs["dropped_groups"]``: the users left out because no candidate of theirs is a
    positive (they carry no gradient)."""
    table = ShardedTable(path)
    keys = pd.DataFrame({USER_IDX: table.read_column(USER_IDX), LABEL: table.read_column(LABEL)})
    positives = keys.groupby(USER_IDX)[LABEL].sum()
    users = training_users(positives.index[positives.to_numpy() > 0].to_numpy(), config)
    rows = table.read_users(users)
    rows.attrs["dropped_groups"] = int((positives.to_numpy() == 0).sum())
    return rows


def stacked_table(
    paths: dict[str, Path], config: RankerConfig, n_users: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of every label table (out-of-fold tables and the valid one, ``valid``
    last) as one table with a ``query`` column, one query group per (table, user); at most
    ``config.max_users`` groups with a positive (seeded; ``attrs["dropped_groups"]``: those
    without one). Also the valid table's groups: the ranker stops early on a share of
    those, the labels that are the next interactions."""
    names = [n for n in paths if n != VALID] + [VALID]
    keys = []
    for t, name in enumerate(names):
        table = ShardedTable(paths[name])
        users = table.read_column(USER_IDX).astype(np.int64)
        keys.append(pd.DataFrame({QUERY: users + t * n_users, LABEL: table.read_column(LABEL)}))
    positives = pd.concat(keys).groupby(QUERY)[LABEL].sum()
    chosen = training_users(positives.index[positives.to_numpy() > 0].to_numpy(), config)
    parts = []
    for t, name in enumerate(names):
        mine = chosen[(chosen >= t * n_users) & (chosen < (t + 1) * n_users)] - t * n_users
        rows = ShardedTable(paths[name]).read_users(mine)
        parts.append(rows.assign(**{QUERY: rows[USER_IDX].to_numpy(np.int64) + t * n_users}))
    valid_groups = chosen[chosen >= (len(names) - 1) * n_users]
    rows = pd.concat(parts, ignore_index=True)
    rows.attrs["dropped_groups"] = int((positives.to_numpy() == 0).sum())
    return rows, valid_groups


def evaluate_scores(score: ScoreFn, split: Split, evaluation: EvalConfig) -> EvalResult:
    """Test metrics of a score function by full ranking, train and valid items excluded."""
    train = split.matrix(TRAIN)
    return evaluate_ranking(
        score,
        split.matrix(TEST),
        split.matrix(TRAIN, VALID),
        evaluation,
        popularity=np.asarray(train.sum(axis=0)).ravel(),
    )


def fit_ranker(
    config: RankerConfig,
    labels: pd.DataFrame,
    columns: list[str],
    engine: Engine | None = None,
    stop_pool: np.ndarray | None = None,
    score_apart: bool = False,
) -> LTRRanker:
    """The ranker fitted on a label table (stacked labels: by its ``query`` groups, early
    stopping on a share of ``stop_pool``; ``score_apart``: a candidate among several,
    :attr:`LTRRanker.pool_score` read on the held-out groups that did not stop it)."""
    query = QUERY if QUERY in labels.columns else USER_IDX
    return LTRRanker(config, engine, score_apart).fit(labels, columns, query=query, stop_pool=stop_pool)


def tuned_ranker(
    config: RankerConfig,
    labels: pd.DataFrame,
    columns: list[str],
    log: Log,
    engine: Engine | None = None,
    stop_pool: np.ndarray | None = None,
) -> tuple[LTRRanker, list[dict[str, Any]]]:
    """The ranker, and with ``config.tune`` the settings of :data:`TUNING_GRID` that rank
    best the half of the held-out label users that did not stop them (``pool_score``; ties:
    the first listed), fitted again as an untuned ranker is (every held-out user stopping
    it), with every setting's figures: the choice is the only thing tuning changes."""
    if not config.tune:
        return fit_ranker(config, labels, columns, engine, stop_pool), []
    tried: list[dict[str, Any]] = []
    best: LTRRanker | None = None
    for change in TUNING_GRID:
        setting = dataclasses.replace(config, **change, tune=False)
        candidate = fit_ranker(setting, labels, columns, engine, stop_pool, score_apart=True)
        tried.append(
            {
                "settings": change or "as configured",
                "stop ndcg": candidate.stop_score,
                "held-out ndcg": candidate.pool_score,
                "trees": candidate.best_iteration,
            }
        )
        log(
            f"  tuning {change or 'as configured'}: held-out ndcg@{config.eval_at} {candidate.pool_score:.4f}"
            f" (stopping half {candidate.stop_score:.4f})"
        )
        if best is None or candidate.pool_score > best.pool_score:
            best = candidate
    assert best is not None  # noqa: S101 - the grid is not empty
    chosen = fit_ranker(best.config, labels, columns, engine, stop_pool)  # best.config: its depth too
    chosen.depth_scores = best.depth_scores
    return chosen, tried


def ranker_scores(ranker: LTRRanker, table: Path, engine: Engine | None = None) -> list[np.ndarray]:
    """The ranker's scores of every row group of ``table``, on ``engine``."""
    engine = engine or get_engine()
    work = Work(
        build=partial(GroupScores, ranker.state(), str(table.resolve())),
        here=GroupScores(ranker, table),
        threads=1,
    )
    return list(engine.map(work, range(ShardedTable(table).n_groups)))


def headroom(table: Path, truth: sp.csr_matrix, exclude: sp.csr_matrix, evaluation: EvalConfig) -> float:
    """NDCG@10 of a perfect reordering of a table's candidates (every relevant candidate
    first): the most any ranker of this pool can reach. A report figure: it reads the
    stage's truth, as the evaluator does, and feeds nothing back."""
    shards = ShardedTable(table)
    truth = sp.csr_matrix(truth)
    scores = []
    for g in range(shards.n_groups):
        rows = shards.read_group(g, [USER_IDX, ITEM_IDX])
        hit = np.asarray(truth[rows[USER_IDX].to_numpy(), rows[ITEM_IDX].to_numpy()]).ravel() > 0
        scores.append(hit.astype(np.float32))
    result = evaluate_ranking(
        ShardScores(table, scores, truth.shape[1]),
        truth,
        exclude,
        EvalConfig(ks=(10,), metrics=("ndcg",), chunk_size=evaluation.chunk_size),
    )
    return result.metrics["ndcg@10"]


def ranker_metrics(
    ranker: LTRRanker, test: Path, split: Split, evaluation: EvalConfig, engine: Engine | None = None
) -> EvalResult:
    """Test metrics of the ranker over the test feature table (its row groups scored on
    ``engine``)."""
    scores = ranker_scores(ranker, test, engine)
    return evaluate_scores(ShardScores(test, scores, split.n_items), split, evaluation)


def top_source(ranker: LTRRanker, sources: list[str]) -> str | None:
    """The source whose features carry the most of the ranker's gain (learnt on the label
    stage, so choosing it reads no test data); None without sources."""
    if not sources:
        return None
    gain = ranker.importance().set_index("feature")["gain"]
    total = {s: float(gain.reindex([f"score_{s}", f"z_{s}", f"rank_{s}"]).fillna(0).sum()) for s in sources}
    return max(sources, key=lambda s: total[s])  # ties: the first in the run's order


def ablation_rows(
    settings: RankerSettings,
    split: Split,
    valid: pd.DataFrame,
    test: Path,
    full: LTRRanker,
    full_ndcg: float,
    log: Log,
    engine: Engine | None = None,
    ranker_engine: Engine | None = None,
    stop_pool: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Test NDCG@10 of the ranker refitted without each feature group, without each source,
    and with the strongest source's features only (:func:`top_source`), beside the NDCG@10
    on its held-out stopping users (valid), the figure a choice may use."""
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
    for source in settings.models:
        mine = {f"score_{source}", f"z_{source}", f"rank_{source}"}
        if mine & set(columns):
            variants.append((f"without source {source}", source, [c for c in columns if c not in mine]))
    top = top_source(full, [s for s in settings.models if f"score_{s}" in columns])
    if top is not None:
        only = [c for c in columns if c in {f"score_{top}", f"z_{top}", f"rank_{top}"}]
        variants.append((f"{top.upper()} features only", f"all but {top}", only))
    for label, dropped, cols in variants:
        if not cols:
            continue
        t0 = time.perf_counter()
        ranker = fit_ranker(settings.ranker, valid, cols, ranker_engine, stop_pool)
        ndcg = ranker_metrics(ranker, test, split, settings.evaluation, engine).metrics["ndcg@10"]
        log(f"  ablation {label}: ndcg@10 {ndcg:.4f} ({time.perf_counter() - t0:.1f}s)")
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


def ranker_stage(
    settings: RankerSettings,
    label_tables: dict[str, Path],
    test_table: Path,
    split: Split,
    key: str,
    folder: Path,
    force: bool,
    log: Log,
    engine: Engine | None = None,
    ranker_engine: Engine | None = None,
) -> RankerResult:
    """Fit (or reuse) the ranker on the label tables (the valid one, and the out-of-fold
    ones of stacked labels), score the test table, and run the ablation; ``engine`` scores
    the test table's row groups, ``ranker_engine`` trains the boosters."""
    rdir = folder / "ranker"
    cached = not force and is_fresh(rdir, key)
    columns = ShardedTable(label_tables[VALID]).feature_names()
    stop_pool = None
    tried: list[dict[str, Any]] = []
    if cached:
        log("  cached")
        ranker = LTRRanker.load(rdir)
        if (rdir / "tuning.json").exists():
            tried = read_json(rdir / "tuning.json")
    else:
        begin_stage(rdir)
        if len(label_tables) > 1:
            valid, stop_pool = stacked_table(label_tables, settings.ranker, split.n_users)
            log(
                f"  training on {valid[QUERY].nunique():,} groups of {valid[USER_IDX].nunique():,} users, "
                f"{len(valid):,} rows (stacked labels)"
            )
        else:
            valid = label_table(label_tables[VALID], settings.ranker)
            log(f"  training on {valid[USER_IDX].nunique():,} label users, {len(valid):,} rows")
        ranker, tried = tuned_ranker(settings.ranker, valid, columns, log, ranker_engine, stop_pool)
        ranker.dropped_groups = valid.attrs["dropped_groups"]  # before the sampling of label users
        log(f"  {ranker.dropped_groups:,} label groups without a positive among their candidates, left out")
        if ranker.depth_scores:
            tried_depths = ", ".join(f"{d}: {v:.4f}" for d, v in ranker.depth_scores.items())
            log(f"  candidates per source: {ranker.depth} kept (stopping users' pool ndcg {tried_depths})")
        if tried:
            write_json(rdir / "tuning.json", tried)
        if tried or ranker.depth_scores:
            settings = dataclasses.replace(
                settings, ranker=ranker.config
            )  # the ablation refits the chosen one
        ranker.save(rdir)
    result = ranker_metrics(ranker, test_table, split, settings.evaluation, engine)
    log(
        f"  {len(columns)} features, {ranker.best_iteration} trees,"
        f" test ndcg@10 {result.metrics['ndcg@10']:.4f}"
    )
    if cached:
        ablation = read_json(rdir / "ablation.json")
    else:
        ndcg = result.metrics["ndcg@10"]
        ablation = (
            ablation_rows(
                settings, split, valid, test_table, ranker, ndcg, log, engine, ranker_engine, stop_pool
            )
            if settings.ablation
            else []
        )
        write_json(rdir / "ablation.json", ablation)
        mark_done(rdir, key)
    return RankerResult(ranker, result, ablation, cached, tried)
