"""User-sharded feature tables on disk: one Parquet file per stage, one row group per chunk
of users, rows sorted by user then item.

The feature stage appends a chunk at a time (:class:`ShardWriter`), so the table is never
whole in memory; the ranker reads back the users it trains on, and test scoring reads one
row group at a time (:class:`ShardedTable`). Each row group's ``user_idx`` statistics say
which users it holds.

>>> import tempfile, pandas as pd
>>> path = Path(tempfile.mkdtemp()) / "t.parquet"
>>> with ShardWriter(path) as w:
...     w.write(pd.DataFrame({"user_idx": [0, 0, 1], "item_idx": [3, 5, 2], "x": [1.0, 2.0, 3.0]}))
...     w.write(pd.DataFrame({"user_idx": [4], "item_idx": [1], "x": [4.0]}))
>>> t = ShardedTable(path)
>>> t.n_groups, t.first_user.tolist(), t.last_user.tolist()
(2, [0, 4], [1, 4])
>>> t.read_users([1, 4], ["x"])["x"].tolist()
[3.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fusionrank.columns import ITEM_IDX, USER_IDX
from fusionrank.errors import InvalidArgumentError

KEYS = (USER_IDX, ITEM_IDX)


class ShardWriter:
    """Append DataFrames with the same columns as row groups of one Parquet file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self.path, self._schema)
        else:
            assert self._schema is not None
            if table.schema.names != self._schema.names:
                raise InvalidArgumentError(
                    f"shard columns {table.schema.names} differ from {self._schema.names}"
                )
            table = table.cast(self._schema)
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ShardedTable:
    """Read side of a user-sorted feature table: which row groups hold which users."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = pq.ParquetFile(self.path)
        meta = self.file.metadata
        self.n_groups = meta.num_row_groups
        self.n_rows = meta.num_rows
        self.columns: list[str] = list(self.file.schema_arrow.names)
        col = self.columns.index(USER_IDX)
        first, last = [], []
        for g in range(self.n_groups):
            stats = meta.row_group(g).column(col).statistics
            if stats is None or not stats.has_min_max:  # written elsewhere: read the keys
                users = self.file.read_row_group(g, columns=[USER_IDX])[USER_IDX].to_numpy()
                first.append(int(users.min()))
                last.append(int(users.max()))
            else:
                first.append(int(stats.min))
                last.append(int(stats.max))
        self.first_user = np.asarray(first, np.int64)
        self.last_user = np.asarray(last, np.int64)
        if np.any(self.first_user[1:] <= self.last_user[:-1]):
            raise InvalidArgumentError(f"{self.path}: row groups are not in user order")

    def feature_names(self, label: str = "label") -> list[str]:
        """Every column but the keys and the label."""
        return [c for c in self.columns if c not in (*KEYS, label)]

    def groups_of(self, users: np.ndarray) -> np.ndarray:
        """Row groups holding any of ``users``."""
        users = np.asarray(users, np.int64)
        g = np.searchsorted(self.last_user, users, side="left")
        g = g[g < self.n_groups]
        return np.unique(g)

    def read_group(self, group: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.file.read_row_group(group, columns=list(columns) if columns else None).to_pandas()

    def read_column(self, column: str) -> np.ndarray:
        return self.file.read(columns=[column])[column].to_numpy()

    def read_users(
        self, users: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The rows of ``users`` (sorted by user, then item), reading only their row groups."""
        wanted = np.unique(np.asarray(users, np.int64))
        cols = None if columns is None else list(dict.fromkeys([*KEYS, *columns]))
        parts = []
        for g in self.groups_of(wanted):
            part = self.file.read_row_group(int(g), columns=cols)
            keep = np.isin(part[USER_IDX].to_numpy(), wanted)
            parts.append(part.filter(pa.array(keep)))
        if not parts:
            return self.file.schema_arrow.empty_table().to_pandas()
        return pa.concat_tables(parts).to_pandas()
