"""Test helpers: splits and datasets built from small arrays whose right answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import ITEM_ID, ITEM_IDX, RATING, TIMESTAMP, USER_ID, USER_IDX
from fusionrank.data.dataset import Dataset
from fusionrank.data.idmap import IdMap
from fusionrank.data.profile import DatasetProfile
from fusionrank.data.splits import Split, SplitConfig
from fusionrank.data.vectors import write_vector_folder


def _frame(m: sp.spmatrix | None, users: IdMap, items: IdMap) -> pd.DataFrame:
    coo = sp.coo_matrix(m) if m is not None else sp.coo_matrix((len(users), len(items)))
    order = np.lexsort((coo.col, coo.row))
    rows, cols = coo.row[order], coo.col[order]
    return pd.DataFrame(
        {
            USER_ID: users.to_ids(rows),
            ITEM_ID: items.to_ids(cols),
            RATING: np.ones(len(rows)),
            TIMESTAMP: np.arange(len(rows), dtype=np.float64),
            USER_IDX: rows.astype(np.int64),
            ITEM_IDX: cols.astype(np.int64),
        }
    )


def split_of(
    train: sp.spmatrix | np.ndarray,
    valid: sp.spmatrix | np.ndarray | None = None,
    test: sp.spmatrix | np.ndarray | None = None,
    dataset: Dataset | None = None,
    kind: str = "ratio",
    meta: dict | None = None,
) -> Split:
    """A split whose parts are the given user x item matrices (users u0.., items i0..)."""
    train = sp.csr_matrix(train)
    users = IdMap(f"u{u}" for u in range(train.shape[0]))
    items = IdMap(f"i{i}" for i in range(train.shape[1]))
    parts = {
        "train": _frame(train, users, items),
        "valid": _frame(None if valid is None else sp.csr_matrix(valid), users, items),
        "test": _frame(None if test is None else sp.csr_matrix(test), users, items),
    }
    return Split(SplitConfig(kind=kind), users=users, items=items, meta=meta or {}, dataset=dataset, **parts)


def dataset_with_content(
    folder: Path,
    n_users: int,
    vectors: np.ndarray,
    genres: list[list[str]] | None = None,
    users: pd.DataFrame | None = None,
    profile: dict | None = None,
) -> Dataset:
    """A dataset whose text modality is the given item vectors (a vectors folder made here)."""
    item_ids = [f"i{i}" for i in range(len(vectors))]
    write_vector_folder(folder / "text", item_ids, vectors, encoder="test", weights={}, normalised=False)
    items = pd.DataFrame({ITEM_ID: item_ids, "genres": genres or [[] for _ in item_ids]})
    inter = pd.DataFrame({USER_ID: [f"u{u}" for u in range(n_users)], ITEM_ID: "i0"})
    return Dataset(
        "planted",
        inter,
        items=items,
        users=users,
        profile=DatasetProfile.from_json(
            {"genres": "genres", "vectors": {"text": str(folder / "text")}, **(profile or {})}
        ),
        home=folder,
    )
