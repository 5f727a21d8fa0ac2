"""EASE (Steck, 2019): a closed-form item-item linear autoencoder with zero diagonal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from fusionrank.columns import TRAIN
from fusionrank.recommender import Recommender, csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class EASEConfig:
    """L2 strength of the item-item weights."""

    reg: float = 250.0
    """lambda in B = argmin |X - XB|^2 + lambda |B|^2 s.t. diag(B) = 0."""

    def __post_init__(self) -> None:
        if self.reg <= 0:
            raise ValueError(f"reg must be > 0, got {self.reg}")


def ease_weights(x: sp.csr_matrix, reg: float) -> np.ndarray:
    """B = I - P diagMat(1 / diag(P)) with P = (X^T X + lambda I)^-1 (the paper's closed form)."""
    gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
    gram.diagonal().add_(reg)
    p = torch.linalg.inv(gram)
    b = -p / torch.diagonal(p)[None, :]
    b.diagonal().zero_()
    return b.to(torch.float32).numpy()


class EASE(Recommender):
    """score(u, ·) = x_u B."""

    config_class = EASEConfig

    def _fit(self, split: Split) -> None:
        self.train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self.weights = ease_weights(self.train, self.config.reg)

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.asarray(self.train[users] @ self.weights, dtype=np.float32)

    def item_similarity(self) -> np.ndarray:
        """EASE's item-item weights B (zero diagonal)."""
        return self.weights

    def state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, **csr_to_arrays("train", self.train)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = arrays["weights"]
        self.train = csr_from_arrays("train", arrays)
