"""User profiles from side features (cold-start users), blended with history for users
who have only a few interactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.base import Recommender
from fusionrank.collab.mf import BPR, fixed_schedule
from fusionrank.collab.trainer import seed_everything


class FeatureRecommender(Recommender):
    """Base: ``fit(train, features)`` with one-hot user side features ``(n_users, n_features)``."""

    def fit(self, train: sp.csr_matrix, features: np.ndarray | None = None) -> FeatureRecommender:  # type: ignore[override]
        self.train = sp.csr_matrix(train, dtype=np.float32)
        self.n_users, self.n_items = train.shape
        self.features = features
        self._fit()
        return self

    def _fit(self) -> None:
        """Model-specific fitting."""


@dataclass(frozen=True)
class DemographicPopConfig:
    prior: float = 200.0
    """Pseudo-interactions of overall popularity added to each group's counts (shrinkage)."""


class DemographicPop(FeatureRecommender):
    """Popularity among training users with the same side features (age bucket, gender,
    occupation), smoothed with overall popularity so that small groups stay sensible."""

    config_class = DemographicPopConfig

    def _fit(self) -> None:
        if self.features is None:
            raise ValueError("DemographicPop needs user features (features=...)")
        item_pop = np.asarray(self.train.sum(axis=0)).ravel()
        prior = self.config.prior * item_pop / max(item_pop.sum(), 1)  # (c_g(i) + k p(i)) / (N_g + k)
        _, group = np.unique(self.features, axis=0, return_inverse=True)
        self._group = np.asarray(group).ravel()
        n_groups = int(self._group.max()) + 1
        member = sp.csr_matrix(
            (np.ones(self.n_users, np.float32), (self._group, np.arange(self.n_users))),
            shape=(n_groups, self.n_users),
        )
        counts = np.asarray((member @ self.train).todense())
        self._scores = ((counts + prior) / (counts.sum(axis=1, keepdims=True) + self.config.prior)).astype(
            np.float32
        )

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._scores[self._group[self._check_users(users)]]


@dataclass(frozen=True)
class ProfileConfig:
    """Feature tower into a BPR user space, and the history blend."""

    hidden: int = 0
    """Hidden width of the feature tower; 0 = linear (a vector per feature value, added)."""
    epochs: int = 5
    """Tower training epochs."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 0.0
    """Adam weight decay on the tower."""
    blend: float = 10.0
    """A user with n interactions is served alpha * history + (1 - alpha) * features,
    alpha = n / (n + blend)."""
    seed: int = 2020
    """Seed."""


class FeatureTower(nn.Module):
    def __init__(self, n_features: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.net = (
            nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, dim))
            if hidden
            else nn.Linear(n_features, dim)
        )  # additive: one vector per feature value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Profile(FeatureRecommender):
    """BPR gives the CF space (item vectors, fixed); a feature tower maps side features to a
    user vector in it, trained with a softmax over items on warm users, with item biases
    that start from log popularity (so the tower learns what demographics add to it)."""

    config_class = ProfileConfig

    def _fit(self) -> None:
        if self.features is None:
            raise ValueError("Profile needs user features (features=...)")
        cfg = self.config
        seed_everything(cfg.seed)
        batch = int(min(2048, max(64, self.train.nnz // 20)))  # at least ~20 steps per epoch
        self.cf = BPR(train_config=fixed_schedule(cfg.seed, batch))
        self.cf.fit(self.train)
        items = torch.from_numpy(self.cf.item_embeddings())
        pop = np.asarray(self.train.sum(axis=0)).ravel()
        self.bias = nn.Parameter(torch.from_numpy(np.log1p(pop).astype(np.float32)))
        self.tower = FeatureTower(self.features.shape[1], cfg.hidden, items.shape[1])
        opt = torch.optim.Adam(
            [
                {"params": self.tower.parameters(), "weight_decay": cfg.weight_decay},
                {"params": [self.bias], "weight_decay": 0.0},
            ],
            lr=cfg.learning_rate,
        )
        coo = self.train.tocoo()
        x = torch.from_numpy(self.features)
        rng = np.random.default_rng(cfg.seed)
        for _ in range(cfg.epochs):
            for idx in np.array_split(rng.permutation(coo.nnz), max(1, coo.nnz // batch)):
                logits = self.tower(x[coo.row[idx]]) @ items.T + self.bias
                loss = nn.functional.cross_entropy(logits, torch.from_numpy(coo.col[idx].astype(np.int64)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.tower.eval()
        with torch.no_grad():
            self._feature_vectors = self.tower(x).numpy()
            self._bias = self.bias.detach().numpy().copy()
        self._n = np.asarray(self.train.sum(axis=1)).ravel()

    @torch.inference_mode()
    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Scores for users known only by their side features, (n, n_features) -> (n, n_items)."""
        vectors = self.tower(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()
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
