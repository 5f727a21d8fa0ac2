"""User profiles from side features (cold-start users), blended with history for users
who have only a few interactions.

Side features come from the dataset profile (``user_features``, ``user_buckets``), one-hot
encoded. A user unknown to training is served from their side features: from the
dataset's user table, or from ``user_features`` given to ``recommend``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.mf import BPR, fixed_schedule
from fusionrank.collab.torch_base import ranking_validator
from fusionrank.collab.trainer import Trainable, TrainConfig, seed_everything, train_loop
from fusionrank.columns import TRAIN, USER_ID
from fusionrank.data.side import feature_values, one_hot
from fusionrank.errors import InvalidArgumentError
from fusionrank.recommender import Recommender, UnknownUserError, csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


class FeatureRecommender(Recommender):
    """Base: one-hot side features of every user of the split, and the cold-start path for
    users unknown to training (their side features)."""

    def _fit(self, split: Split) -> None:
        self.train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self.features, names = split.user_features()
        data = split.require_dataset("side features")
        self._spec: dict[str, Any] = {
            "columns": list(data.profile.user_features),
            "buckets": {k: list(v) for k, v in data.profile.user_buckets.items()},
            "names": names,
        }
        self._side_table = data.users
        self._fit_features(split)

    def _fit_features(self, split: Split) -> None:
        """Model-specific fitting."""

    def score_features(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover - each model has it
        """Scores (n, n_items) for users known only by one-hot side features (n, n_features)."""
        raise NotImplementedError

    def encode(self, user_ids: Sequence[str], user_features: pd.DataFrame | None = None) -> np.ndarray:
        """One-hot side features of ``user_ids`` from ``user_features`` (``user_id`` + the
        profile's columns) or, after ``fit``, from the dataset's user table."""
        table = user_features if user_features is not None else getattr(self, "_side_table", None)
        columns = self._spec["columns"]
        if table is None:
            raise UnknownUserError(
                f"{self.name}: user(s) {list(user_ids)[:5]} were not in training; pass their side features "
                f"as user_features=DataFrame with columns {[USER_ID, *columns]}"
            )
        missing = [c for c in (USER_ID, *columns) if c not in table.columns]
        if missing:
            raise InvalidArgumentError(
                f"{self.name}: user_features lacks column(s) {missing}; it needs {[USER_ID, *columns]}"
            )
        values = feature_values(table, columns, self._spec["buckets"])
        absent = [u for u in user_ids if u not in values.index]
        if absent:
            raise UnknownUserError(
                f"{self.name}: no side features for user(s) {absent[:5]}; give them in user_features "
                f"(columns {[USER_ID, *columns]})"
            )
        return one_hot(values, list(user_ids), self._spec["names"])

    def score_unknown(self, user_ids: Sequence[str], user_features: pd.DataFrame | None = None) -> np.ndarray:
        return self.score_features(self.encode(user_ids, user_features))

    def meta(self) -> dict[str, Any]:
        return {"features": self._spec}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self._spec = meta["features"]


@dataclass(frozen=True)
class DemographicPopConfig:
    """Shrinkage of each group's popularity towards overall popularity."""

    prior: float = 200.0
    """Pseudo-interactions of overall popularity added to each group's counts (shrinkage)."""


class DemographicPop(FeatureRecommender):
    """Popularity among training users with the same side features (e.g. age bucket, gender,
    occupation), smoothed with overall popularity so that small groups stay sensible."""

    config_class = DemographicPopConfig

    def _fit_features(self, split: Split) -> None:
        item_pop = np.asarray(self.train.sum(axis=0)).ravel()
        self._prior = (self.config.prior * item_pop / max(item_pop.sum(), 1)).astype(np.float32)
        self._groups, group = np.unique(self.features, axis=0, return_inverse=True)
        self._group = np.asarray(group).ravel()
        member = sp.csr_matrix(
            (np.ones(self.n_users, np.float32), (self._group, np.arange(self.n_users))),
            shape=(len(self._groups), self.n_users),
        )
        counts = np.asarray((member @ self.train).todense())  # (c_g(i) + k p(i)) / (N_g + k)
        self._scores = (
            (counts + self._prior) / (counts.sum(axis=1, keepdims=True) + self.config.prior)
        ).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._scores[self._group[self._check_users(users)]]

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """A group's scores; a combination nobody in training had gets overall popularity."""
        index = {row.tobytes(): g for g, row in enumerate(np.asarray(self._groups, np.float32))}
        fallback = self._prior / self.config.prior
        rows = [index.get(np.asarray(f, np.float32).tobytes()) for f in features]
        return np.stack([self._scores[g] if g is not None else fallback for g in rows]).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"groups": self._groups, "group": self._group, "scores": self._scores, "prior": self._prior}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._groups, self._group = arrays["groups"], arrays["group"]
        self._scores, self._prior = arrays["scores"], arrays["prior"]


