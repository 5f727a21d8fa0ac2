"""LightGBM lambdarank over the candidate feature table.

Query groups are users. Early stopping watches NDCG@``eval_at`` on a held-out share of
the *label* users (the validation split's users in the run pipeline), so neither the
fit nor the stopping decision sees test interactions. Explanations are LightGBM's own
per-row contributions (``pred_contrib``, SHAP values for trees).
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from fusionrank.columns import USER_IDX
from fusionrank.io import atomic_path, read_json, write_json


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
    early_stopping_rounds: int = 100
    stop_share: float = 0.2
    """Share of label users held out to decide when to stop."""
    eval_at: int = 10
    bags: int = 1
    """Boosters averaged, each with its own seed and stopping users."""
    refit: bool = True
    """After early stopping picks the tree count, refit on all label users with that count."""
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
    data-parallel workers, the table cut by user (:mod:`fusionrank.ranker.ray_train`), on
    the Ray of this process, else ``$RAY_ADDRESS``, else a local instance (in a run:
    ``ray.address``)."""
    workers: int = 2
    """Ray Train workers (``engine: ray``), one CPU each unless ``threads`` says more."""
    storage: str | None = None
    """Where Ray Train keeps the booster checkpoint (``engine: ray``); None: a temp folder,
    removed after loading. On a multi-node cluster, a path every node can write (NFS, s3://)."""

    def __post_init__(self) -> None:
        if self.bags < 1:
            raise ValueError(f"bags must be >= 1, got {self.bags}")
        if self.max_users is not None and self.max_users < 2:
            raise ValueError(f"max_users must be >= 2 (or None), got {self.max_users}")
        if not 0 < self.stop_share < 1:
            raise ValueError(f"stop_share must be in (0, 1), got {self.stop_share}")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"ranker.engine must be 'local' or 'ray', got {self.engine!r}")
        if self.workers < 1:
            raise ValueError(f"ranker.workers must be >= 1, got {self.workers}")


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


def groups_of(users: np.ndarray) -> np.ndarray:
    """Group sizes of a user-sorted key column (LightGBM's ``group``)."""
    users = np.asarray(users)
    if len(users) and np.any(np.diff(users) < 0):
        raise ValueError("rows must be sorted by user so that each user's rows are contiguous")
    _, counts = np.unique(users, return_counts=True)
    return counts


