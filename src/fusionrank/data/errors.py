"""The one error type for bad input files: it always names file, row and column."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data.

    ``row`` is the 1-based data row (the header is not counted), so a user can find it
    with ``sed -n '<row+1>p' FILE`` for delimited files that have a header.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
