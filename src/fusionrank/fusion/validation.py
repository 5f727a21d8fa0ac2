"""Validation sets the content models build from training data alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from fusionrank.errors import InvalidArgumentError


def pseudo_cold_items(warm: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A seeded ``share`` of the warm items (sorted), held out as if they were cold: a model
    that must rank items from content alone picks its epoch count on them.

    >>> pseudo_cold_items(np.arange(10), 0.2, seed=0).tolist()
    [6, 7]
    """
    if not 0 < share < 1:
        raise InvalidArgumentError(f"valid_share must be in (0, 1), got {share}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(warm, size=max(1, int(share * len(warm))), replace=False))


def linear_scores(history: sp.csr_matrix, columns: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Scores ``history[users] @ columns`` as a function of the users (item-item models)."""
    return lambda users: np.asarray(history[users] @ columns)


def validation_ndcg(
    scores: Callable[[np.ndarray], np.ndarray], truth: sp.csr_matrix, exclude: sp.csr_matrix | None = None
) -> float:
    """NDCG@10 of ranking items by ``scores(users)`` (users x items) against ``truth``:
    protocol (a) on pseudo-cold items when only they are scored, a mixed ranking when warm
    items are scored too (with their training interactions ``exclude``d)."""
    from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

    return evaluate_ranking(scores, truth, exclude, EvalConfig(ks=(10,))).metrics["ndcg@10"]


def mixed_truth(
    train: sp.csr_matrix, valid: sp.csr_matrix, fit: np.ndarray, held: np.ndarray
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """A validation that ranks warm and pseudo-cold items together, from training and
    valid data alone: the ``fit`` items' columns first, then the ``held`` (pseudo-cold)
    ones. Returns the users' history over the fit items (what scores them), the truth (valid
    interactions on fit items and every known interaction of the held ones) and the items
    to leave out of each ranking (the history). A model whose cold scores are on the warm
    scores' scale gives pseudo-cold items about their share of that truth.

    >>> train = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 1, 0]]))
    >>> valid = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1]]))
    >>> history, truth, exclude = mixed_truth(train, valid, np.array([0, 1, 3]), np.array([2]))
    >>> truth.toarray().tolist(), exclude.toarray().astype(int).tolist()
    ([[0, 1, 0, 1], [0, 0, 1, 1]], [[1, 0, 0, 0], [0, 1, 0, 0]])
    """
    history = sp.csr_matrix(train[:, fit], dtype=np.float64)
    known = sp.csr_matrix(train + valid)
    truth = sp.hstack([valid[:, fit], known[:, held]], format="csr")
    truth.data[:] = 1
    truth.eliminate_zeros()
    exclude = sp.hstack([history, sp.csr_matrix((history.shape[0], len(held)))], format="csr")
    return history, truth, exclude


def mixed_factors(
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    fit: np.ndarray,
    held: np.ndarray,
    warm_columns: np.ndarray,
    cold_columns: np.ndarray,
    factors: tuple[float, ...],
) -> list[tuple[float, float]]:
    """(factor, NDCG@10) of the ``mixed_truth`` ranking when the ``held`` items' predicted
    columns are ``cold_columns`` times each factor and the ``fit`` items' are
    ``warm_columns`` (both over the fit items): a factor moves no order among cold items,
    only where they fall among warm ones, which is what this ranking measures."""
    history, truth, exclude = mixed_truth(train, valid, fit, held)
    out = []
    for f in factors:
        scores = linear_scores(history, np.hstack([warm_columns, f * cold_columns]))
        out.append((f, validation_ndcg(scores, truth, exclude)))
    return out
