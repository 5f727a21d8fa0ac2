"""Implicit ALS: weighted matrix factorisation by alternating least squares (Hu, Koren and
Volinsky, ICDM 2008), the ``ImplicitALS`` of RecTools and the ``implicit`` library.

Every (user, item) cell counts: an observed one with confidence ``1 + alpha`` towards 1,
every other with confidence 1 towards 0. Each half-step solves every user's (or item's)
ridge regression exactly, in closed form, so the fit needs no learning rate and no
sampling, and the same data and seed give the same factors. The per-row systems are
``G + alpha * sum_{i in row} y_i y_i^T + reg * I``, where ``G`` is the other side's Gram
matrix; the sum is one sparse product with the other side's flattened outer products
(``y_i y_i^T`` as a row of ``factors**2`` values), taken over blocks of that side, so memory
is ``block x factors**2``, never users x items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from fusionrank.columns import TRAIN
from fusionrank.data.splits import Split
from fusionrank.errors import InvalidArgumentError
from fusionrank.recommender import Recommender


@dataclass(frozen=True)
class IALSConfig:
    """Factors, confidence, ridge strength and iterations (defaults chosen on ml-100k's
    valid split, seed 2020)."""

    factors: int = 64
    """Dimension of the user and item vectors."""
    alpha: float = 30.0
    """Confidence of an observed cell: 1 + alpha (unobserved cells: 1)."""
    reg: float = 100.0
    """Ridge strength on each vector."""
    iterations: int = 15
    """Alternations (users then items)."""
    seed: int = 2020
    """Seed of the initial item vectors."""
    block_size: int = 1024
    """Rows of the other side whose outer products are held at once (memory:
    ``block_size x factors**2`` floats) and rows solved at once."""

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"dim": ("factors",)}

    def __post_init__(self) -> None:
        for name in ("factors", "iterations", "block_size"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.alpha < 0 or self.reg <= 0:
            raise InvalidArgumentError(f"alpha must be >= 0 and reg > 0, got {self.alpha} and {self.reg}")


def als_half_step(x: sp.csr_matrix, other: np.ndarray, alpha: float, reg: float, block: int) -> np.ndarray:
    """The exact least-squares vectors of ``x``'s rows given the other side's vectors.

    For row u: ``(G + alpha * Y_u^T Y_u + reg I) p_u = (1 + alpha) Y_u^T 1``, with ``Y_u``
    the vectors of u's columns and ``G = Y^T Y``.

    >>> x = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> als_half_step(x, np.eye(2), alpha=1.0, reg=1.0, block=8).astype(float).round(3).tolist()
    [[0.667, 0.0], [0.0, 0.667]]
    """
    k = other.shape[1]
    other64 = other.astype(np.float64)
    gram = other64.T @ other64 + reg * np.eye(k)
    rhs_all = (1.0 + alpha) * (x @ other64)  # (rows, k)
    out = np.empty((x.shape[0], k), dtype=np.float32)
    for first in range(0, x.shape[0], block):
        rows = x[first : first + block]
        lhs = np.broadcast_to(gram, (rows.shape[0], k, k)).copy().reshape(rows.shape[0], k * k)
        for col in range(0, other.shape[0], block):
            part = rows[:, col : col + block]
            if part.nnz == 0:
                continue
            y = other64[col : col + block]
            outer = np.einsum("ik,il->ikl", y, y).reshape(len(y), k * k)
            lhs += alpha * (part @ outer)
        out[first : first + block] = np.linalg.solve(
            lhs.reshape(-1, k, k), rhs_all[first : first + block, :, None]
        )[:, :, 0]
    return out


class IALS(Recommender):
    """score(u, i) = <p_u, q_i>, the factors of weighted least squares on the binary
    training matrix."""

    config_class = IALSConfig

    def _fit(self, split: Split) -> None:
        cfg = self.config
        x = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float64)
        x.data[:] = 1.0
        xt = x.T.tocsr()
        rng = np.random.default_rng(cfg.seed)
        items = (rng.standard_normal((x.shape[1], cfg.factors)) * 0.01).astype(np.float32)
        users = np.zeros((x.shape[0], cfg.factors), np.float32)
        for _ in range(cfg.iterations):
            users = als_half_step(x, items, cfg.alpha, cfg.reg, cfg.block_size)
            items = als_half_step(xt, users, cfg.alpha, cfg.reg, cfg.block_size)
        self.user_factors, self.item_factors = users, items

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return self.user_factors[users] @ self.item_factors.T

    def state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors, self.item_factors = arrays["user_factors"], arrays["item_factors"]
