"""LightGBM learning to rank over the candidate feature table.

Query groups are users. Early stopping watches NDCG@``eval_at`` on a held-out share of
the *label* users (the validation split's users in the run pipeline), or on each fold of
them in turn (``stop_folds``: cross-fitted boosters), so neither the fit nor the stopping
decision sees test interactions. Explanations are LightGBM's own
per-row contributions (``pred_contrib``, SHAP values for trees).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from fusionrank.columns import USER_IDX
from fusionrank.engines import SERIAL_BOOSTING, Engine, RankTable, check_engine_name, get_engine
from fusionrank.errors import InvalidArgumentError, NotFittedError, UnknownKeyError
from fusionrank.evaluation.metrics import ndcg
from fusionrank.io import atomic_path, read_json, write_json
from fusionrank.ranker.paths import PathExplainer


@dataclass(frozen=True)
class RankerConfig:
    """LightGBM lambdarank settings; the defaults suit ~100 candidates per user."""

    n_estimators: int = 2000
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 100
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    truncation_level: int = 30
    """lambdarank_truncation_level: pairs below this rank do not contribute."""
    objective: Literal["lambdarank", "rank_xendcg", "binary"] = "lambdarank"
    """LightGBM's objective: LambdaRank, the listwise cross-entropy XE-NDCG, or ``binary``
    (pointwise log-loss over every candidate: each negative counts, not only the pairs
    near the top; early stopping still reads NDCG)."""
    linear_tree: bool = False
    """LightGBM's ``linear_tree``: each leaf holds a linear model of the features split on
    its path instead of a constant, so the ranker's score moves smoothly with the sources'
    scores rather than in steps (trees of the local engine only: LightGBM fits linear leaves
    with its serial learner)."""
    linear_lambda: float = 1.0
    """L2 penalty of the leaves' linear models (``linear_tree``)."""
    candidates: tuple[int, ...] = ()
    """Candidates per source the ranker keeps: a (user, item) pair stays when some source
    ranks it at most this deep (its best ``rank_<source>``); the others rank last. Several
    depths: each is fitted and the one whose stopping users rank best over the whole
    retrieved pool (positives a depth cuts off count as misses: :attr:`LTRRanker.pool_score`)
    is kept, so the choice is made on validation (half the held-out label users stop each
    fit, the other half compare the depths). Empty: every retrieved candidate."""
    tune: bool = False
    """Choose the settings among :data:`TUNING_GRID` on the held-out label users (validation,
    never test): half of them stop each setting's boosting, the other half compare the
    settings (NDCG@``eval_at`` over every retrieved candidate, :attr:`LTRRanker.pool_score`),
    so the winner is not the luckiest fit of the users that stopped it. The run reports
    every setting's figures and the choice."""
    early_stopping_rounds: int = 100
    stop_share: float = 0.2
    """Share of label users held out to decide when to stop (with ``stop_folds`` 0)."""
    stop_folds: int = 0
    """0: one seeded share (``stop_share``) of the label users stops the boosting, then
    (``refit``) the booster is refitted on every user with that tree count. K >= 2:
    cross-fitted boosters, K of them per bag: the label users are cut into K seeded folds
    and each booster trains on K-1 of them and stops on the remaining one, so every label
    user decides one stop and the ranker is their mean (no refit). Steadier than one
    held-out share when the label users are few (hundreds), at K times the fits."""
    eval_at: int = 10
    bags: int = 1
    """Bags averaged, each with its own seed and stopping users (a booster each, or
    ``stop_folds`` cross-fitted ones)."""
    refit: bool = True
    """After early stopping picks the tree count, refit on all label users with that count
    (with ``stop_folds`` 0; cross-fitted boosters are not refitted)."""
    seed: int = 2020
    threads: int = 0
    """LightGBM threads (0: its default). The same model needs the same thread count."""
    deterministic: bool = True
    """LightGBM's ``deterministic`` with ``force_row_wise``: the same booster bytes on every
    run (same data, seed and threads)."""
    max_users: int | None = 50_000
    """Train on at most this many label users with a positive (a seeded sample; None: all).
    The table of a sampled user keeps all its candidates, so query groups stay whole."""
    engine: str = "local"
    """``local`` (this process) or ``ray``: Ray Train's LightGBMTrainer with ``workers``
    data-parallel workers, the table cut by user (:mod:`fusionrank.engines.ray_train`), on
    the Ray of this process, else ``$RAY_ADDRESS``, else a local instance (in a run:
    ``ray.address``)."""
    workers: int = 2
    """Ray Train workers (``engine: ray``), one CPU each unless ``threads`` says more."""
    storage: str | None = None
    """Where Ray Train keeps the booster checkpoint (``engine: ray``); None: a temp folder,
    removed after loading. On a multi-node cluster, a path every node can write (NFS, s3://)."""

    def __post_init__(self) -> None:
        if self.bags < 1:
            raise InvalidArgumentError(f"bags must be >= 1, got {self.bags}")
        if self.max_users is not None and self.max_users < 2:
            raise InvalidArgumentError(f"max_users must be >= 2 (or None), got {self.max_users}")
        if not 0 < self.stop_share < 1:
            raise InvalidArgumentError(f"stop_share must be in (0, 1), got {self.stop_share}")
        if self.stop_folds == 1 or self.stop_folds < 0:
            raise InvalidArgumentError(
                f"ranker.stop_folds must be 0 (one held-out share) or >= 2, got {self.stop_folds}"
            )
        check_engine_name(self.engine, "ranker.engine")
        object.__setattr__(self, "candidates", tuple(int(d) for d in self.candidates))  # YAML/JSON lists
        if any(d < 1 for d in self.candidates) or len(set(self.candidates)) != len(self.candidates):
            raise InvalidArgumentError(
                f"ranker.candidates must be distinct depths >= 1, got {list(self.candidates)}"
            )
        if self.workers < 1:
            raise InvalidArgumentError(f"ranker.workers must be >= 1, got {self.workers}")
        if self.linear_lambda < 0:
            raise InvalidArgumentError(f"ranker.linear_lambda must be >= 0, got {self.linear_lambda}")
        if self.linear_tree and not SERIAL_BOOSTING[self.engine]:
            raise InvalidArgumentError(
                f"ranker.linear_tree needs an engine that boosts serially (local), not {self.engine!r}:"
                " LightGBM fits linear leaves with its serial learner only"
            )


