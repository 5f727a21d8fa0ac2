"""Persisted maps between external string ids and contiguous internal indices."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fusionrank.errors import InvalidArgumentError, UnknownKeyError
from fusionrank.io import atomic_path


class IdMap:
    """Bijection between external ids (str) and indices ``0..n-1`` in first-seen order."""

    def __init__(self, ids: Iterable[str]) -> None:
        ids = [str(i) for i in ids]
        self._ids = np.asarray(ids, dtype=object)
        self._index = {v: i for i, v in enumerate(ids)}
        if len(self._index) != len(ids):
            raise InvalidArgumentError("IdMap ids must be unique")
        self._lookup: pd.Index | None = None  # built on the first bulk lookup

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
        """Map external ids to indices (one hash join, not a Python loop: logs have 10^7 rows);
        unknown ids raise ``KeyError`` unless ``missing`` is set.

        >>> IdMap(["a", "b"]).to_index(["b", "a", "z"], missing=-1)
        array([ 1,  0, -1])
        """
        if self._lookup is None:
            self._lookup = pd.Index(self._ids, dtype=object)
        values = (
            external_ids
            if isinstance(external_ids, np.ndarray | pd.Series | pd.Index)
            else list(external_ids)
        )
        keys = pd.Index(np.asarray(values, dtype=object)).astype(str)
        out = self._lookup.get_indexer(keys).astype(np.int64)
        unknown = out < 0
        if unknown.any():
            if missing is None:
                raise UnknownKeyError(f"unknown id {keys[int(np.flatnonzero(unknown)[0])]!r}")
            out[unknown] = missing
        return out

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