@dataclass(frozen=True)
class ProfileConfig(TrainConfig):
    """Feature tower into a BPR user space, the history blend, and the tower's training."""

    hidden: int = 0
    """Hidden width of the feature tower; 0 = linear (a vector per feature value, added)."""
    blend: float = 10.0
    """A user with n interactions is served alpha * history + (1 - alpha) * features,
    alpha = n / (n + blend)."""
    epochs: int = 5
    """Tower training epochs."""
    batch_size: int = 2048
    """Interactions per step (at most; small data uses about 20 steps per epoch)."""
    validation: bool = False
    """Pick the epoch on valid (full ranking); off: train exactly ``epochs``."""
    softmax_items: int = 4096
    """The tower's softmax runs over every item when the catalogue has at most this many;
    above, over each interaction's item and this many items drawn uniformly at each step (a
    sampled softmax: a step's time and memory in this, not in the catalogue)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.softmax_items < 1:
            raise InvalidArgumentError(f"softmax_items must be >= 1, got {self.softmax_items}")


CF_STEPS_PER_EPOCH = 100
"""The BPR under the profile takes batches of at least 1/100 of the interactions (on ml-100k
its 2048 is larger; on a million interactions, about 8,000): its fixed schedule's step
count stops growing with the data."""


class FeatureTower(nn.Module):
    def __init__(self, n_features: int, hidden: int, dim: int, bias: np.ndarray) -> None:
        super().__init__()
        self.net = (
            nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, dim))
            if hidden
            else nn.Linear(n_features, dim)
        )  # additive: one vector per feature value
        self.bias = nn.Parameter(torch.from_numpy(bias.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Profile(FeatureRecommender, Trainable):
    """BPR gives the CF space (item vectors, fixed); a feature tower maps side features to a
    user vector in it, trained with a softmax over items on warm users, with item biases
    that start from log popularity (so the tower learns what demographics add to it)."""

    config_class = ProfileConfig
    module: FeatureTower

    def _fit_features(self, split: Split) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        self._batch = int(min(cfg.batch_size, max(64, self.train.nnz // 20)))  # ~20 steps per epoch at least
        cf_batch = max(self._batch, self.train.nnz // CF_STEPS_PER_EPOCH)
        self.cf = BPR(fixed_schedule(cfg.seed, cf_batch)).fit(split)
        self._sampled = self.n_items > cfg.softmax_items
        self._item_vecs = torch.from_numpy(self.cf.item_embeddings())
        pop = np.asarray(self.train.sum(axis=0)).ravel()
        self.module = FeatureTower(
            self.features.shape[1], cfg.hidden, self._item_vecs.shape[1], np.log1p(pop)
        )
        self._x = torch.from_numpy(self.features)
        self._coo = self.train.tocoo()
        self._n = np.asarray(self.train.sum(axis=1)).ravel()
        self._feature_vectors = np.zeros((self.n_users, self._item_vecs.shape[1]), np.float32)
        validate = (
            ranking_validator(self, split, cfg.valid_metric, cfg.valid_users, cfg.seed)
            if cfg.validation
            else None
        )
        self.history = train_loop(self, cfg, validate, desc="profile").as_dict()

    def parameter_groups(self, config: Any) -> list[dict[str, Any]]:
        return [
            {"params": list(self.module.net.parameters()), "weight_decay": config.weight_decay},
            {"params": [self.module.bias], "weight_decay": 0.0},
        ]

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[Any]:
        for rows in np.array_split(rng.permutation(self._coo.nnz), max(1, self._coo.nnz // self._batch)):
            yield (rows, rng.integers(0, self.n_items, self.config.softmax_items)) if self._sampled else rows

    def batch_loss(self, batch: Any) -> torch.Tensor:
        if not self._sampled:
            logits = self.module(self._x[self._coo.row[batch]]) @ self._item_vecs.T + self.module.bias
            targets = torch.from_numpy(self._coo.col[batch].astype(np.int64))
            return nn.functional.cross_entropy(logits, targets)
        rows, drawn = batch
        users = self.module(self._x[self._coo.row[rows]])
        pos = torch.from_numpy(self._coo.col[rows].astype(np.int64))
        neg = torch.from_numpy(drawn)
        bias = self.module.bias
        positive = (users * self._item_vecs[pos]).sum(dim=1, keepdim=True) + bias[pos, None]
        negative = users @ self._item_vecs[neg].T + bias[neg]
        negative = negative.masked_fill(neg[None, :] == pos[:, None], float("-inf"))  # a drawn positive
        logits = torch.cat([positive, negative], dim=1)  # uniform draws: no correction needed
        return nn.functional.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.int64))

    @torch.no_grad()
    def on_epoch_end(self) -> None:
        self.module.eval()
        self._feature_vectors = self.module(self._x).numpy()
        self._bias = self.module.bias.detach().numpy().copy()

    @torch.inference_mode()
    def score_features(self, features: np.ndarray) -> np.ndarray:
        vectors = self.module(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()
        return (vectors @ self.cf.item_embeddings().T + self._bias).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        """History scores (BPR) and feature scores (tower + its item bias), blended by the
        user's number of interactions; a user without any gets the feature scores alone."""
        users = self._check_users(users)
        alpha = (self._n[users] / (self._n[users] + self.config.blend))[:, None]
        items = self.cf.item_embeddings()
        history = self.cf.user_embeddings()[users] @ items.T + self.cf.item_bias()
        features = self._feature_vectors[users] @ items.T + self._bias
        return (alpha * history + (1 - alpha) * features).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        tower = {f"tower.{k}": v.detach().numpy() for k, v in self.module.state_dict().items()}
        cf = {f"cf.{k}": v for k, v in self.cf.state().items()}
        return {**tower, **cf, "features": self.features, "n": self._n, **csr_to_arrays("train", self.train)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.train = csr_from_arrays("train", arrays)
        self.features, self._n = arrays["features"], arrays["n"]
        self.cf = BPR(fixed_schedule(self.config.seed))
        self.cf.n_users, self.cf.n_items = self.n_users, self.n_items
        self.cf.load_state({k[3:]: v for k, v in arrays.items() if k.startswith("cf.")})
        tower = {k[6:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("tower.")}
        dim = self.cf.item_embeddings().shape[1]
        self.module = FeatureTower(self.features.shape[1], self.config.hidden, dim, np.zeros(self.n_items))
        self.module.load_state_dict(tower)
        self._x = torch.from_numpy(self.features)
        self.on_epoch_end()
