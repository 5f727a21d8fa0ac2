"""The (user, candidate) feature table of the ranker, computed from training data only.

Groups (the ablation in the run report drops one group at a time):

- ``sources``: each source's score, its per-user z-score and the item's rank among all
  items the user does not know (1 is best); missing where the source cannot score the
  item (a cross-domain source scores only its target domain);
- ``content``: cosine between the user's history profile (mean of the history's item
  vectors) and the item, per modality (text, KG, CLIP when present);
- ``popularity``: log training count, log count in the last ``window_days`` of training,
  item age (days from the item's first training interaction to the user's last);
- ``user``: activity (log history size) and side features (age, gender, occupation);
- ``genre``: share of the user's history that carries each of the item's genres;
- ``cross_domain``: the share of the user's history in the item's domain, and the item's
  EASE score computed from the user's history in the *other* domain only (how well the
  other domain alone predicts it).

Nothing here reads validation or test interactions: callers pass the training matrix and
training interactions, and the exclusion matrix only removes known items from rankings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fusionrank.columns import ITEM_IDX, TIMESTAMP, USER_IDX
from fusionrank.encoders.vectors import unit_rows
from fusionrank.scoring import ScoreFn, chunk_scores, mask_rows

FEATURE_GROUPS = ("sources", "content", "popularity", "user", "genre", "cross_domain")
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
    item_item: np.ndarray | None = None
    """Item-item weights (EASE's B) for the cross-domain transfer score."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature groups the ranker sees, and their settings."""

    groups: tuple[str, ...] = FEATURE_GROUPS
    """Which groups to compute."""
    window_days: float = 30.0
    """Recent-popularity window, counted back from the last training interaction."""
    item_item: str = "ease"
    """The run model whose item-item weights give the cross-domain transfer score."""
    chunk_size: int = 512
    """Users scored at once."""

    def __post_init__(self) -> None:
        unknown = set(self.groups) - set(FEATURE_GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; expected some of {FEATURE_GROUPS}")


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
    ):
        if column.startswith(prefix):
            return group
    raise KeyError(f"column {column!r} belongs to no feature group")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a table (everything but keys and label)."""
    return [c for c in frame.columns if c not in (USER_IDX, ITEM_IDX, LABEL)]


def build_features(
    candidates: pd.DataFrame,
    ctx: FeatureContext,
    exclude: sp.csr_matrix,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """One row per candidate (``user_idx, item_idx`` of ``candidates``, sorted by user),
    with every feature of the configured groups. ``exclude`` marks items that are not
    ranked for the user (their known items) when ranks and z-scores are computed."""
    config = config or FeatureConfig()
    cands = candidates.sort_values([USER_IDX, ITEM_IDX], kind="stable").reset_index(drop=True)
    u = np.array(cands[USER_IDX], dtype=np.int64)
    i = np.array(cands[ITEM_IDX], dtype=np.int64)
    out = pd.DataFrame({USER_IDX: u, ITEM_IDX: i})
    if "n_sources" in cands.columns and "sources" in config.groups:
        out["n_sources"] = cands["n_sources"].to_numpy()
    train = sp.csr_matrix(ctx.train, dtype=np.float32)
    groups = config.groups
    if "sources" in groups:
        for name, fn in ctx.sources.items():
            out = out.assign(**_source_columns(name, fn, u, i, exclude, config.chunk_size))
    if "content" in groups:
        for name, vecs in ctx.content.items():
            out[f"cos_{name}"] = _profile_cosine(train, vecs, u, i)
    if "popularity" in groups:
        out = out.assign(**_popularity_columns(train, ctx.interactions, u, i, config.window_days))
    if "user" in groups:
        hist = np.diff(train.indptr)
        out["user_activity"] = np.log1p(hist[u]).astype(np.float32)
        if ctx.user_side is not None:
            for col in ctx.user_side.columns:
                out[f"user_{col}"] = ctx.user_side[col].iloc[u].reset_index(drop=True)
    if "genre" in groups and ctx.genres is not None:
        out["genre_overlap"] = _genre_overlap(train, ctx.genres, u, i)
    if "cross_domain" in groups and ctx.domains is not None:
        out = out.assign(**_domain_columns(train, ctx.domains, ctx.item_item, u, i))
    return out


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
    name: str, fn: ScoreFn, u: np.ndarray, i: np.ndarray, exclude: sp.csr_matrix, chunk: int
) -> dict[str, np.ndarray]:
    score = np.empty(len(u), np.float32)
    z = np.empty(len(u), np.float32)
    rank = np.empty(len(u), np.float32)
    users, starts = _rows_by_user(u)
    for a in range(0, len(users), chunk):
        rows = users[a : a + chunk]
        lo, hi = starts[a], starts[min(a + chunk, len(users))]
        s = chunk_scores(fn, rows, None, None)  # a float32 copy of the source's scores
        cannot = torch.isneginf(s)  # items this source does not score
        mask_rows(s, exclude, rows)
        known = torch.isneginf(s)
        free = (~known).sum(1, keepdim=True).clamp(min=1)
        filled = s.masked_fill(known, 0.0)
        mean = filled.sum(1, keepdim=True) / free
        var = ((filled - mean) ** 2).masked_fill(known, 0.0).sum(1, keepdim=True) / free
        zs = (s - mean) / var.sqrt().clamp(min=1e-12)
        order = torch.argsort(s, dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(1, s.shape[1] + 1).expand_as(order).contiguous())
        li = torch.from_numpy(np.searchsorted(rows, u[lo:hi]))
        ii = torch.from_numpy(np.ascontiguousarray(i[lo:hi]))
        missing = cannot[li, ii].numpy()
        score[lo:hi] = np.where(missing, np.nan, s[li, ii].numpy())
        z[lo:hi] = np.where(missing, np.nan, zs[li, ii].numpy())
        rank[lo:hi] = np.where(missing, np.nan, ranks[li, ii].numpy())
    return {f"score_{name}": score, f"z_{name}": z, f"rank_{name}": rank}


def _profile_cosine(train: sp.csr_matrix, vecs: np.ndarray, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    v = unit_rows(np.asarray(vecs, np.float32))
    profile = unit_rows(np.asarray(train @ v))
    return np.einsum("nd,nd->n", profile[u], v[i]).astype(np.float32)


def _popularity_columns(
    train: sp.csr_matrix, interactions: pd.DataFrame | None, u: np.ndarray, i: np.ndarray, window_days: float
) -> dict[str, np.ndarray]:
    n_users, n_items = train.shape
    pop = np.asarray(train.sum(axis=0)).ravel()
    cols = {"pop_log": np.log1p(pop[i]).astype(np.float32)}
    if interactions is not None and TIMESTAMP in interactions.columns and len(interactions):
        ts = interactions[TIMESTAMP].to_numpy(np.float64)
        items = interactions[ITEM_IDX].to_numpy()
        recent = ts >= ts.max() - window_days * 86400
        cols["pop_recent_log"] = np.log1p(np.bincount(items[recent], minlength=n_items)[i]).astype(np.float32)
        first = np.full(n_items, np.nan)
        order = np.argsort(ts)[::-1]  # the last write per item is its earliest timestamp
        first[items[order]] = ts[order]
        last_user = np.full(n_users, np.nan)
        users = interactions[USER_IDX].to_numpy()
        order = np.argsort(ts)
        last_user[users[order]] = ts[order]
        cols["item_age_days"] = ((last_user[u] - first[i]) / 86400).astype(np.float32)
    return cols


def _genre_overlap(train: sp.csr_matrix, genres: sp.csr_matrix, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    g = sp.csr_matrix(genres, dtype=np.float32)
    hist = np.maximum(np.diff(train.indptr), 1).astype(np.float32)
    share = np.asarray((train @ g).todense()) / hist[:, None]  # (users, genres): share of history
    per_item = np.maximum(np.asarray(g.sum(axis=1)).ravel(), 1)
    return (np.asarray((sp.csr_matrix(share[u]).multiply(g[i])).sum(axis=1)).ravel() / per_item[i]).astype(
        np.float32
    )


def _domain_columns(
    train: sp.csr_matrix, domains: np.ndarray, item_item: np.ndarray | None, u: np.ndarray, i: np.ndarray
) -> dict[str, np.ndarray]:
    domains = np.asarray(domains).astype(str)
    hist = np.maximum(np.diff(train.indptr), 1).astype(np.float32)
    share = np.full(len(u), np.nan, np.float32)
    transfer = np.full(len(u), np.nan, np.float32)
    for d in sorted(set(domains) - {""}):
        in_d = domains == d
        rows = in_d[i]
        share[rows] = (np.asarray(train[:, in_d].sum(axis=1)).ravel() / hist)[u[rows]]
        if item_item is not None:
            other = sp.csr_matrix(train.multiply((~in_d & (domains != "")).astype(np.float32)[None, :]))
            cols = np.flatnonzero(in_d)
            scores = np.asarray(other @ item_item[:, cols])  # (users, items in d) from the other domain only
            pos = np.searchsorted(cols, i[rows])
            transfer[rows] = scores[u[rows], pos]
    out = {"domain_share": share}
    if item_item is not None:
        out["domain_transfer"] = transfer
    return out
