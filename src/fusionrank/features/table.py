"""The (user, candidate) feature table of the ranker, computed from training data only.

Groups (the ablation in the run report drops one group at a time):

- ``sources``: each source's score of the candidate, its rank in the source's own top-n
  (1 is best; ``n + 1``: not in it) and its z-score against the source's top-n scores for
  the user; missing where the source cannot score the item (a cross-domain source scores
  only its target domain). Only candidate pairs are scored: a source never ranks the whole
  catalogue for its features (:class:`SourceChunk`);
- ``content``: cosine between the user's history profile (mean of the history's item
  vectors) and the item, per modality (text, KG, CLIP when present);
- ``popularity``: log training count, log count in the last ``window_days`` of training,
  item age (days from the item's first training interaction to the user's last);
- ``user``: activity (log history size) and side features (age, gender, occupation);
- ``genre``: share of the user's history that carries each of the item's genres;
- ``cross_domain``: the share of the user's history in the item's domain, and the item's
  EASE score computed from the user's history in the *other* domain only (how well the
  other domain alone predicts it);
- ``history``: the candidate's similarity to the items of the user's history (the most
  similar, the mean of the three most similar, the mean, and the most similar recent
  one), under item co-occurrence, the run's item-item weights and each content modality
  (:mod:`fusionrank.features.history`);
- ``agreement``: the best and mean rank the sources give the item, and how many put it in
  their top 10;
- ``context``: per source, the spread of its top-n scores for the user and the gap between
  its first and tenth score (how sure it is for this user).

Nothing here reads validation or test interactions: callers pass the training matrix and
training interactions, and the exclusion matrix only removes known items from rankings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fusionrank.collab.itemknn import knn_similarity
from fusionrank.columns import ITEM_IDX, QUERY, TIMESTAMP, USER_IDX
from fusionrank.data.vectors import unit_rows
from fusionrank.errors import InvalidArgumentError
from fusionrank.features.history import (
    HistoryInputs,
    RowSummary,
    Similarity,
    agreement_columns,
    context_columns,
    dense_similarity,
    recent_items,
    sparse_similarity,
    vector_similarity,
)
from fusionrank.scoring import ScoreFn, chunk_scores, ranked_topk

FEATURE_GROUPS = (
    "sources",
    "content",
    "popularity",
    "user",
    "genre",
    "cross_domain",
    "history",
    "agreement",
    "context",
)
LABEL = "label"


@dataclass
class FeatureContext:
    """Everything the features are computed from (training data and fitted sources)."""

    train: sp.csr_matrix
    """Binary user x item training matrix."""
    sources: Mapping[str, ScoreFn] = field(default_factory=dict)
    """Scorers of all items per user (fitted models)."""
    interactions: pd.DataFrame | None = None
    """Training interactions with ``timestamp`` (recency and item age)."""
    content: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Item vectors per modality, ``(n_items, d)``, rows in item-index order (zero = none)."""
    genres: sp.csr_matrix | None = None
    """``(n_items, n_genres)`` 0/1."""
    user_side: pd.DataFrame | None = None
    """Side features per user index (numeric or categorical columns), ``n_users`` rows."""
    domains: np.ndarray | None = None
    """Domain label per item ("" for none)."""
    item_item: np.ndarray | sp.spmatrix | None = None
    """Item-item weights (EASE's dense B, or a sparse neighbour matrix) for the
    cross-domain transfer score."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature groups the ranker sees, and their settings."""

    groups: tuple[str, ...] = FEATURE_GROUPS
    """Which groups to compute."""
    window_days: float = 30.0
    """Recent-popularity window, counted back from the last training interaction."""
    item_item: str | None = None
    """The run model whose item-item weights give the cross-domain transfer score
    (:class:`~fusionrank.capabilities.HasItemSimilarity`); None: the first run model with
    dense weights (EASE's B)."""
    chunk_size: int = 512
    """Users scored at once (and written as one row group of the feature table)."""
    neighbours: int = 200
    """``history``: co-occurrence neighbours kept per item."""
    recent: int = 3
    """``history``: the user's latest training items the ``recent`` similarity looks at."""

    def __post_init__(self) -> None:
        unknown = set(self.groups) - set(FEATURE_GROUPS)
        if unknown:
            raise InvalidArgumentError(
                f"unknown feature groups {sorted(unknown)}; expected some of {FEATURE_GROUPS}"
            )


PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(chunk rows (c,), items (c,)) -> (c,)`` float32 scores of those pairs (-inf: cannot score)."""


@dataclass
class SourceChunk:
    """All the features take from one source for a chunk of users: its top-n per user
    (item indices, -1 pads, and their scores, known items excluded) and its scores of any
    (user, item) pairs of the chunk. A source scored exactly holds the chunk's scores of
    every item until the chunk's features are built; a source that retrieves through a
    vector index never scores the whole catalogue."""

    items: np.ndarray
    """``(rows, n)`` int64 top-n items in the tie rule's order; -1 pads short rows."""
    scores: np.ndarray
    """``(rows, n)`` float32 their scores; -inf pads."""
    pair_scores: PairScores

    @property
    def depth(self) -> int:
        """n: ranks run 1..n, and ``n + 1`` stands for "not in the top-n"."""
        return int(self.items.shape[1])

    @classmethod
    def from_scores(cls, scores: torch.Tensor, n: int) -> SourceChunk:
        """From a chunk's scores of every item (known items already at -inf)."""
        vals, idx = ranked_topk(scores, n)
        pad = torch.isneginf(vals)
        idx[pad] = -1

        def pairs(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
            return scores[torch.from_numpy(rows), torch.from_numpy(np.ascontiguousarray(items))].numpy()

        return cls(idx.numpy(), vals.numpy(), pairs)


def feature_group(column: str) -> str:
    """The group a feature column belongs to (by its prefix)."""
    for prefix, group in (
        ("score_", "sources"),
        ("z_", "sources"),
        ("rank_", "sources"),
        ("n_sources", "sources"),
        ("cos_", "content"),
        ("pop_", "popularity"),
        ("item_age", "popularity"),
        ("user_", "user"),
        ("genre_", "genre"),
        ("domain_", "cross_domain"),
        ("hist_", "history"),
        ("agree_", "agreement"),
        ("ctx_", "context"),
    ):
        if column.startswith(prefix):
            return group
    raise KeyError(f"column {column!r} belongs to no feature group")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a table (everything but keys and label)."""
    return [c for c in frame.columns if c not in (USER_IDX, ITEM_IDX, LABEL, QUERY)]


def build_features(
    candidates: pd.DataFrame,
    ctx: FeatureContext,
    exclude: sp.csr_matrix,
    config: FeatureConfig | None = None,
    n: int = 100,
) -> pd.DataFrame:
    """One row per candidate (``user_idx, item_idx`` of ``candidates``, sorted by user),
    with every feature of the configured groups. ``exclude`` marks items that are not
    ranked for the user (their known items); ``n`` is the depth of each source's top-n
    (its ranks, z-scores and context).

    Works in chunks of ``config.chunk_size`` users (see :class:`FeatureBuilder`), so memory
    is one chunk of scores per source, never users x items."""
    config = config or FeatureConfig()
    builder = FeatureBuilder(ctx, config)
    cands = candidates.sort_values([USER_IDX, ITEM_IDX], kind="stable").reset_index(drop=True)
    u = cands[USER_IDX].to_numpy(np.int64)
    users, starts = _rows_by_user(u)
    frames = []
    for a in range(0, len(users), config.chunk_size):
        rows = users[a : a + config.chunk_size]
        part = cands.iloc[starts[a] : starts[min(a + config.chunk_size, len(users))]]
        sources = {
            name: SourceChunk.from_scores(chunk_scores(fn, rows, exclude, None), n)
            for name, fn in builder.sources.items()
        }
        frames.append(builder.chunk(part, rows, sources))
    if not frames:
        return builder.chunk(cands, np.empty(0, np.int64), {})
    return pd.concat(frames, ignore_index=True)


class FeatureBuilder:
    """Features of one chunk of users at a time, from scores the caller already holds.

    The run's feature stage scores every source once per chunk of users and uses the same
    scores for retrieval (top-N) and for the ``sources`` features; nothing here is of size
    users x items. Item-wide inputs (popularity, first-seen times) are computed once."""

    def __init__(
        self,
        ctx: FeatureContext,
        config: FeatureConfig | None = None,
        cooccurrence: sp.csr_matrix | None = None,
    ) -> None:
        """``cooccurrence``: the ``history`` group's co-occurrence neighbours of this
        training matrix when the caller has them already (:attr:`cooccurrence` of a builder
        on the same training matrix); computed here otherwise."""
        self.ctx = ctx
        self.cooccurrence = cooccurrence
        self.config = config or FeatureConfig()
        self.train = sp.csr_matrix(ctx.train, dtype=np.float32)
        groups = self.config.groups
        self.sources: Mapping[str, ScoreFn] = ctx.sources if "sources" in groups else {}
        self.hist = np.diff(self.train.indptr)
        self._items = _item_popularity(self.train, ctx.interactions, self.config.window_days)
        self._content = {name: unit_rows(np.asarray(v, np.float32)) for name, v in ctx.content.items()}
        self._genres = None if ctx.genres is None else sp.csr_matrix(ctx.genres, dtype=np.float32)
        self._domains = None if ctx.domains is None else _DomainInputs(self.train, ctx.domains, ctx.item_item)
        self._history = self._history_inputs() if "history" in groups else None

    def _history_inputs(self) -> HistoryInputs:
        """The ``history`` group's similarities: co-occurrence neighbours of the training
        matrix, the run's item-item weights, and each content modality."""
        if self.cooccurrence is None:
            self.cooccurrence = knn_similarity(self.train, self.config.neighbours, shrink=10.0)
        sims: dict[str, Similarity] = {"co": sparse_similarity(self.cooccurrence)}
        weights = self.ctx.item_item
        if isinstance(weights, np.ndarray):
            sims["ii"] = dense_similarity(weights)
        elif weights is not None:  # the stubs know no csr_matrix(spmatrix); scipy does
            sims["ii"] = sparse_similarity(sp.csr_matrix(cast(Any, weights)))
        for name, vecs in self._content.items():
            sims[name] = vector_similarity(vecs)
        n_users, n_items = self.train.shape
        return HistoryInputs(sims, recent_items(self.ctx.interactions, n_users, n_items, self.config.recent))

    def chunk(
        self,
        candidates: pd.DataFrame,
        rows: np.ndarray,
        sources: Mapping[str, SourceChunk],
    ) -> pd.DataFrame:
        """Features of ``candidates`` (sorted by user, then item; users are ``rows``, in order)
        from each source's view of the chunk (``sources``, one per :attr:`sources`)."""
        u = np.array(candidates[USER_IDX], dtype=np.int64)
        i = np.array(candidates[ITEM_IDX], dtype=np.int64)
        out: dict[str, Any] = {USER_IDX: u, ITEM_IDX: i}  # one frame at the end: no per-column inserts
        groups = self.config.groups
        if "n_sources" in candidates.columns and "sources" in groups:
            out["n_sources"] = candidates["n_sources"].to_numpy()
        local = np.searchsorted(rows, u)
        if "sources" in groups:
            depth = 0
            for name in self.sources:
                cols, summary = _source_columns(sources[name], local, i, self.train.shape[1])
                out.update({f"{k}_{name}": v for k, v in cols.items()})
                depth = max(depth, sources[name].depth)
                if "context" in groups:
                    out.update({f"ctx_{k}_{name}": v for k, v in context_columns(summary, local).items()})
            if "agreement" in groups and self.sources:
                ranks = pd.DataFrame({name: out[f"rank_{name}"] for name in self.sources})
                out.update(agreement_columns(ranks, depth))
        history = self.train[rows]
        if "content" in groups and len(i):
            items, at = np.unique(i, return_inverse=True)
            for name, vecs in self._content.items():
                profile = unit_rows(np.asarray(history @ vecs))
                cosine = profile @ vecs[items].T  # (chunk, its candidate items): no per-pair copies
                out[f"cos_{name}"] = cosine[local, at].astype(np.float32)
        if "popularity" in groups:
            out.update(self._items.columns(u, i))
        if "user" in groups:
            out["user_activity"] = np.log1p(self.hist[u]).astype(np.float32)
            if self.ctx.user_side is not None:
                for col in self.ctx.user_side.columns:
                    out[f"user_{col}"] = self.ctx.user_side[col].iloc[u].reset_index(drop=True)
        if "genre" in groups and self._genres is not None:
            out["genre_overlap"] = _genre_overlap(history, self._genres, local, i)
        if "cross_domain" in groups and self._domains is not None:
            out.update(self._domains.columns(history, local, i))
        if self._history is not None:
            out.update(self._history.columns(history, rows, local, i))
        return pd.DataFrame(out)


def attach_labels(features: pd.DataFrame, truth: sp.csr_matrix) -> pd.DataFrame:
    """Add ``label`` (1 when the pair is in ``truth``) to a feature table."""
    truth = sp.csr_matrix(truth)
    labels = np.asarray(truth[features[USER_IDX].to_numpy(), features[ITEM_IDX].to_numpy()]).ravel()
    return features.assign(**{LABEL: (labels > 0).astype(np.int8)})


def _rows_by_user(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique users of a user-sorted key column and the start offset of each."""
    users, starts = np.unique(u, return_index=True)
    return users, np.append(starts, len(u))


def _source_columns(
    source: SourceChunk, local: np.ndarray, i: np.ndarray, n_items: int
) -> tuple[dict[str, np.ndarray], RowSummary]:
    """``score``, ``z`` and ``rank`` of candidates ``(local, i)`` from one source's view of
    the chunk, and the per-user summary of its top-n the ``context`` group reads."""
    picked = np.asarray(source.pair_scores(local, i), np.float32)
    missing = np.isneginf(picked)
    top = source.scores
    free = np.isfinite(top)
    count = np.maximum(free.sum(axis=1), 1)
    filled = np.where(free, top, 0.0)
    mean = filled.sum(axis=1) / count
    std = np.sqrt((np.where(free, filled - mean[:, None], 0.0) ** 2).sum(axis=1) / count)
    z = (picked - mean[local]) / np.maximum(std[local], 1e-12)
    cols = {
        "score": np.where(missing, np.nan, picked).astype(np.float32),
        "z": np.where(missing, np.nan, z).astype(np.float32),
        "rank": np.where(missing, np.nan, top_n_ranks(source.items, local, i, n_items)).astype(np.float32),
    }
    return cols, RowSummary(std=std.astype(np.float32), top=top[:, :10])


def top_n_ranks(items: np.ndarray, local: np.ndarray, i: np.ndarray, n_items: int) -> np.ndarray:
    """1-based rank of each pair ``(local[k], i[k])`` in row ``local[k]`` of a top-n item
    matrix (-1 pads), ``n + 1`` where the item is not in that row.

    >>> top_n_ranks(np.array([[2, 0, -1], [1, 2, 0]]), np.array([0, 0, 1]), np.array([0, 1, 0]), 3).tolist()
    [2, 4, 3]
    """
    n = items.shape[1]
    rows, pos = np.nonzero(items >= 0)
    keys = rows.astype(np.int64) * n_items + items[rows, pos]
    order = np.argsort(keys, kind="stable")
    keys, ranks = keys[order], pos[order] + 1
    want = local.astype(np.int64) * n_items + i
    at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    found = (keys[at] == want) if len(keys) else np.zeros(len(want), bool)
    return np.where(found, ranks[at] if len(keys) else 0, n + 1)


@dataclass
class _ItemPopularity:
    """Per-item training counts (all and recent), first-seen times, and each user's last
    training time: the ``popularity`` group, computed once for the whole table."""

    pop: np.ndarray
    recent: np.ndarray | None = None
    first_seen: np.ndarray | None = None
    last_user: np.ndarray | None = None

    def columns(self, u: np.ndarray, i: np.ndarray) -> dict[str, np.ndarray]:
        cols = {"pop_log": np.log1p(self.pop[i]).astype(np.float32)}
        if self.recent is not None and self.first_seen is not None and self.last_user is not None:
            cols["pop_recent_log"] = np.log1p(self.recent[i]).astype(np.float32)
            cols["item_age_days"] = ((self.last_user[u] - self.first_seen[i]) / 86400).astype(np.float32)
        return cols


def _item_popularity(
    train: sp.csr_matrix, interactions: pd.DataFrame | None, window_days: float
) -> _ItemPopularity:
    n_users, n_items = train.shape
    out = _ItemPopularity(np.asarray(train.sum(axis=0)).ravel())
    if interactions is not None and TIMESTAMP in interactions.columns and len(interactions):
        ts = interactions[TIMESTAMP].to_numpy(np.float64)
        items = interactions[ITEM_IDX].to_numpy()
        recent = ts >= ts.max() - window_days * 86400
        out.recent = np.bincount(items[recent], minlength=n_items)
        first = np.full(n_items, np.nan)
        order = np.argsort(ts)[::-1]  # the last write per item is its earliest timestamp
        first[items[order]] = ts[order]
        last_user = np.full(n_users, np.nan)
        users = interactions[USER_IDX].to_numpy()
        order = np.argsort(ts)
        last_user[users[order]] = ts[order]
        out.first_seen, out.last_user = first, last_user
    return out


def _genre_overlap(
    history: sp.csr_matrix, genres: sp.csr_matrix, local: np.ndarray, i: np.ndarray
) -> np.ndarray:
    """Share of the user's history carrying each of the item's genres, averaged over them."""
    hist = np.maximum(np.diff(history.indptr), 1).astype(np.float32)
    share = np.asarray((history @ genres).todense()) / hist[:, None]  # (chunk, genres): share of history
    per_item = np.maximum(np.asarray(genres.sum(axis=1)).ravel(), 1)
    return (
        np.asarray((sp.csr_matrix(share[local]).multiply(genres[i])).sum(axis=1)).ravel() / per_item[i]
    ).astype(np.float32)


class _DomainInputs:
    """The ``cross_domain`` group: the share of the user's history in the item's domain, and
    the item's score from the user's history in the other domains only (through the
    item-item weights, dense or sparse, kept as given: never densified here)."""

    def __init__(self, train: sp.csr_matrix, domains: np.ndarray, item_item: np.ndarray | sp.spmatrix | None):
        self.domains = np.asarray(domains).astype(str)
        self.names = sorted(set(self.domains) - {""})
        labelled = self.domains != ""
        self.in_domain = {d: self.domains == d for d in self.names}
        self.others = {d: (~self.in_domain[d] & labelled).astype(np.float32) for d in self.names}
        self.item_item: Any = sp.csr_matrix(item_item) if sp.issparse(item_item) else item_item

    def columns(self, history: sp.csr_matrix, local: np.ndarray, i: np.ndarray) -> dict[str, np.ndarray]:
        hist = np.maximum(np.diff(history.indptr), 1).astype(np.float32)
        share = np.full(len(i), np.nan, np.float32)
        transfer = np.full(len(i), np.nan, np.float32)
        for d in self.names:
            rows = self.in_domain[d][i]
            share[rows] = (np.asarray(history[:, self.in_domain[d]].sum(axis=1)).ravel() / hist)[local[rows]]
            if self.item_item is not None:
                other = sp.csr_matrix(history.multiply(self.others[d][None, :]))
                product: Any = other @ self.item_item  # (chunk, items) from the other domains only
                scores = product if isinstance(product, np.ndarray) else product.toarray()
                transfer[rows] = scores[local[rows], i[rows]]
        out = {"domain_share": share}
        if self.item_item is not None:
            out["domain_transfer"] = transfer
        return out
