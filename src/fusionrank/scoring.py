"""Low-level scoring helpers shared by evaluation, retrieval, features and training:
score functions, known-item masks and chunked top-k.

A *score function* maps user indices ``(n,)`` to scores ``(n, n_items)``; higher is
better and ``-inf`` means "not a candidate" (an item the model cannot score, or one the
user already knows). Memory is bounded by the chunk of users scored at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

ScoreFn = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]
"""Maps user indices (n,) to scores (n, n_items); higher is better."""


def mask_rows(scores: torch.Tensor, exclude: sp.csr_matrix, rows: np.ndarray) -> None:
    """Set ``scores[i, j] = -inf`` for every stored ``(rows[i], j)`` of ``exclude``, in place."""
    sub = exclude[rows]
    if sub.nnz:
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        scores[torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))] = -torch.inf


def chunk_scores(
    score_fn: ScoreFn, rows: np.ndarray, exclude: sp.csr_matrix | None, item_mask: np.ndarray | None
) -> torch.Tensor:
    """A float32 copy of ``score_fn(rows)`` with known items and items outside ``item_mask``
    set to ``-inf`` (never writes into a model's own arrays)."""
    out = score_fn(rows)
    if isinstance(out, torch.Tensor):
        scores = out.detach().to("cpu", torch.float32).clone()
    else:
        scores = torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
    if scores.ndim != 2 or scores.shape[0] != len(rows):
        raise ValueError(f"score function returned shape {tuple(scores.shape)} for {len(rows)} users")
    if exclude is not None:
        mask_rows(scores, exclude, rows)
    if item_mask is not None:
        scores[:, torch.from_numpy(~item_mask)] = -torch.inf
    return scores


def top_k(
    score_fn: ScoreFn,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item indices and scores per user, known items excluded; -1 pads short lists.

    >>> idx, _ = top_k(lambda u: np.array([[0.1, 0.9, 0.5]] * len(u)), np.arange(2), 2)
    >>> idx.tolist()
    [[1, 2], [1, 2]]
    """
    idx_out, val_out = [], []
    for start in range(0, len(users), chunk_size):
        rows = users[start : start + chunk_size]
        scores = chunk_scores(score_fn, rows, exclude, item_mask)
        vals, idx = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        idx[torch.isneginf(vals)] = -1
        idx_out.append(idx.numpy())
        val_out.append(vals.numpy())
    if not idx_out:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.concatenate(idx_out), np.concatenate(val_out)
