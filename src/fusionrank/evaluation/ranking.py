"""Full-ranking evaluation: every item is a candidate, each user's known items are excluded.

Users are processed in chunks: scores for a chunk (``chunk_size x n_items``), known items set
to ``-inf``, the top of the longest cut-off under the one tie rule
(:func:`fusionrank.scoring.ranked_topk`: higher score, then the smaller item index), then
metrics on the hit matrix. Memory
is bounded by the chunk size, never by users x items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fusionrank.columns import USER_IDX
from fusionrank.errors import InvalidArgumentError
from fusionrank.evaluation.metrics import METRIC_FUNCTIONS, METRICS
from fusionrank.scoring import ScoreFn, chunk_scores, ranked_topk


@dataclass(frozen=True)
class EvalConfig:
    """What to measure and how much memory to use."""

    ks: tuple[int, ...] = (5, 10, 20, 50)
    """Cut-offs at which every metric is reported."""
    metrics: tuple[str, ...] = METRICS
    """Per-user metrics (names from ``fusionrank.evaluation.metrics``)."""
    chunk_size: int = 1024
    """Users scored at once; peak memory is about chunk_size x n_items x 4 bytes x 3."""

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRIC_FUNCTIONS)
        if unknown:
            raise InvalidArgumentError(f"unknown metrics {sorted(unknown)}; expected some of {METRICS}")
        if not self.ks or min(self.ks) < 1:
            raise InvalidArgumentError(f"ks must be positive cut-offs, got {self.ks}")
        if self.chunk_size < 1:
            raise InvalidArgumentError("chunk_size must be >= 1")


@dataclass
class EvalResult:
    """Mean metrics (``{"ndcg@10": ...}``), per-user values and the number of users."""

    metrics: dict[str, float]
    per_user: pd.DataFrame
    n_users: int
    top_items: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.int64))


def evaluate_ranking(
    score_fn: ScoreFn,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix | None = None,
    config: EvalConfig | None = None,
    *,
    item_mask: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    users: Sequence[int] | np.ndarray | None = None,
    share_items: np.ndarray | None = None,
    share_name: str = "",
) -> EvalResult:
    """Evaluate a scorer by full ranking.

    ``truth`` (users x items) marks relevant items; users without any are skipped.
    ``exclude`` marks items never to recommend to that user (their training items, or
    training + validation items for test). ``item_mask`` restricts the candidate set (for
    example to cold items only). ``popularity`` (train counts per item) adds
    ``popularity@K``, the mean popularity of recommended items (RecBole's
    AveragePopularity); ``coverage@K`` is the share of all items recommended to anybody.
    ``share_items`` (a boolean mask over items, for example the cold ones) adds ``share@K``,
    the share of all top-K slots that go to those items, and ``truth_share``, the share of
    the evaluated users' relevant items that are among them: a ranking whose scores are
    calibrated across the two kinds of items gives them about as many slots as the truth.
    ``share_name`` prefixes both (``cold`` -> ``cold_share@K``, ``cold_truth_share``).
    """
    config = config or EvalConfig()
    truth = sp.csr_matrix(truth)
    n_items = truth.shape[1]
    eligible = np.flatnonzero(np.diff(truth.indptr) > 0)
    if users is not None:
        eligible = np.intersect1d(eligible, np.asarray(users, dtype=np.int64))
    if len(eligible) == 0:
        raise InvalidArgumentError("no user has a relevant item to evaluate")
    kmax = max(config.ks)
    per_user: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for m in config.metrics for k in config.ks}
    recommended = {k: np.zeros(n_items, dtype=bool) for k in config.ks}
    pop_sums: dict[int, list[np.ndarray]] = {k: [] for k in config.ks}
    all_top = []
    shares: dict[int, list[int]] = {k: [0, 0] for k in config.ks}  # marked slots, filled slots
    truth_marked = truth_all = 0
    for start in range(0, len(eligible), config.chunk_size):
        rows = eligible[start : start + config.chunk_size]
        scores = chunk_scores(score_fn, rows, exclude, item_mask)
        vals, idx = ranked_topk(scores, kmax)
        valid = ~torch.isneginf(vals)
        idx_np = idx.numpy()
        truth_chunk = truth[rows] > 0
        truth_rows = torch.from_numpy(truth_chunk.toarray())
        hits = (truth_rows.gather(1, idx) & valid).numpy()
        if hits.shape[1] < kmax:  # fewer items than the cut-off
            hits = np.pad(hits, ((0, 0), (0, kmax - hits.shape[1])))
        n_rel = np.diff(truth_chunk.tocsr().indptr)  # a bool tensor's sum is slow at 10^4 items
        for m in config.metrics:
            for k in config.ks:
                per_user[f"{m}@{k}"].append(METRIC_FUNCTIONS[m](hits, n_rel, k))
        valid_np = valid.numpy()
        for k in config.ks:
            top, ok = idx_np[:, :k], valid_np[:, :k]
            recommended[k][top[ok]] = True
            if popularity is not None:
                pops = np.where(ok, popularity[top], 0.0)
                pop_sums[k].append(pops.sum(axis=1) / np.maximum(ok.sum(axis=1), 1))
        all_top.append(np.where(valid_np, idx_np, -1))
        if share_items is not None:
            for k in config.ks:
                top, ok = idx_np[:, :k], valid_np[:, :k]
                shares[k][0] += int((share_items[top] & ok).sum())
                shares[k][1] += int(ok.sum())
            truth_marked += int(share_items[truth_chunk.indices].sum())
            truth_all += int(truth_chunk.nnz)
    frame = pd.DataFrame({USER_IDX: eligible})
    prefix = f"{share_name}_" if share_name else ""
    for name, parts in per_user.items():
        frame[name] = np.concatenate(parts)
    metrics = {name: float(frame[name].mean()) for name in per_user}
    for k in config.ks:
        metrics[f"coverage@{k}"] = float(recommended[k].mean())
        if popularity is not None:
            metrics[f"popularity@{k}"] = float(np.concatenate(pop_sums[k]).mean())
        if share_items is not None:
            metrics[f"{prefix}share@{k}"] = shares[k][0] / max(shares[k][1], 1)
    if share_items is not None:
        metrics[f"{prefix}truth_share"] = truth_marked / max(truth_all, 1)
    return EvalResult(
        metrics=metrics, per_user=frame, n_users=len(eligible), top_items=np.concatenate(all_top)
    )
