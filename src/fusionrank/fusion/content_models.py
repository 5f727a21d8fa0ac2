"""Recommenders that score items nobody has interacted with, from their content or
categories: random and genre-popularity references, content KNN, EASE with a ridge map
from content to EASE columns (``ease-content``), and the same map as a kernel ridge
regression whose kernel width is chosen on pseudo-cold items (``kernel-content``).

Every model scores all items, so the same evaluator runs protocol (a) of the cold-items
split (cold items only) and (b) (all items).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from fusionrank.collab.ease import check_ease_memory, ease_weights, popular_items
from fusionrank.columns import TRAIN, VALID
from fusionrank.data.vectors import unit_rows
from fusionrank.errors import InvalidArgumentError
from fusionrank.fusion.content import Content, load_content
from fusionrank.fusion.validation import linear_scores, mixed_factors, pseudo_cold_items, validation_ndcg
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
    """Content modalities (text, image, clip, kg, genres), each L2-normalised and concatenated."""


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


def content_kernel(a: np.ndarray, b: np.ndarray, sharpness: float) -> np.ndarray:
    """exp(s * (cos(a, b) - 1)) between unit rows: 1 for the same content, smaller as it differs."""
    return np.exp(sharpness * (a @ b.T - 1.0))


class ContentColumns(ContentRecommender):
    """Base of the models whose items are columns over the warm items: a warm item's EASE
    column, a cold one's predicted from its content (``_content_columns``). Scores, item
    vectors and the saved state are the same for all of them; each keeps its own map."""

    _warm_idx: np.ndarray
    _columns: np.ndarray

    def _fit(self, split: Split) -> None:
        # EASE over the column items: refuse a catalogue whose dense matrices do not fit in
        # memory, naming the count and the need, before allocating them
        warm = int((split.matrix(TRAIN).getnnz(axis=0) > 0).sum())
        limit = getattr(self.config, "max_items", None)
        check_ease_memory(warm if limit is None else min(warm, limit))
        super()._fit(split)

    def _column_items(self) -> np.ndarray:
        """The warm items whose EASE columns the model keeps (sorted): every warm item, or
        the config's ``max_items`` most popular ones (the other warm items are then scored
        from their content, as cold items are)."""
        warm = np.flatnonzero(self.warm)
        kept = popular_items(self.train[:, warm], getattr(self.config, "max_items", None))
        return warm if kept is None else warm[kept]

    def _content_columns(self, vectors: np.ndarray) -> np.ndarray:
        """``(n_warm, len(vectors))`` columns predicted from content vectors."""
        raise NotImplementedError

    def _map_state(self) -> dict[str, np.ndarray]:
        """The arrays of the content map (saved beside the columns)."""
        raise NotImplementedError

    def _load_map(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._warm_idx]
        return np.asarray(x @ self._columns, dtype=np.float32)

    def score_content(self, users: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._warm_idx]
        return np.asarray(x @ self._columns_for(vectors), dtype=np.float32)

    def _columns_for(self, vectors: np.ndarray) -> np.ndarray:
        """``_content_columns(vectors)``, kept for the last read-only array asked about (the
        same object, which cannot have changed since): a service scores the catalogue's
        content, or the added items', for every user a chunk at a time, and the columns cost
        far more than the product (27,000 items over 5,000 columns: a teraflop), so they are
        computed once, not per chunk. A writeable array is computed afresh each call."""
        last = self._last_columns
        if last is not None and last[0] is vectors:
            return last[1]
        columns = self._content_columns(vectors)
        if isinstance(vectors, np.ndarray) and not vectors.flags.writeable:
            self._last_columns = (vectors, columns)
        return columns

    _last_columns: tuple[np.ndarray, np.ndarray] | None = None

    def item_vectors(self) -> np.ndarray:
        """Each item's EASE column over the warm items (cold items from content)."""
        return np.ascontiguousarray(self._columns.T)

    def state(self) -> dict[str, Any]:
        return {
            "warm": self._warm_idx,
            "columns": self._columns,
            **self._map_state(),
            **csr_to_arrays("train", self.train),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._warm_idx, self._columns = arrays["warm"], arrays["columns"]
        self._load_map(arrays)
        self.train = csr_from_arrays("train", arrays)


@dataclass(frozen=True)
class EASEContentConfig:
    """EASE on warm items and a ridge map from content to EASE columns."""

    reg: float = 250.0
    """EASE lambda (on warm items)."""
    ridge: float = 10.0
    """Ridge strength of the map from content to EASE columns."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg, genres)."""
    max_items: int | None = None
    """EASE over the ``max_items`` most popular warm items only (memory and time in
    ``max_items``, not the catalogue); the other warm items are scored from content. None:
    every warm item."""

    def __post_init__(self) -> None:
        _check_max_items(self.max_items)


def _check_max_items(max_items: int | None) -> None:
    if max_items is not None and max_items < 1:
        raise InvalidArgumentError(f"max_items must be >= 1, got {max_items}")


class EASEContent(ContentColumns):
    """EASE on warm items; a cold item's EASE column is predicted from its content by ridge
    regression (fitted on the warm items' columns), so warm and cold scores share a scale."""

    config_class = EASEContentConfig

    def _fit_content(self, split: Split) -> None:
        vectors = self._vectors()
        warm = self._column_items()
        b = ease_weights(self.train[:, warm], self.config.reg)  # (n_warm, n_warm)
        x = vectors[warm].astype(np.float64)  # (n_warm, d)
        gram = x.T @ x + self.config.ridge * np.eye(x.shape[1])
        self._map = np.linalg.solve(gram, x.T @ b.T.astype(np.float64))  # (d, n_warm): content -> column
        columns = self._content_columns(vectors)  # (n_warm, n_items)
        columns[:, warm] = b
        self._warm_idx = warm
        self._columns = columns.astype(np.float32)

    def _content_columns(self, vectors: np.ndarray) -> np.ndarray:
        return (np.asarray(vectors, np.float64) @ self._map).T  # (n_warm, n_new)

    def _map_state(self) -> dict[str, np.ndarray]:
        return {"map": self._map}

    def _load_map(self, arrays: dict[str, np.ndarray]) -> None:
        self._map = arrays["map"]


@dataclass(frozen=True)
class KernelContentConfig:
    """EASE on warm items and a kernel ridge map from content to EASE columns."""

    reg: float = 250.0
    """EASE lambda (on warm items)."""
    kernels: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """Kernel sharpness values tried: k(a, b) = exp(s * (cos(a, b) - 1)); the one that ranks
    pseudo-cold items best is kept (a single value skips the choice)."""
    ridge: float = 1.0
    """Kernel ridge strength."""
    valid_share: float = 0.2
    """Share of warm items held out as pseudo-cold items to choose the kernel."""
    seed: int = 2020
    """Seed of the pseudo-cold items."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg, genres)."""
    max_items: int | None = None
    """EASE and the kernel over the ``max_items`` most popular warm items only (memory
    and time in ``max_items``, not the catalogue); the other warm items are scored from
    content. None: every warm item."""
    cold_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    """Factors tried on the columns predicted from content. A kernel ridge prediction is
    shrunk towards zero, so cold items score below warm ones they resemble; the factor that
    ranks pseudo-cold items best among the warm ones (their training interactions and the
    split's valid interactions as truth) is kept. It changes no order among cold items, only
    where they fall among warm ones. Skipped (factor 1) on a split without valid rows."""

    def __post_init__(self) -> None:
        _check_max_items(self.max_items)
        if not self.kernels or min(self.kernels) <= 0:
            raise InvalidArgumentError(f"kernels must be positive sharpness values, got {self.kernels}")
        if not self.cold_scales or min(self.cold_scales) <= 0:
            raise InvalidArgumentError(f"cold_scales must be positive factors, got {self.cold_scales}")
        if self.ridge <= 0:
            raise InvalidArgumentError(f"ridge must be > 0, got {self.ridge}")


class KernelContent(ContentColumns):
    """EASE on warm items; a cold item's EASE column is a kernel ridge regression of the
    warm items' columns on content similarity, exp(s * (cos - 1)): a smooth, non-linear
    version of ``ease-content``'s linear map (cold items whose content is close to a group
    of warm items borrow those items' columns). The sharpness s is chosen on pseudo-cold
    warm items (training data only; ``history["valid"]`` lists each value's NDCG@10)."""

    config_class = KernelContentConfig

    def _fit_content(self, split: Split) -> None:
        cfg = self.config
        self._unit = unit_rows(self._vectors().astype(np.float64))
        warm = self._column_items()
        sharpness, scale = cfg.kernels[0], 1.0
        valid = split.matrix(VALID)
        calibrate = len(cfg.cold_scales) > 1 and valid.nnz > 0
        if len(cfg.kernels) > 1 or calibrate:
            held = pseudo_cold_items(warm, cfg.valid_share, cfg.seed)
            fit = np.setdiff1d(warm, held)
            b_fit = self._ease(fit)
            self.history = {}
            if len(cfg.kernels) > 1:
                tried = [(s, self._validate(b_fit, fit, held, s)) for s in cfg.kernels]
                sharpness = max(tried, key=lambda t: t[1])[0]  # the first best on ties
                self.history = {"valid": tried, "kernel": sharpness}
            if calibrate:
                cold = self._columns_of(b_fit, fit, held, sharpness)
                mixed = mixed_factors(self.train, valid, fit, held, b_fit, cold, cfg.cold_scales)
                scale = max(mixed, key=lambda t: t[1])[0]
                self.history |= {"mixed": mixed, "cold_scale": scale}
        b = self._ease(warm)
        alpha = self._alpha_of(b, warm, sharpness)
        columns = (
            scale * (content_kernel(self._unit, self._unit[warm], sharpness) @ alpha).T
        )  # (n_warm, n_items)
        columns[:, warm] = b
        self._warm_idx, self._alpha, self._sharpness = warm, alpha, np.float64(sharpness)
        self._scale = np.float64(scale)
        self._columns = columns.astype(np.float32)

    def _ease(self, items: np.ndarray) -> np.ndarray:
        return ease_weights(self.train[:, items], self.config.reg).astype(np.float64)

    def _alpha_of(self, b: np.ndarray, items: np.ndarray, sharpness: float) -> np.ndarray:
        """Kernel ridge coefficients of the EASE columns ``b`` of ``items``."""
        k = content_kernel(self._unit[items], self._unit[items], sharpness)
        return np.linalg.solve(k + self.config.ridge * np.eye(len(items)), b.T)

    def _columns_of(self, b: np.ndarray, fit: np.ndarray, held: np.ndarray, sharpness: float) -> np.ndarray:
        """Predicted columns (over ``fit``) of the ``held`` items, from a map fitted on ``fit``."""
        alpha = self._alpha_of(b, fit, sharpness)
        return (content_kernel(self._unit[held], self._unit[fit], sharpness) @ alpha).T

    def _validate(self, b: np.ndarray, fit: np.ndarray, held: np.ndarray, sharpness: float) -> float:
        cols = self._columns_of(b, fit, held, sharpness)
        r = sp.csr_matrix(self.train[:, fit])
        return validation_ndcg(linear_scores(r, cols), sp.csr_matrix(self.train[:, held]))

    def _content_columns(self, vectors: np.ndarray) -> np.ndarray:
        unit = unit_rows(np.asarray(vectors, np.float64))
        k = content_kernel(unit, self._unit[self._warm_idx], float(self._sharpness))
        return float(self._scale) * (k @ self._alpha).T

    _scale = np.float64(1.0)

    def _map_state(self) -> dict[str, np.ndarray]:
        return {
            "alpha": self._alpha,
            "unit": self._unit,
            "sharpness": np.asarray(self._sharpness),
            "cold_scale": np.asarray([self._scale]),
        }

    def _load_map(self, arrays: dict[str, np.ndarray]) -> None:
        self._alpha, self._unit = arrays["alpha"], arrays["unit"]
        self._sharpness = np.float64(np.asarray(arrays["sharpness"]).reshape(-1)[0])  # saved 1-d
        # saved before the calibration: factor 1, as those models scored
        self._scale = np.float64(arrays["cold_scale"][0]) if "cold_scale" in arrays else np.float64(1.0)
