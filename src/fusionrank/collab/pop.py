"""Most-popular baseline: every user gets items ordered by training interaction count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fusionrank.columns import TRAIN
from fusionrank.recommender import Recommender

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class PopConfig:
    """Popularity has no hyperparameters."""


class Pop(Recommender):
    """score(u, i) = number of training users who interacted with i."""

    config_class = PopConfig

    def _fit(self, split: Split) -> None:
        self.counts = np.asarray(split.matrix(TRAIN).sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.broadcast_to(self.counts, (len(users), self.n_items))

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"]