TUNING_GRID: tuple[dict[str, Any], ...] = (
    {},
    {"num_leaves": 31, "min_child_samples": 50},
    {"num_leaves": 63, "min_child_samples": 20},
    {"num_leaves": 7, "min_child_samples": 200},
    {"learning_rate": 0.1},
    {"truncation_level": 10},
    {"truncation_level": 100},
    {"objective": "rank_xendcg"},
    {"objective": "binary"},
)
"""The settings ``tune`` tries, each a change to the configured ones (the first: none)."""


def lightgbm_params(config: RankerConfig, seed: int) -> dict[str, Any]:
    """LightGBM's parameters for ``config`` (both trainers read them): its objective with
    NDCG at ``eval_at`` as the stopping metric, and the values LightGBM's scikit-learn
    ranker passed before the engines shared one trainer (so the same boosters come out).
    ``num_threads`` 0 is each engine's default (this machine's physical cores locally, one
    per Ray Train worker)."""
    linear = {"linear_tree": True, "linear_lambda": config.linear_lambda} if config.linear_tree else {}
    return {
        "boosting_type": "gbdt",
        "objective": config.objective,
        "metric": ["ndcg"],
        "eval_at": [config.eval_at],
        "num_leaves": config.num_leaves,
        "max_depth": -1,
        "learning_rate": config.learning_rate,
        "subsample_for_bin": 200000,
        "min_split_gain": 0.0,
        "min_child_weight": 0.001,
        "min_child_samples": config.min_child_samples,
        "subsample": config.subsample,
        "subsample_freq": 1,
        "colsample_bytree": config.colsample_bytree,
        "reg_alpha": 0.0,
        "reg_lambda": config.reg_lambda,
        "lambdarank_truncation_level": config.truncation_level,
        "seed": seed,
        "num_threads": config.threads,
        "deterministic": config.deterministic,
        "force_row_wise": config.deterministic,
        "verbose": -1,
        **linear,
    }


