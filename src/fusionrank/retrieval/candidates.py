"""Candidate generation: each source's top-N per user, known items excluded, and their union.

A *source* is anything that scores users against all items (a fitted
:class:`~fusionrank.recommender.Recommender`'s ``score``, a content profile, popularity).
The union keeps, for every (user, item) pair, the rank it had in each source that
retrieved it (``rank_<source>``, 1-based; missing when that source did not retrieve it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import ITEM_IDX, USER_IDX
from fusionrank.errors import InvalidArgumentError
from fusionrank.scoring import ScoreFn, top_k


def source_candidates(
    score_fn: ScoreFn,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    chunk_size: int = 1024,
) -> pd.DataFrame:
    """``user_idx, item_idx, rank`` of one source's top-``n`` per user (rank 1 is best)."""
    if n < 1:
        raise InvalidArgumentError(f"n must be >= 1, got {n}")
    users = np.asarray(users, dtype=np.int64)
    idx, _ = top_k(score_fn, users, n, exclude, chunk_size=chunk_size)
    return candidates_frame(users, idx)


def candidates_frame(users: np.ndarray, idx: np.ndarray) -> pd.DataFrame:
    """``user_idx, item_idx, rank`` from a top-k matrix (row r belongs to ``users[r]``;
    -1 pads short rows and is dropped)."""
    ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)
    keep = idx >= 0
    return pd.DataFrame(
        {
            USER_IDX: np.repeat(users, idx.shape[1])[keep.ravel()],
            ITEM_IDX: idx[keep],
            "rank": ranks[keep].astype(np.int32),
        }
    )


def union_candidates(per_source: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (user, item) retrieved by any source, with ``rank_<source>`` columns
    and ``n_sources`` (how many sources retrieved it); sorted by user then item."""
    if not per_source:
        raise InvalidArgumentError("no candidate sources")
    frames = [
        f.set_index([USER_IDX, ITEM_IDX])["rank"].rename(f"rank_{name}") for name, f in per_source.items()
    ]
    out = pd.concat(frames, axis=1, join="outer").sort_index()
    out["n_sources"] = out.notna().sum(axis=1).astype(np.int16)
    return out.reset_index()


def candidate_recall(candidates: pd.DataFrame, truth: sp.csr_matrix) -> float:
    """Share of the relevant (user, item) pairs of ``truth`` that are among the candidates."""
    pairs = sp.coo_matrix(truth)
    if pairs.nnz == 0:
        raise InvalidArgumentError("truth has no relevant pairs")
    n_items = pairs.shape[1]
    have = candidates[USER_IDX].to_numpy(np.int64) * n_items + candidates[ITEM_IDX].to_numpy(np.int64)
    want = pairs.row.astype(np.int64) * n_items + pairs.col
    return float(np.isin(want, have).mean())


def candidate_recall_by_source(
    per_source: Mapping[str, pd.DataFrame], truth: sp.csr_matrix
) -> dict[str, float]:
    """Candidate recall of each source alone and of their union (key ``union``)."""
    out = {name: candidate_recall(f, truth) for name, f in per_source.items()}
    out["union"] = candidate_recall(union_candidates(per_source), truth)
    return out
