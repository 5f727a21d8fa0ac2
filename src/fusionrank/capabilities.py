"""What a model can do beyond the one contract, asked with ``isinstance``, never by name.

Every model is a :class:`~fusionrank.recommender.Recommender` (fit, score, recommend,
save). Some can do more, and the pipelines ask for that ability instead of a model's name:
the ranking pipeline's cross-domain transfer feature needs item-item weights
(:class:`HasItemSimilarity`), vector search needs user and item vectors whose inner product
is the score (:class:`HasUserVectors` and :class:`HasItemVectors`), ``recommend`` for a
user unknown to training needs :class:`ServesUnknownUsers`, and ranking items that were not
in training needs :class:`ScoresNewItems`. A user's own model gains an ability by
defining the method, with no registration (the protocols are ``runtime_checkable``).

>>> import fusionrank as fr
>>> [isinstance(fr.build_model(name), HasItemSimilarity) for name in ("ease", "pop")]
[True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp


@runtime_checkable
class HasItemSimilarity(Protocol):
    """Item-item weights: EASE's dense B, a neighbourhood model's sparse top-k lists."""

    def item_similarity(self) -> np.ndarray | sp.spmatrix | None:
        """Weights (n_items, n_items), dense or sparse; None when this fitted instance has
        none (EASE fitted on its most popular items only)."""
        ...


@runtime_checkable
class HasItemVectors(Protocol):
    """Item vectors in the model's space (exported by ``fusionrank train --out``)."""

    def item_vectors(self) -> np.ndarray:
        """(n_items, d) float32."""
        ...


@runtime_checkable
class HasUserVectors(Protocol):
    """User vectors whose inner product with :meth:`HasItemVectors.item_vectors` is the
    score: the model can be searched by a vector index."""

    def user_vectors(self) -> np.ndarray:
        """(n_users, d) float32."""
        ...


@runtime_checkable
class ServesUnknownUsers(Protocol):
    """A cold-start path for users unknown to training (from their side features)."""

    def score_unknown(self, user_ids: Sequence[str], user_features: pd.DataFrame | None = None) -> np.ndarray:
        """Scores (len(user_ids), n_items) of users not in training; ``user_features`` is a
        table with ``user_id`` and side columns (default: the dataset's user table)."""
        ...


@runtime_checkable
class ScoresNewItems(Protocol):
    """Scores of items nobody has interacted with, known only by their content vectors."""

    def score_content(self, users: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Scores (len(users), n_new) of new items given by content ``vectors`` (rows built
        like the fitted content: the same modalities, fused)."""
        ...


@runtime_checkable
class ReadsContent(Protocol):
    """A model that reads item content vectors when it is fitted."""

    @property
    def content_modalities(self) -> tuple[str, ...]:
        """The content modalities it reads (text, image, clip, kg)."""
        ...


def item_item_weights(model: object) -> np.ndarray | sp.spmatrix | None:
    """A model's item-item weights, or None when it has none.

    >>> import fusionrank as fr
    >>> item_item_weights(fr.build_model("pop")) is None
    True
    """
    return model.item_similarity() if isinstance(model, HasItemSimilarity) else None
