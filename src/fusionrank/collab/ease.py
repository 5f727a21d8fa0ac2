"""EASE (Steck, 2019): a closed-form item-item linear autoencoder with zero diagonal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from fusionrank.columns import TRAIN
from fusionrank.errors import InvalidArgumentError
from fusionrank.recommender import Recommender, csr_from_arrays, csr_to_arrays
from fusionrank.resources import InsufficientMemoryError, available_memory_bytes

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class EASEConfig:
    """L2 strength of the item-item weights."""

    reg: float = 250.0
    """lambda in B = argmin |X - XB|^2 + lambda |B|^2 s.t. diag(B) = 0."""
    max_items: int | None = None
    """Refuse larger catalogues before allocating: EASE holds dense items x items matrices
    (:func:`ease_memory`; 27k items: about 23 GB). None: refuse when that exceeds the
    memory available now."""
    top_items: int | None = None
    """The approximate variant: fit B on the ``top_items`` most popular training items only
    (memory and time in ``top_items``, not the catalogue); the other items are not scored
    by EASE (``-inf``: other sources retrieve them) and there is no item-item matrix for the
    cross-domain feature. None: exact EASE over every item."""

    def __post_init__(self) -> None:
        if self.reg <= 0:
            raise InvalidArgumentError(f"reg must be > 0, got {self.reg}")
        if self.max_items is not None and self.max_items < 1:
            raise InvalidArgumentError(f"max_items must be >= 1, got {self.max_items}")
        if self.top_items is not None and self.top_items < 1:
            raise InvalidArgumentError(f"top_items must be >= 1, got {self.top_items}")


BYTES_PER_CELL = 32
"""Peak bytes per items x items cell of :func:`ease_weights`: the float32 Gram product,
its float64 copy, the inverse, the scaled inverse and the float32 weights."""


def ease_memory(n_items: int) -> int:
    """Bytes EASE needs at its peak for ``n_items`` items.

    >>> round(ease_memory(27_000) / 1e9, 1)
    23.3
    """
    return BYTES_PER_CELL * n_items * n_items


def ease_weights(x: sp.csr_matrix, reg: float) -> np.ndarray:
    """B = I - P diagMat(1 / diag(P)) with P = (X^T X + lambda I)^-1 (the paper's closed form)."""
    gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
    gram.diagonal().add_(reg)
    p = torch.linalg.inv(gram)
    b = -p / torch.diagonal(p)[None, :]
    b.diagonal().zero_()
    # inv returns column-major storage: a C-ordered copy keeps each scoring product on
    # contiguous rows (scipy copied the whole matrix on every call before)
    return np.ascontiguousarray(b.to(torch.float32).numpy())


def history_product(history: sp.csr_matrix, weights: np.ndarray) -> np.ndarray:
    """``history @ weights`` for a sparse history and dense float32 item weights, as a sum
    of the weight rows of each user's items (torch's ``embedding_bag``, threaded; about 3x
    scipy's single-threaded product on a chunk of 512 users and 10,000 items). Each row is
    summed in the order of its items, as scipy does: the same values."""
    table = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))
    if history.nnz == 0:
        return np.zeros((history.shape[0], table.shape[1]), np.float32)
    out = torch.nn.functional.embedding_bag(
        torch.from_numpy(history.indices.astype(np.int64)),
        table,
        torch.from_numpy(history.indptr[:-1].astype(np.int64)),
        mode="sum",
        per_sample_weights=torch.from_numpy(history.data.astype(np.float32)),
    )
    return out.numpy()


def check_ease_memory(n_items: int, max_items: int | None = None) -> None:
    """Raise :class:`InsufficientMemoryError` (naming the count, the memory and the
    alternatives) when EASE on ``n_items`` is over ``max_items`` or, without one, over the
    memory available now."""
    need = ease_memory(n_items)
    if max_items is not None:
        if n_items <= max_items:
            return
        limit = f"max_items={max_items:,}"
    else:
        available = available_memory_bytes()
        if need <= available:
            return
        limit = f"{_size(available)} available"
    raise InsufficientMemoryError(
        f"EASE on {n_items:,} items needs dense items x items matrices, about {_size(need)} "
        f"at its peak ({limit}); set top_items (EASE on the most popular items only), use "
        "itemknn or rp3beta (sparse neighbours), or run it on a machine with that memory (and set max_items)"
    )


def _size(n_bytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"  # pragma: no cover


class EASE(Recommender):
    """score(u, ·) = x_u B."""

    config_class = EASEConfig

    def _fit(self, split: Split) -> None:
        train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self.kept = popular_items(train, self.config.top_items)
        n = split.n_items if self.kept is None else len(self.kept)
        check_ease_memory(n, self.config.max_items)
        self.train = train if self.kept is None else sp.csr_matrix(train[:, self.kept])
        self.weights = ease_weights(self.train, self.config.reg)

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        scores = history_product(sp.csr_matrix(self.train[users]), self.weights)
        if self.kept is None:
            return scores
        out = np.full((len(users), self.n_items), -np.inf, np.float32)
        out[:, self.kept] = scores
        return out

    def item_similarity(self) -> np.ndarray | None:
        """EASE's item-item weights B (zero diagonal); None for the ``top_items`` variant."""
        return self.weights if self.kept is None else None

    def state(self) -> dict[str, np.ndarray]:
        kept = {} if self.kept is None else {"kept_items": self.kept}
        return {"weights": self.weights, **csr_to_arrays("train", self.train), **kept}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = arrays["weights"]
        self.train = csr_from_arrays("train", arrays)
        self.kept = arrays.get("kept_items")


def popular_items(train: sp.csr_matrix, top: int | None) -> np.ndarray | None:
    """Indices (ascending) of the ``top`` items with the most training interactions, ties
    to the lower index; None when ``top`` is None or covers the catalogue.

    >>> popular_items(sp.csr_matrix(np.array([[1, 0, 1, 1], [0, 0, 1, 1]])), 2).tolist()
    [2, 3]
    """
    if top is None or top >= train.shape[1]:
        return None
    counts = np.asarray(train.sum(axis=0)).ravel()
    return np.sort(np.argsort(-counts, kind="stable")[:top])
