"""A user's own model, outside fusionrank, plugged in by its dotted class path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionrank.recommender import Recommender


@dataclass(frozen=True)
class MostRecentConfig:
    boost: float = 1.0
    """Extra weight of the items in the last 10% of training interactions."""


class MostRecent(Recommender):
    """Popularity plus a boost for recently popular items."""

    config_class = MostRecentConfig

    def _fit(self, split) -> None:
        train = split.train.sort_values("timestamp")
        recent = train.tail(max(1, len(train) // 10))
        self.counts = np.bincount(train["item_idx"], minlength=self.n_items).astype(np.float32)
        self.counts += self.config.boost * np.bincount(recent["item_idx"], minlength=self.n_items)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(self._check_users(users)), self.n_items)).copy()

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"]
