"""Persisted maps between external string ids and contiguous internal indices."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fusionrank.io import atomic_path


class IdMap:
    """Bijection between external ids (str) and indices ``0..n-1`` in first-seen order."""

    def __init__(self, ids: Iterable[str]) -> None:
        ids = [str(i) for i in ids]
        self._ids = np.asarray(ids, dtype=object)
        self._index = {v: i for i, v in enumerate(ids)}
        if len(self._index) != len(ids):
            raise ValueError("IdMap ids must be unique")

    @classmethod
    def from_values(cls, *columns: Iterable[str]) -> IdMap:
        """Build from one or more id columns; order is first appearance."""
        seen: dict[str, None] = {}
        for col in columns:
            for v in col:
                seen.setdefault(str(v), None)
        return cls(seen.keys())

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and list(self._ids) == list(other._ids)

    @property
    def ids(self) -> np.ndarray:
        """External ids ordered by index."""
        return self._ids

    def to_index(self, external_ids: Iterable[str], *, missing: int | None = None) -> np.ndarray:
        """Map external ids to indices; unknown ids raise ``KeyError`` unless ``missing`` is set."""
        out = []
        for v in external_ids:
            i = self._index.get(str(v))
            if i is None:
                if missing is None:
                    raise KeyError(f"unknown id {v!r}")
                i = missing
            out.append(i)
        return np.asarray(out, dtype=np.int64)

    def to_ids(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Map indices back to external ids."""
        return self._ids[np.asarray(indices, dtype=np.int64)]

    def save(self, path: str | Path) -> None:
        """Write as Parquet (``id``, ``index``) atomically."""
        table = pa.table(
            {
                "id": pa.array(list(self._ids), pa.string()),
                "index": pa.array(np.arange(len(self)), pa.int64()),
            }
        )
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        frame = pd.read_parquet(path).sort_values("index")
        return cls(frame["id"].tolist())
