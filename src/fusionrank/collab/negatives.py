"""Vectorised negative sampling: items a user has not interacted with in training."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from fusionrank.errors import InvalidArgumentError

NegativeKind = Literal["uniform", "popularity"]


class NegativeSampler:
    """Draws ``k`` negatives per user, uniformly or in proportion to popularity^alpha, never a
    training positive of that user (collisions are redrawn until none is left)."""

    def __init__(self, train: sp.csr_matrix, kind: NegativeKind = "uniform", alpha: float = 0.75) -> None:
        train = sp.csr_matrix(train)
        self.n_users, self.n_items = train.shape
        coo = train.tocoo()
        self._keys = np.sort(coo.row.astype(np.int64) * self.n_items + coo.col)
        self._max_pos = int(np.diff(train.indptr).max(initial=0))
        if self._max_pos >= self.n_items:
            raise InvalidArgumentError("a user has interacted with every item: no negative to sample")
        self._cdf: np.ndarray | None
        if kind == "popularity":
            pop = np.asarray(train.sum(axis=0)).ravel() + 1.0
            p = pop**alpha
            self._cdf = np.cumsum(p / p.sum())
        elif kind == "uniform":
            self._cdf = None
        else:
            raise InvalidArgumentError(f"negative sampling must be uniform or popularity, got {kind!r}")

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, self.n_items, size=size)
        return np.minimum(np.searchsorted(self._cdf, rng.random(size)), self.n_items - 1)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def sample(self, users: np.ndarray, rng: np.random.Generator, k: int = 1) -> np.ndarray:
        """(len(users), k) negative item indices."""
        users = np.repeat(np.asarray(users, dtype=np.int64), k)
        items = self._draw(len(users), rng)
        bad = np.flatnonzero(self.is_positive(users, items))
        while len(bad):
            items[bad] = self._draw(len(bad), rng)
            bad = bad[self.is_positive(users[bad], items[bad])]
        return items.reshape(-1, k)
