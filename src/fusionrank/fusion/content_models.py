"""Recommenders that score items nobody has interacted with, from their content or
categories: random and genre-popularity references, content KNN, and EASE with a ridge map
from content to EASE columns (``ease-content``).

Every model scores all items, so the same evaluator runs protocol (a) of the cold-items
split (cold items only) and (b) (all items).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from fusionrank.collab.ease import ease_weights
from fusionrank.columns import TRAIN
from fusionrank.data.vectors import unit_rows
from fusionrank.fusion.content import Content, load_content
from fusionrank.recommender import Recommender, csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


class ContentRecommender(Recommender):
    """Base: the training matrix, which items are warm (have a training interaction), and
    the content of the modalities its config names (``modalities``)."""

    content: Content | None

    @property
    def content_modalities(self) -> tuple[str, ...]:
        """The modalities its config names (none for the references that read no content)."""
        return tuple(getattr(self.config, "modalities", ()))

    def _fit(self, split: Split) -> None:
        self.train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self.warm = np.asarray(self.train.sum(axis=0)).ravel() > 0
        modalities = self.content_modalities
        self.content = load_content(split, modalities) if modalities else None
        self._fit_content(split)

    def _fit_content(self, split: Split) -> None:
        """Model-specific fitting after the common set-up."""

    def _vectors(self) -> np.ndarray:
        if self.content is None:
            raise RuntimeError(f"{type(self).__name__} was fitted without content")
        return self.content.vectors


@dataclass(frozen=True)
class RandomConfig:
    """Seeded uniform scores."""

    seed: int = 2020
    """Seed of the random scores (each user's row comes from (seed, user))."""


class RandomScores(ContentRecommender):
    """Uniformly random scores, fixed per user and item by the seed (a reference)."""

    config_class = RandomConfig

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        out = np.empty((len(users), self.n_items), np.float32)
        for r, u in enumerate(users):
            out[r] = np.random.default_rng([self.config.seed, int(u)]).random(self.n_items, dtype=np.float32)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        pass


@dataclass(frozen=True)
class GenrePopConfig:
    """Genre popularity has no hyperparameters (genres come from the dataset profile)."""


class GenrePop(ContentRecommender):
    """score(c) = mean training popularity (interactions per item) of the genres of c."""

    config_class = GenrePopConfig

    def _fit_content(self, split: Split) -> None:
        g = sp.csr_matrix(split.genres()[0], dtype=np.float32)
        item_pop = np.asarray(self.train.sum(axis=0)).ravel()
        genre_items = np.asarray((g[self.warm]).sum(axis=0)).ravel()
        genre_pop = (g.T @ item_pop) / np.maximum(genre_items, 1)  # interactions per warm item of the genre
        n = np.asarray(g.sum(axis=1)).ravel()
        self._item = ((g @ genre_pop) / np.maximum(n, 1)).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._item, (len(self._check_users(users)), self.n_items))

    def state(self) -> dict[str, np.ndarray]:
        return {"item": self._item}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._item = arrays["item"]


@dataclass(frozen=True)
class ContentKNNConfig:
    """Which content to compare."""

    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg), each L2-normalised and concatenated."""


class ContentKNN(ContentRecommender):
    """score(u, c) = cos(mean content of u's history, content of c)."""

    config_class = ContentKNNConfig

    def _fit_content(self, split: Split) -> None:
        self._x = unit_rows(self._vectors())

    def _profiles(self, users: np.ndarray) -> np.ndarray:
        return unit_rows(np.asarray(self.train[self._check_users(users)] @ self._x))

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._profiles(users) @ self._x.T

    def score_content(self, users: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self._profiles(users) @ unit_rows(np.asarray(vectors, np.float32)).T

    def state(self) -> dict[str, np.ndarray]:
        return {"x": self._x, **csr_to_arrays("train", self.train)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._x, self.train = arrays["x"], csr_from_arrays("train", arrays)


@dataclass(frozen=True)
class EASEContentConfig:
    """EASE on warm items and a ridge map from content to EASE columns."""

    reg: float = 250.0
    """EASE lambda (on warm items)."""
    ridge: float = 10.0
    """Ridge strength of the map from content to EASE columns."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg)."""


class EASEContent(ContentRecommender):
    """EASE on warm items; a cold item's EASE column is predicted from its content by ridge
    regression (fitted on the warm items' columns), so warm and cold scores share a scale."""

    config_class = EASEContentConfig

    def _fit_content(self, split: Split) -> None:
        vectors = self._vectors()
        warm = np.flatnonzero(self.warm)
        b = ease_weights(self.train[:, warm], self.config.reg)  # (n_warm, n_warm)
        x = vectors[warm].astype(np.float64)  # (n_warm, d)
        gram = x.T @ x + self.config.ridge * np.eye(x.shape[1])
        self._map = np.linalg.solve(gram, x.T @ b.T.astype(np.float64))  # (d, n_warm): content -> column
        columns = (vectors.astype(np.float64) @ self._map).T  # (n_warm, n_items)
        columns[:, warm] = b
        self._warm_idx = warm
        self._columns = columns.astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._warm_idx]
        return np.asarray(x @ self._columns, dtype=np.float32)

    def score_content(self, users: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._warm_idx]
        columns = (np.asarray(vectors, np.float64) @ self._map).T  # (n_warm, n_new)
        return np.asarray(x @ columns, dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """Each item's EASE column over the warm items (cold items from content)."""
        return np.ascontiguousarray(self._columns.T)

    def state(self) -> dict[str, Any]:
        return {
            "warm": self._warm_idx,
            "columns": self._columns,
            "map": self._map,
            **csr_to_arrays("train", self.train),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._warm_idx, self._columns, self._map = arrays["warm"], arrays["columns"], arrays["map"]
        self.train = csr_from_arrays("train", arrays)
