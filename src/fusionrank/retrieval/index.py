"""Top-N by inner product over vectors: exact (torch) or a FAISS index.

FAISS is optional (``pip install fusionrank[faiss]``). ``kind="auto"`` (the default) searches
exactly (torch) up to ``hnsw_from`` items and with a FAISS HNSW index above (exactly, with
a warning, when FAISS is not installed); ``"ivf"`` trains an IVF-flat index. Known
items are excluded by searching deeper (``k`` + the longest excluded row) and filtering,
so the result is the same top-N as exact search for flat indexes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from fusionrank.errors import InvalidArgumentError
from fusionrank.scoring import ranked_topk

IndexKind = Literal["exact", "flat", "hnsw", "ivf", "auto"]


@dataclass(frozen=True)
class IndexConfig:
    """Which index answers the inner-product search."""

    kind: IndexKind = "auto"
    """``exact`` (torch, no FAISS), a FAISS ``flat`` / ``hnsw`` / ``ivf`` index, or ``auto``
    (exact below ``hnsw_from`` items, HNSW from there)."""
    hnsw_from: int = 200_000
    """``auto`` switches from exact search to HNSW at this many items."""
    hnsw_m: int = 32
    """HNSW graph degree."""
    ef_search: int = 256
    """HNSW search depth (recall against speed)."""
    ivf_lists: int = 1024
    """IVF cells; ``nprobe`` cells are searched."""
    nprobe: int = 32


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_kind(config: IndexConfig, n_items: int) -> str:
    """The index ``kind="auto"`` stands for at ``n_items`` items.

    >>> resolve_kind(IndexConfig(), 1000), resolve_kind(IndexConfig(hnsw_from=500), 1000)
    ('exact', 'hnsw')
    """
    if config.kind != "auto":
        return config.kind
    if n_items < config.hnsw_from:
        return "exact"
    if not faiss_available():
        warnings.warn(
            f"{n_items:,} items: install faiss-cpu (pip install 'fusionrank[faiss]') for HNSW search;"
            " searching exactly",
            stacklevel=3,
        )
        return "exact"
    return "hnsw"


class VectorIndex:
    """Inner-product search of user vectors against item vectors."""

    def __init__(self, items: np.ndarray, config: IndexConfig | None = None) -> None:
        self.config = config or IndexConfig()
        self.items = np.ascontiguousarray(items, dtype=np.float32)
        if self.items.ndim != 2:
            raise InvalidArgumentError(f"item vectors must be 2-d, got shape {self.items.shape}")
        kind = resolve_kind(self.config, len(self.items))
        self.kind = kind
        self._faiss = None if kind == "exact" else self._build_faiss(kind)

    def _build_faiss(self, kind: str):
        try:
            import faiss
        except ImportError as e:
            raise ImportError(
                f"index kind {kind!r} needs FAISS: pip install 'fusionrank[faiss]' (or use kind='exact')"
            ) from e
        d = self.items.shape[1]
        index: faiss.Index
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.config.ef_search
        elif kind == "ivf":
            quantizer = faiss.IndexFlatIP(d)
            lists = max(1, min(self.config.ivf_lists, len(self.items) // 39))
            index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
            index.train(self.items)
            index.nprobe = min(self.config.nprobe, lists)
        else:
            raise InvalidArgumentError(f"unknown index kind {kind!r}")
        index.add(self.items)
        return index

    def search(
        self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per query row; ``exclude`` rows align with queries.
        Short rows are padded with index -1 and score -inf."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self.items))
        if self._faiss is None:
            scores = torch.from_numpy(queries) @ torch.from_numpy(self.items).T
            if exclude is not None and exclude.nnz:
                ex = sp.csr_matrix(exclude)
                rows = np.repeat(np.arange(ex.shape[0]), np.diff(ex.indptr))
                scores[torch.from_numpy(rows), torch.from_numpy(ex.indices.astype(np.int64))] = -torch.inf
            top_v, top_i = ranked_topk(scores, k)
            idx, vals = top_i.numpy(), top_v.numpy()
            idx[np.isneginf(vals)] = -1
            return idx, vals
        extra = 0 if exclude is None else int(np.diff(sp.csr_matrix(exclude).indptr).max(initial=0))
        depth = min(k + extra, len(self.items))
        vals, idx = self._faiss.search(queries, depth)
        if exclude is None or extra == 0:
            return idx[:, :k], vals[:, :k]
        ex = sp.csr_matrix(exclude)
        out_i = np.full((len(queries), k), -1, np.int64)
        out_v = np.full((len(queries), k), -np.inf, np.float32)
        for r in range(len(queries)):
            known = ex.indices[ex.indptr[r] : ex.indptr[r + 1]]
            keep = (idx[r] >= 0) & ~np.isin(idx[r], known)
            i, v = idx[r][keep][:k], vals[r][keep][:k]
            out_i[r, : len(i)], out_v[r, : len(v)] = i, v
        return out_i, out_v


def mips_vectors(
    users: np.ndarray, items: np.ndarray, item_bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an item bias into the vectors so that ``u·i + b_i`` is a plain inner product."""
    if item_bias is None:
        return users, items
    ones = np.ones((len(users), 1), users.dtype)
    return np.hstack([users, ones]), np.hstack([items, item_bias.reshape(-1, 1).astype(items.dtype)])
