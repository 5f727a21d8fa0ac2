"""Item-based k-nearest-neighbours with shrunk cosine similarity (as RecBole's ItemKNN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from fusionrank.columns import TRAIN
from fusionrank.errors import InvalidArgumentError
from fusionrank.recommender import Recommender, csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class ItemKNNConfig:
    """Neighbourhood size and shrinkage of the cosine similarity."""

    k: int = 100
    """Neighbours kept per item (the most similar ``k`` items)."""
    shrink: float = 0.0
    """Added to the cosine denominator: sim = x_i.x_j / (|x_i| |x_j| + shrink)."""
    block_size: int = 512
    """Items whose similarities are computed at once (memory: n_items x block_size)."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidArgumentError(f"k must be >= 1, got {self.k}")
        if self.shrink < 0:
            raise InvalidArgumentError(f"shrink must be >= 0, got {self.shrink}")


def knn_similarity(x: sp.csr_matrix, k: int, shrink: float, block_size: int = 512) -> sp.csr_matrix:
    """Column ``j`` holds the ``k`` items most similar to item ``j`` (self excluded).

    sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink + 1e-6), computed in column blocks.
    """
    xc = sp.csc_matrix(x, dtype=np.float32)
    n_items = xc.shape[1]
    k = min(k, n_items - 1) if n_items > 1 else 0
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel()).astype(np.float32)
    xt = xc.T.tocsr()
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block_size):
        stop = min(start + block_size, n_items)
        block = (xt @ xc[:, start:stop]).toarray()  # (n_items, b)
        block /= norms[:, None] * norms[None, start:stop] + shrink + 1e-6
        block[np.arange(start, stop), np.arange(stop - start)] = 0.0
        if k == 0:
            continue
        top = np.argpartition(-block, k - 1, axis=0)[:k]  # (k, b)
        top_vals = np.take_along_axis(block, top, axis=0)
        nz = top_vals != 0
        rows.append(top[nz])
        cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[nz])
        vals.append(top_vals[nz])
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)  # type: ignore[arg-type]  # stub gap
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )


class ItemKNN(Recommender):
    """score(u, j) = sum of sim(i, j) over the user's items i among j's k neighbours."""

    config_class = ItemKNNConfig

    def _fit(self, split: Split) -> None:
        self.train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self.similarity = knn_similarity(
            self.train, self.config.k, self.config.shrink, self.config.block_size
        )

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.asarray((self.train[users] @ self.similarity).todense(), dtype=np.float32)

    def item_similarity(self) -> sp.csr_matrix:
        """The kept neighbour similarities (column j: the items most similar to j)."""
        return self.similarity

    def state(self) -> dict[str, np.ndarray]:
        return {**csr_to_arrays("train", self.train), **csr_to_arrays("similarity", self.similarity)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.train = csr_from_arrays("train", arrays)
        self.similarity = csr_from_arrays("similarity", arrays)