def rank_table(rows: pd.DataFrame, features: list[str], label: str, query: str = USER_IDX) -> RankTable:
    """The booster's view of a table sorted by ``query``: features, labels, one group per
    query value (a user, or a user in one fold)."""
    groups = rows[query].to_numpy()
    return RankTable(rows[features], rows[label].to_numpy(), groups_of(groups), groups)


def training_users(with_positive: np.ndarray, config: RankerConfig) -> np.ndarray:
    """The label users the ranker trains on: all with a positive, or a seeded sample of
    ``max_users`` of them (sorted).

    >>> training_users(np.arange(10), RankerConfig(max_users=3)).tolist()
    [0, 4, 7]
    """
    users = np.sort(np.asarray(with_positive, np.int64))
    if config.max_users is None or len(users) <= config.max_users:
        return users
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(users, size=config.max_users, replace=False))


def stop_sets(pool: np.ndarray, config: RankerConfig, seed: int) -> list[np.ndarray]:
    """The groups that stop each booster of one bag: a seeded share ``stop_share`` of
    ``pool`` (``stop_folds`` 0), or ``stop_folds`` seeded, disjoint folds that cover it.

    >>> [s.tolist() for s in stop_sets(np.arange(6), RankerConfig(stop_folds=3), 0)]
    [[2, 3], [4, 5], [0, 1]]
    """
    rng = np.random.default_rng(seed)
    if not config.stop_folds:
        return [rng.choice(pool, size=max(1, int(round(config.stop_share * len(pool)))), replace=False)]
    return [np.sort(part) for part in np.array_split(rng.permutation(pool), config.stop_folds)]


def groups_of(users: np.ndarray) -> np.ndarray:
    """Group sizes of a user-sorted key column (LightGBM's ``group``)."""
    users = np.asarray(users)
    if len(users) and np.any(np.diff(users) < 0):
        raise InvalidArgumentError("rows must be sorted by user so that each user's rows are contiguous")
    _, counts = np.unique(users, return_counts=True)
    return counts


def _pool_ndcg(
    held: pd.DataFrame,
    keep: np.ndarray,
    booster: lgb.Booster,
    iterations: int,
    features: list[str],
    label: str,
    query: str,
    k: int,
) -> float:
    """Mean NDCG@k (:func:`fusionrank.evaluation.metrics.ndcg`, binary labels) of the
    held-out groups over all their rows, rows outside ``keep`` ranked last (so a depth that
    cuts positives off pays for it). Ties keep the table's order."""
    if not len(held):
        return float("nan")
    scores = np.where(
        keep, cast(np.ndarray, booster.predict(held[features], num_iteration=iterations)), -np.inf
    )
    frame = pd.DataFrame({"q": held[query].to_numpy(), "s": scores, "y": held[label].to_numpy() > 0})
    frame = frame.sort_values(["q", "s"], ascending=[True, False], kind="stable")
    group = pd.factorize(frame["q"])[0]
    position = frame.groupby("q", sort=False).cumcount().to_numpy()
    relevant = frame["y"].to_numpy()
    hits = np.zeros((group.max() + 1, k), bool)
    top = position < k
    hits[group[top], position[top]] = relevant[top]
    n_relevant = np.bincount(group, weights=relevant).astype(np.int64)
    valid = n_relevant > 0
    return float(ndcg(hits[valid], n_relevant[valid], k).mean()) if valid.any() else float("nan")


