"""Top-K ranking metrics as pure functions, with RecBole's definitions.

Every function takes ``hits``, a boolean array ``(users, K_max)`` whose ``[u, j]`` is true
when the item at rank ``j + 1`` of user ``u``'s list is relevant, and ``n_relevant``, the
number of relevant items of each user (``|R(u)|``), and returns per-user values at ``k``.
Relevance is binary; averaging over users is left to the caller.
"""

from __future__ import annotations

import numpy as np

METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "map")


def hit(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Hit@K = 1 if any of the top K items is relevant, else 0.

    >>> hits = np.array([[0, 1, 0]], bool)
    >>> hit(hits, np.array([2]), 1).tolist(), hit(hits, np.array([2]), 2).tolist()
    ([0.0], [1.0])
    """
    return np.any(hits[:, :k], axis=1).astype(np.float64)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Precision@K = |relevant in top K| / K.

    >>> precision(np.array([[1, 0, 1, 0]], bool), np.array([3]), 4).tolist()
    [0.5]
    """
    return hits[:, :k].sum(axis=1) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@K = |relevant in top K| / |R(u)|.

    >>> recall(np.array([[1, 0, 1, 0]], bool), np.array([4]), 4).tolist()
    [0.5]
    """
    return hits[:, :k].sum(axis=1) / n_relevant


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MRR@K = 1 / rank of the first relevant item within the top K (0 if none).

    >>> mrr(np.array([[0, 0, 1], [0, 0, 0]], bool), np.array([1, 1]), 3).tolist()
    [0.3333333333333333, 0.0]
    """
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K = DCG@K / IDCG@K with DCG = sum_j rel_j / log2(j + 1) and the ideal DCG
    taken over ``min(|R(u)|, K)`` relevant items at the top.

    >>> round(float(ndcg(np.array([[0, 1]], bool), np.array([1]), 2)[0]), 4)
    0.6309
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return dcg / ideal


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MAP@K per user = sum_{j<=K} rel_j * Precision@j / min(|R(u)|, K).

    >>> average_precision(np.array([[1, 0, 1]], bool), np.array([2]), 3).tolist()
    [0.8333333333333333]
    """
    top = hits[:, :k].astype(np.float64)
    prec_at_j = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return (prec_at_j * top).sum(axis=1) / np.minimum(n_relevant, k)


METRIC_FUNCTIONS = {
    "recall": recall,
    "ndcg": ndcg,
    "mrr": mrr,
    "hit": hit,
    "precision": precision,
    "map": average_precision,
}
