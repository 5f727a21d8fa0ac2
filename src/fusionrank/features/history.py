"""Features a single source cannot express: how a candidate relates to each item the user
already has (``history``), how far the sources agree on it (``agreement``), and how sure
each source is for this user (``context``).

``history``: for each candidate, its similarity to the items of the user's training
history, aggregated three ways (the most similar item, the mean of the three most
similar, the mean over the history) and, where the training interactions have times, to
the user's most recent items (the most similar of the last ``recent``). Similarities:
item-item co-occurrence (shrunk cosine over training users, each item's ``neighbours``
most similar kept), the run's item-item weights (EASE's B, or a named model's neighbours),
and each content modality's cosine. All from training data only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import ITEM_IDX, TIMESTAMP, USER_IDX

Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(history items (h,), candidate items (c,)) -> (h, c)`` float32 similarities."""

AGGREGATES = ("max", "top3", "mean")


def dense_similarity(weights: np.ndarray) -> Similarity:
    """Similarity read from a dense item x item matrix (row: history item)."""
    return lambda h, c: np.asarray(weights[np.ix_(h, c)], dtype=np.float32)


def sparse_similarity(weights: sp.csr_matrix) -> Similarity:
    """Similarity read from a sparse item x item matrix (0 where not stored)."""
    csr = weights.astype(np.float32)
    return lambda h, c: csr[h][:, c].toarray()


def vector_similarity(vectors: np.ndarray) -> Similarity:
    """Cosine between L2-normalised item vectors (zero rows: no vector)."""
    return lambda h, c: vectors[h] @ vectors[c].T


def recent_items(
    interactions: pd.DataFrame | None, n_users: int, n_items: int, recent: int
) -> sp.csr_matrix | None:
    """Each user's ``recent`` latest training items (by timestamp; ties by the later row),
    as a binary user x item matrix; None without timestamps."""
    if interactions is None or TIMESTAMP not in interactions.columns or not len(interactions) or recent < 1:
        return None
    frame = pd.DataFrame(
        {
            "u": interactions[USER_IDX].to_numpy(np.int64),
            "i": interactions[ITEM_IDX].to_numpy(np.int64),
            "t": interactions[TIMESTAMP].to_numpy(np.float64),
            "row": np.arange(len(interactions)),
        }
    ).sort_values(["u", "t", "row"], kind="stable")
    last = frame.groupby("u", sort=False).tail(recent)
    data = np.ones(len(last), np.float32)
    m = sp.csr_matrix((data, (last["u"].to_numpy(), last["i"].to_numpy())), shape=(n_users, n_items))
    m.data[:] = 1.0
    return m


@dataclass
class HistoryInputs:
    """The ``history`` group's item-wide inputs, built once for the whole table."""

    similarities: Mapping[str, Similarity]
    """Name -> similarity (``co``, ``ii``, one per content modality)."""
    recent: sp.csr_matrix | None = None
    """Each user's latest training items (binary), or None."""

    def columns(
        self, history: sp.csr_matrix, rows: np.ndarray, local: np.ndarray, items: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``hist_<sim>_<aggregate>`` of candidates ``(local, items)``: ``history`` holds the
        chunk's users' training items (row ``local[k]`` is candidate ``k``'s user, the
        chunk's users are ``rows``); candidates are grouped by user."""
        n = len(items)
        recent = None if self.recent is None else self.recent[rows]
        out: dict[str, np.ndarray] = {}
        for name, sim in self.similarities.items():
            cols = {a: np.full(n, np.nan, np.float32) for a in AGGREGATES}
            last = np.full(n, np.nan, np.float32) if recent is not None else None
            for r, a, b in _user_blocks(local):
                h = history.indices[history.indptr[r] : history.indptr[r + 1]]
                if len(h) == 0:
                    continue
                block = sim(h, items[a:b])  # (history, candidates)
                cols["max"][a:b] = block.max(axis=0)
                k = min(3, len(h))
                cols["top3"][a:b] = np.partition(block, len(h) - k, axis=0)[len(h) - k :].mean(axis=0)
                cols["mean"][a:b] = block.mean(axis=0)
                if last is not None and recent is not None:
                    mine = recent.indices[recent.indptr[r] : recent.indptr[r + 1]]
                    if len(mine):
                        last[a:b] = block[np.isin(h, mine)].max(axis=0)
            out.update({f"hist_{name}_{agg}": v for agg, v in cols.items()})
            if last is not None:
                out[f"hist_{name}_recent"] = last
        return out


def _user_blocks(local: np.ndarray) -> list[tuple[int, int, int]]:
    """``(row, start, stop)`` of each user's contiguous run of candidates."""
    if not len(local):
        return []
    bounds = np.flatnonzero(np.r_[True, local[1:] != local[:-1], True])
    return [(int(local[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def agreement_columns(ranks: pd.DataFrame, depth: int) -> dict[str, np.ndarray]:
    """How far the sources agree on each candidate, from its ``rank_<source>`` columns:
    the best and the mean rank (a source that cannot score it counts as ``depth + 1``),
    and how many sources put it in their top 10."""
    r = ranks.to_numpy(np.float32, na_value=np.nan)
    filled = np.where(np.isnan(r), depth + 1, r)
    return {
        "agree_best_rank": filled.min(axis=1).astype(np.float32),
        "agree_mean_rank": filled.mean(axis=1).astype(np.float32),
        "agree_top10": (filled <= 10).sum(axis=1).astype(np.float32),
    }


@dataclass
class RowSummary:
    """One chunk of a source's top-n scores summarised per user: their spread (``std``)
    and the best scores in order (``top``, up to ten; -inf pads)."""

    std: np.ndarray
    top: np.ndarray


def context_columns(summary: RowSummary, local: np.ndarray) -> dict[str, np.ndarray]:
    """How sure a source is for each user (the same for all of a user's candidates): the
    spread of its top-n scores (``std``) and the gap between its first and tenth score in
    units of that spread (``gap``; 0 without a tenth score)."""
    top = summary.top
    gap = np.zeros(len(top))
    if top.shape[1] >= 10:
        with np.errstate(invalid="ignore"):
            gap = (top[:, 0] - top[:, 9]) / np.maximum(summary.std, 1e-12)
        gap = np.where(np.isfinite(gap), gap, 0.0)
    return {"std": summary.std[local].astype(np.float32), "gap": gap[local].astype(np.float32)}