class LTRRanker:
    """``fit(features, labels)`` then ``predict``; importances and contributions.

    With ``bags > 1`` the ranker is the mean of that many boosters, each with its own seed
    and its own held-out stopping users (with ``stop_folds`` K, K cross-fitted boosters per
    bag); predictions, contributions and importances are averaged (contributions stay
    additive). Boosters are trained by ``engine`` (default:
    the one ``config.engine`` names)."""

    def __init__(
        self, config: RankerConfig | None = None, engine: Engine | None = None, score_apart: bool = False
    ) -> None:
        self.config = config or RankerConfig()
        self._engine = engine
        self.boosters: list[lgb.Booster] = []
        self.iterations: list[int] = []
        self.features: list[str] = []
        self.stop_score = float("nan")
        self.dropped_groups = 0
        """Query groups of the last fit without a positive label (left out)."""
        self.pool: list[str] = []
        """The ``rank_<source>`` columns the candidate depth reads (with ``candidates``)."""
        self.pool_score = float("nan")
        """NDCG@``eval_at`` of the stopping users over every retrieved candidate (pairs beyond
        the depth last, their positives counted in the ideal): comparable across depths."""
        self._explainers: list[PathExplainer] = []
        """The boosters read for path attribution (``linear_tree``), each with its booster."""
        self.depth_scores: dict[str, float] = {}
        """Each depth tried (with several ``candidates``) and its :attr:`pool_score`."""
        self._score_apart = score_apart
        """A candidate among several (depths, tuned settings): half the held-out groups stop
        each booster, the other half score it (:attr:`pool_score`), so the comparison is not
        made on the groups that chose the tree count."""

    @property
    def depth(self) -> int | None:
        """The candidate depth kept (None: all)."""
        return self.config.candidates[0] if len(self.config.candidates) == 1 else None

    @property
    def columns(self) -> list[str]:
        """The columns :meth:`predict` reads: the features and the depth's rank columns."""
        return list(dict.fromkeys([*self.features, *(self.pool if self.depth else [])]))

    @property
    def engine(self) -> Engine:
        """The engine that trains the boosters (chosen on first use)."""
        if self._engine is None:
            self._engine = get_engine(self.config.engine)
        return self._engine

    @property
    def best_iteration(self) -> int:
        """Trees per booster (the mean when bagged)."""
        return int(round(np.mean(self.iterations))) if self.iterations else 0

    def fit(
        self,
        table: pd.DataFrame,
        features: list[str],
        label: str = "label",
        query: str = USER_IDX,
        stop_pool: np.ndarray | None = None,
    ) -> LTRRanker:
        """Fit on a table sorted by ``query`` (a query group per value: a user, or a user in
        one fold of stacked labels); groups without a positive are dropped (they carry no
        gradient: :attr:`dropped_groups`). A seeded share of the groups in ``stop_pool``
        (default: every group), or each of ``stop_folds`` folds of them in turn, decides
        early stopping; every group of the users it holds out stays out of that fit."""
        cfg = self.config
        if len(cfg.candidates) > 1:
            return self._choose_depth(table, features, label, query, stop_pool)
        if not features:
            raise InvalidArgumentError("no feature columns to fit on")
        self.pool = [c for c in table.columns if c.startswith("rank_")]
        if cfg.candidates and not self.pool:
            raise InvalidArgumentError("ranker.candidates needs the sources' rank_<source> columns")
        missing = [c for c in dict.fromkeys([*features, label, USER_IDX, query]) if c not in table.columns]
        if missing:
            raise UnknownKeyError(f"feature table has no column(s) {missing}")
        queries = table[query].to_numpy()
        positives = table.groupby(query)[label].sum()
        with_pos = positives.index[positives.to_numpy() > 0].to_numpy()
        self.dropped_groups = int(len(positives) - len(with_pos))
        if len(with_pos) < 2:
            raise InvalidArgumentError("need at least two users with a positive label to fit and stop")
        with_pos = training_users(with_pos, cfg)
        table = table[np.isin(queries, with_pos)]  # groups without a positive carry no gradient
        pool = with_pos if stop_pool is None else np.intersect1d(with_pos, stop_pool)
        if len(pool) < 1:
            raise InvalidArgumentError("no group with a positive label to stop on")
        if cfg.stop_folds > len(pool):
            raise InvalidArgumentError(
                f"ranker.stop_folds {cfg.stop_folds} is more than the {len(pool)} groups with a"
                " positive to stop on"
            )
        self.features = list(features)
        self.boosters, self.iterations, scores, pooled = [], [], [], []
        with self.engine:  # one hold on the engine for all of a fit's boosters
            for bag in range(cfg.bags):
                for stop_groups in stop_sets(pool, cfg, cfg.seed + bag):
                    booster, iterations, score, pool_score = self._fit_one(
                        table, stop_groups, label, query, cfg.seed + bag
                    )
                    self.boosters.append(booster)
                    self.iterations.append(iterations)
                    scores.append(score)
                    pooled.append(pool_score)
        self.stop_score = float(np.mean(scores))
        self.pool_score = float(np.mean(pooled))
        return self

    def _choose_depth(
        self, table: pd.DataFrame, features: list[str], label: str, query: str, stop_pool: np.ndarray | None
    ) -> LTRRanker:
        """One fit per depth of ``candidates`` (the same held-out groups: the same seeds), and
        this ranker becomes the one with the best :attr:`pool_score` (ties: the first listed).
        The held-out groups are cut in two: one half stops each fit, the other scores it, so
        the tree count chosen on a group never flatters its own depth's score."""
        best: LTRRanker | None = None
        scores: dict[str, float] = {}
        for d in self.config.candidates:
            fitted = LTRRanker(
                dataclasses.replace(self.config, candidates=(d,)), self._engine, score_apart=True
            )
            fitted.fit(table, features, label, query, stop_pool)
            scores[str(d)] = fitted.pool_score
            if best is None or fitted.pool_score > best.pool_score:
                best = fitted
        assert best is not None  # noqa: S101 - candidates has several depths here
        apart = self._score_apart
        self.__dict__.update(best.__dict__)
        self.depth_scores, self._score_apart = scores, apart
        return self

    def _in_depth(self, table: pd.DataFrame) -> np.ndarray:
        """Rows within the candidate depth (every row without one)."""
        if self.depth is None:
            return np.ones(len(table), bool)
        ranks = table[self.pool].to_numpy(np.float64, na_value=np.inf)
        return np.asarray(ranks.min(axis=1) <= self.depth)

    def _fit_one(
        self, table: pd.DataFrame, stop_groups: np.ndarray, label: str, query: str, seed: int
    ) -> tuple[lgb.Booster, int, float, float]:
        """One booster: rounds chosen by early stopping on ``stop_groups`` (the other groups
        of their users left out of that fit), then (``refit``, one held-out share) refitted
        on every group with that many rounds. Only rows within the candidate depth are
        fitted on; the pool score reads every held-out row."""
        cfg = self.config
        held = np.isin(table[query].to_numpy(), stop_groups)
        stop_users = np.unique(table[USER_IDX].to_numpy()[held])
        fit = ~np.isin(table[USER_IDX].to_numpy(), stop_users)
        keep = self._in_depth(table)
        scored = held
        if self._score_apart and len(stop_groups) > 1:  # stop on one half, score on the other
            scored = np.isin(table[query].to_numpy(), stop_groups[1::2])
            held = held & ~scored
        params = lightgbm_params(cfg, seed)
        where: dict[str, Any] = {"workers": cfg.workers, "storage": cfg.storage}
        stopped = self.engine.train_booster(
            params,
            rank_table(table[fit & keep], self.features, label, query),
            rank_table(table[held & keep], self.features, label, query),
            cfg.n_estimators,
            cfg.early_stopping_rounds,
            **where,
        )
        booster = stopped.booster
        pool_score = _pool_ndcg(
            table[scored], keep[scored], booster, stopped.iterations, self.features, label, query, cfg.eval_at
        )
        if cfg.refit and not cfg.stop_folds:
            whole = rank_table(table[keep], self.features, label, query)
            booster = self.engine.train_booster(params, whole, None, stopped.iterations, 0, **where).booster
        return booster, stopped.iterations, stopped.stop_score, pool_score

    def _check(self) -> list[lgb.Booster]:
        if not self.boosters:
            raise NotFittedError("LTRRanker is not fitted; call fit() or load() first")
        return self.boosters

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Scores of the rows of ``table`` (it holds :attr:`columns`); rows beyond the
        candidate depth get -inf (they rank last)."""
        x = table[self.features]
        # a DataFrame in gives a dense array out (sparse output only comes from sparse input)
        scores = np.mean(
            [cast(np.ndarray, b.predict(x, num_iteration=n)) for b, n in zip(self._check(), self.iterations)],
            axis=0,
        )
        return np.where(self._in_depth(table), scores, -np.inf)

    def contributions(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per-row additive contributions of each feature (and ``bias``) to the raw score:
        LightGBM's TreeSHAP values, or with ``linear_tree`` (which TreeSHAP does not cover)
        path attributions (:class:`fusionrank.ranker.paths.PathExplainer`, read once per booster)."""
        x = table[self.features]
        pairs = list(zip(self._check(), self.iterations))
        if self.config.linear_tree:
            values = np.mean([explain(x) for explain in self._path_explainers(pairs)], axis=0)
        else:
            values = np.mean(
                [cast(np.ndarray, b.predict(x, num_iteration=n, pred_contrib=True)) for b, n in pairs], axis=0
            )
        return pd.DataFrame(values, columns=[*self.features, "bias"], index=table.index)

    def prepare_contributions(self) -> None:
        """Read now what :meth:`contributions` needs (linear leaves' trees, 0.5 s for the
        demo's ranker), so that a service's first explanation is as fast as the next."""
        if self.config.linear_tree:
            self._path_explainers(list(zip(self._check(), self.iterations)))

    def _path_explainers(self, pairs: list[tuple[lgb.Booster, int]]) -> list[PathExplainer]:
        """The boosters' trees read for path attribution, kept while the boosters are."""
        if [(e.booster, e.iterations) for e in self._explainers] != pairs:
            self._explainers = [PathExplainer.of(b, n) for b, n in pairs]
        return self._explainers

    def importance(self) -> pd.DataFrame:
        """Total gain and split count per feature (mean over boosters), largest gain first."""
        pairs = list(zip(self._check(), self.iterations))
        return (
            pd.DataFrame(
                {
                    "feature": self.features,
                    "gain": np.mean([b.feature_importance("gain", iteration=n) for b, n in pairs], axis=0),
                    "splits": np.mean([b.feature_importance("split", iteration=n) for b, n in pairs], axis=0),
                }
            )
            .sort_values("gain", ascending=False)
            .reset_index(drop=True)
        )

    def state(self) -> dict[str, Any]:
        """Everything that restores the ranker, as JSON values (boosters in LightGBM's own
        text format): what :meth:`save` writes, and what travels to remote workers."""
        return {
            "config": dataclasses.asdict(self.config),
            "features": self.features,
            "iterations": self.iterations,
            "stop_score": self.stop_score,
            "dropped_groups": self.dropped_groups,
            "pool": self.pool,
            "pool_score": self.pool_score,
            "depth_scores": self.depth_scores,
            "boosters": [b.model_to_string(num_iteration=n) for b, n in zip(self._check(), self.iterations)],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LTRRanker:
        """The ranker :meth:`state` describes (the same predictions)."""
        ranker = cls(RankerConfig(**state["config"]))
        ranker.iterations = list(state["iterations"])
        ranker.boosters = [lgb.Booster(model_str=text) for text in state["boosters"]]
        ranker.features = list(state["features"])
        ranker.stop_score = state["stop_score"]
        ranker.dropped_groups = int(state.get("dropped_groups", 0))
        ranker.pool = list(state.get("pool", []))
        ranker.pool_score = float(state.get("pool_score", float("nan")))
        ranker.depth_scores = dict(state.get("depth_scores", {}))
        return ranker

    def save(self, folder: str | Path) -> None:
        """``model-<k>.txt`` per booster (LightGBM's text format) and ``ranker.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        for k, text in enumerate(state.pop("boosters")):
            with atomic_path(folder / f"model-{k}.txt") as tmp:
                tmp.write_text(text, encoding="utf-8")
        write_json(folder / "ranker.json", state)

    @classmethod
    def load(cls, folder: str | Path) -> LTRRanker:
        folder = Path(folder)
        state = read_json(folder / "ranker.json")
        state["boosters"] = [
            (folder / f"model-{k}.txt").read_text(encoding="utf-8") for k in range(len(state["iterations"]))
        ]
        return cls.from_state(state)