class LTRRanker:
    """``fit(features, labels)`` then ``predict``; importances and contributions.

    With ``bags > 1`` the ranker is the mean of that many boosters, each with its own seed
    and its own held-out stopping users; predictions, contributions and importances are
    averaged (contributions stay additive)."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.boosters: list[lgb.Booster] = []
        self.iterations: list[int] = []
        self.features: list[str] = []
        self.stop_score = float("nan")

    @property
    def best_iteration(self) -> int:
        """Trees per booster (the mean when bagged)."""
        return int(round(np.mean(self.iterations))) if self.iterations else 0

    def fit(self, table: pd.DataFrame, features: list[str], label: str = "label") -> LTRRanker:
        """Fit on a user-sorted table; a seeded share of its users decides early stopping."""
        cfg = self.config
        if not features:
            raise ValueError("no feature columns to fit on")
        missing = [c for c in [*features, label, USER_IDX] if c not in table.columns]
        if missing:
            raise KeyError(f"feature table has no column(s) {missing}")
        users = table[USER_IDX].to_numpy()
        positives = table.groupby(USER_IDX)[label].sum()
        with_pos = positives.index[positives.to_numpy() > 0].to_numpy()
        if len(with_pos) < 2:
            raise ValueError("need at least two users with a positive label to fit and stop")
        with_pos = training_users(with_pos, cfg)
        table = table[np.isin(users, with_pos)]  # groups without a positive carry no gradient
        self.features = list(features)
        self.boosters, self.iterations, scores = [], [], []
        with self._engine():
            for bag in range(cfg.bags):
                booster, iterations, score = self._fit_one(table, with_pos, label, cfg.seed + bag)
                self.boosters.append(booster)
                self.iterations.append(iterations)
                scores.append(score)
        self.stop_score = float(np.mean(scores))
        return self

    def _engine(self) -> AbstractContextManager[Any]:
        """One Ray instance for all of a fit's boosters (``engine: ray``)."""
        if self.config.engine == "ray":
            from fusionrank.ray_support import ray_session

            return ray_session(None, quiet=True)
        return nullcontext()

    def _fit_one(
        self, table: pd.DataFrame, with_pos: np.ndarray, label: str, seed: int
    ) -> tuple[lgb.Booster, int, float]:
        cfg = self.config
        users = table[USER_IDX].to_numpy()
        rng = np.random.default_rng(seed)
        stop_users = rng.choice(
            with_pos, size=max(1, int(round(cfg.stop_share * len(with_pos)))), replace=False
        )
        held = np.isin(users, stop_users)
        if cfg.engine == "ray":
            return self._fit_on_ray(table, held, label, seed)
        model = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples,
            subsample=cfg.subsample,
            subsample_freq=1,
            colsample_bytree=cfg.colsample_bytree,
            reg_lambda=cfg.reg_lambda,
            lambdarank_truncation_level=cfg.truncation_level,
            random_state=seed,
            n_jobs=cfg.threads or None,
            deterministic=cfg.deterministic,
            force_row_wise=cfg.deterministic,
            verbose=-1,
        )
        features = self.features
        fit_rows, stop_rows = table[~held], table[held]
        with warnings.catch_warnings():  # LightGBM >= 4.7 renames eval_set; >= 4.3 is supported
            warnings.filterwarnings("ignore", message=".*eval_set.*")
            model.fit(
                fit_rows[features],
                fit_rows[label].to_numpy(),
                group=groups_of(fit_rows[USER_IDX].to_numpy()),
                eval_set=[(stop_rows[features], stop_rows[label].to_numpy())],
                eval_group=[groups_of(stop_rows[USER_IDX].to_numpy())],
                eval_at=[cfg.eval_at],
                callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
            )
        iterations = int(model.best_iteration_ or model.n_estimators)
        score = float(model.best_score_["valid_0"][f"ndcg@{cfg.eval_at}"])
        if cfg.refit:
            model.set_params(n_estimators=iterations)
            model.fit(table[features], table[label].to_numpy(), group=groups_of(users))
        return model.booster_, iterations, score

    def _fit_on_ray(
        self, table: pd.DataFrame, held: np.ndarray, label: str, seed: int
    ) -> tuple[lgb.Booster, int, float]:
        """``_fit_one`` on Ray Train: the same LightGBM settings, the same stopping users."""
        from fusionrank.ranker.ray_train import train_on_ray

        cfg = self.config
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [cfg.eval_at],
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "subsample": cfg.subsample,
            "subsample_freq": 1,
            "colsample_bytree": cfg.colsample_bytree,
            "reg_lambda": cfg.reg_lambda,
            "lambdarank_truncation_level": cfg.truncation_level,
            "seed": seed,
            "deterministic": cfg.deterministic,
            "force_row_wise": cfg.deterministic,
            "verbose": -1,
        }
        where: dict[str, Any] = {
            "workers": cfg.workers,
            "threads": cfg.threads,
            "storage": cfg.storage,
        }
        booster, iterations, score = train_on_ray(
            params,
            table[~held],
            self.features,
            label,
            rounds=cfg.n_estimators,
            stop=table[held],
            early_stopping_rounds=cfg.early_stopping_rounds,
            eval_at=cfg.eval_at,
            **where,
        )
        if cfg.refit:
            booster, _, _ = train_on_ray(params, table, self.features, label, rounds=iterations, **where)
        return booster, iterations, score

    def _check(self) -> list[lgb.Booster]:
        if not self.boosters:
            raise RuntimeError("LTRRanker is not fitted; call fit() or load() first")
        return self.boosters

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        x = table[self.features]
        # a DataFrame in gives a dense array out (sparse output only comes from sparse input)
        return np.mean(
            [cast(np.ndarray, b.predict(x, num_iteration=n)) for b, n in zip(self._check(), self.iterations)],
            axis=0,
        )

    def contributions(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per-row additive contributions of each feature (and ``bias``) to the score."""
        x = table[self.features]
        values = np.mean(
            [
                cast(np.ndarray, b.predict(x, num_iteration=n, pred_contrib=True))
                for b, n in zip(self._check(), self.iterations)
            ],
            axis=0,
        )
        return pd.DataFrame(values, columns=[*self.features, "bias"], index=table.index)

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

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for k, (booster, n) in enumerate(zip(self._check(), self.iterations)):
            with atomic_path(folder / f"model-{k}.txt") as tmp:
                booster.save_model(str(tmp), num_iteration=n)
        write_json(
            folder / "ranker.json",
            {
                "config": dataclasses.asdict(self.config),
                "features": self.features,
                "iterations": self.iterations,
                "stop_score": self.stop_score,
            },
        )

    @classmethod
    def load(cls, folder: str | Path) -> LTRRanker:
        folder = Path(folder)
        meta = read_json(folder / "ranker.json")
        ranker = cls(RankerConfig(**meta["config"]))
        ranker.iterations = list(meta["iterations"])
        ranker.boosters = [
            lgb.Booster(model_file=str(folder / f"model-{k}.txt")) for k in range(len(ranker.iterations))
        ]
        ranker.features = meta["features"]
        ranker.stop_score = meta["stop_score"]
        return ranker
