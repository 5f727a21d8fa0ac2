"""Two more neighbourhood models, cheap and different from item-item regression:
user-based KNN (who is like you) and RP3beta (three-step random walk user -> item ->
user -> item with a popularity penalty, Paudel et al. 2017 / Dacrema et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from fusionrank.collab.itemknn import knn_similarity
from fusionrank.columns import TRAIN
from fusionrank.errors import InvalidArgumentError
from fusionrank.recommender import Recommender, csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class UserKNNConfig:
    """Neighbourhood size and shrinkage of the user-user cosine."""

    k: int = 50
    """Neighbours kept per user."""
    shrink: float = 0.0
    """Added to the cosine denominator."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidArgumentError(f"k must be >= 1, got {self.k}")


class UserKNN(Recommender):
    """score(u, j) = sum of sim(u, v) over u's k most similar users v who have j."""

    config_class = UserKNNConfig

    def _fit(self, split: Split) -> None:
        self.train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        # column v of knn_similarity(train.T) holds v's neighbours; transpose to rows
        self.neighbours = knn_similarity(self.train.T.tocsr(), self.config.k, self.config.shrink).T.tocsr()

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.asarray((self.neighbours[users] @ self.train).todense(), dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {**csr_to_arrays("train", self.train), **csr_to_arrays("neighbours", self.neighbours)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.train = csr_from_arrays("train", arrays)
        self.neighbours = csr_from_arrays("neighbours", arrays)


@dataclass(frozen=True)
class RP3betaConfig:
    """Random-walk exponent, popularity penalty and neighbourhood size."""

    alpha: float = 1.0
    """Exponent on the transition probabilities."""
    beta: float = 0.5
    """Popularity penalty: weights into item j are divided by pop_j ** beta."""
    k: int = 200
    """Weights kept per source item."""
    block_size: int = 512
    """Source items whose walks are computed at once (memory: block_size x n_items)."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidArgumentError(f"k must be >= 1, got {self.k}")


class RP3beta(Recommender):
    """W[i, j] = (P(u|i) P(j|u) summed over u) ** alpha / pop_j ** beta, top-k per i;
    score(u, .) = x_u W."""

    config_class = RP3betaConfig

    def _fit(self, split: Split) -> None:
        x = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self.train = x
        cfg = self.config
        user_deg = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)
        pop = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1)
        p_ui = sp.diags(1 / user_deg) @ x  # user -> item
        p_iu = (sp.diags(1 / pop) @ x.T).tocsr()  # item -> user
        penalty = (pop**-cfg.beta).astype(np.float32)
        k = min(cfg.k, self.n_items - 1) if self.n_items > 1 else 0
        rows, cols, vals = [], [], []
        for start in range(0, self.n_items, cfg.block_size):
            stop = min(start + cfg.block_size, self.n_items)
            block = np.asarray((p_iu[start:stop] @ p_ui).todense(), dtype=np.float32) ** cfg.alpha
            block *= penalty[None, :]
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            if k == 0:
                continue
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            top_vals = np.take_along_axis(block, top, axis=1)
            nz = top_vals > 0
            rows.append(np.broadcast_to(np.arange(start, stop)[:, None], top.shape)[nz])
            cols.append(top[nz])
            vals.append(top_vals[nz])
        self.weights = sp.csr_matrix(
            (
                np.concatenate(vals) if vals else [],
                (np.concatenate(rows) if rows else [], np.concatenate(cols) if cols else []),
            ),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.asarray((self.train[users] @ self.weights).todense(), dtype=np.float32)

    def item_similarity(self) -> sp.csr_matrix:
        """The random-walk weights W (top-k per source item)."""
        return self.weights

    def state(self) -> dict[str, np.ndarray]:
        return {**csr_to_arrays("train", self.train), **csr_to_arrays("weights", self.weights)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.train = csr_from_arrays("train", arrays)
        self.weights = csr_from_arrays("weights", arrays)
