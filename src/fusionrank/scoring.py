"""Low-level scoring helpers shared by evaluation, retrieval, features and training:
score functions, known-item masks, the one tie rule and chunked top-k.

A *score function* maps user indices ``(n,)`` to scores ``(n, n_items)``; higher is
better and ``-inf`` means "not a candidate" (an item the model cannot score, or one the
user already knows). Memory is bounded by the chunk of users scored at once.

**The tie rule.** Every place that cuts a ranking (evaluation, ``recommend``, candidates,
source ranks, the ranker's final order) orders items by higher score first, then by the
smaller item index: :func:`ranked_topk`. A ranking is then a total order, so the top 10 is
the same whatever other cut-offs, chunk size, device or torch version asked for it
(``torch.topk`` alone leaves the order of ties unspecified).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from fusionrank.errors import InvalidArgumentError

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
        raise InvalidArgumentError(
            f"score function returned shape {tuple(scores.shape)} for {len(rows)} users"
        )
    if exclude is not None:
        mask_rows(scores, exclude, rows)
    if item_mask is not None:
        scores[:, torch.from_numpy(~item_mask)] = -torch.inf
    return scores


def ranked_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of each row of ``scores`` (n, n_items) under the tie rule: higher
    score first, then the smaller item index. Returns ``(values, indices)``, both (n, k')
    with ``k' = min(k, n_items)``, on the scores' device.

    No full sort: one ``torch.topk`` fetches a few more than ``k`` and the ties inside
    that selection (runs of equal scores) are ordered by index. Only rows whose tie at the ``k``-th score runs
    past the selection (more tied items than were fetched) are resolved exactly, by
    taking the tied items with the smallest indices. Ties at ``-inf`` are not resolved:
    callers mark those positions as padding.

    >>> s = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1]])
    >>> ranked_topk(s, 3)[1].tolist(), ranked_topk(s, 2)[1].tolist()
    ([[1, 0, 2]], [[1, 0]])
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k <= 0 or n_rows == 0:
        empty = torch.empty((n_rows, max(k, 0)), dtype=torch.int64, device=scores.device)
        return scores.new_empty((n_rows, max(k, 0))), empty
    fetch = min(n_items, k + max(4, k // 8))
    vals, idx = torch.topk(scores, fetch, dim=1)  # sorted: vals[:, -1] is the least fetched
    least = vals[:, -1]
    tied = vals[:, 1:] == vals[:, :-1]  # runs of equal scores are adjacent
    if bool(tied.any()):  # number the runs, then order by (run, item index)
        run = torch.zeros_like(idx)
        torch.cumsum(tied.logical_not_(), dim=1, out=run[:, 1:])
        order = torch.argsort(run * n_items + idx, dim=1)[:, :k]
        vals, idx = vals.gather(1, order), idx.gather(1, order)
    else:
        vals, idx = vals[:, :k], idx[:, :k]
    if fetch < n_items:
        boundary = vals[:, k - 1]
        spill = torch.nonzero((least == boundary) & (boundary > -torch.inf)).squeeze(1)
        if len(spill):
            vals[spill], idx[spill] = _resolve_boundary(scores[spill], boundary[spill], k)
    return vals, idx


def _resolve_boundary(
    scores: torch.Tensor, boundary: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tie rule's top ``k`` of rows whose ``k``-th score ``boundary`` is shared by more
    items than were fetched: every item above it, then the tied ones with the smallest
    indices, ordered as :func:`ranked_topk` orders them."""
    above = scores > boundary[:, None]
    tied = scores == boundary[:, None]
    need = k - above.sum(dim=1, keepdim=True)  # >= 1: at most k - 1 items lie above the k-th score
    take = above | (tied & (tied.cumsum(dim=1) <= need))  # exactly k per row
    idx = torch.nonzero(take)[:, 1].view(len(scores), k)  # row-major: ascending index in each row
    order = torch.argsort(scores.gather(1, idx), dim=1, descending=True, stable=True)
    idx = idx.gather(1, order)
    return scores.gather(1, idx), idx


def ranked_order(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the top ``k`` of one row of scores under the tie rule, the scores taken
    as float32 as every score function gives them (a position stands for an item; ties go
    to the smaller position).

    >>> ranked_order(np.array([0.2, 0.7, 0.2, 0.9]), 3).tolist()
    [3, 1, 0]
    """
    row = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)).reshape(1, -1)
    return ranked_topk(row, k)[1][0].numpy()


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
        vals, idx = ranked_topk(scores, k)
        idx[torch.isneginf(vals)] = -1
        idx_out.append(idx.numpy())
        val_out.append(vals.numpy())
    if not idx_out:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.concatenate(idx_out), np.concatenate(val_out)
