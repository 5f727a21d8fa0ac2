"""Most-popular baseline: every user gets items ordered by training interaction count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fusionrank.collab.base import Recommender


@dataclass(frozen=True)
class PopConfig:
    """Popularity has no hyperparameters."""


class Pop(Recommender):
    """score(u, i) = number of training users who interacted with i."""

    config_class = PopConfig

    def fit(self, train: sp.csr_matrix) -> Pop:
        train = sp.csr_matrix(train)
        self.n_users, self.n_items = train.shape
        self.counts = np.asarray((train > 0).sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.broadcast_to(self.counts, (len(users), self.n_items))

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"]
