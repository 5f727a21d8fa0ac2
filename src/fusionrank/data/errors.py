"""The one error type for bad input files: it always names file, row and column."""

from __future__ import annotations

import codecs
from pathlib import Path

from fusionrank.errors import FusionRankError


class DataError(FusionRankError, ValueError):
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


def not_utf8(path: str | Path, header_lines: int = 1, chunk: int = 1 << 24) -> DataError | None:
    """The first bytes of ``path`` that are not UTF-8, as a :class:`DataError` naming the
    row (the line, less ``header_lines``), or None when the whole file decodes.

    Read in binary chunks (no Python loop over lines), so it is cheap enough to call when
    a parser has failed on a large file.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> _ = open(path, "wb").write(b"uid,sku\\nu1,a\\nu2,\\xff\\n")
    >>> err = not_utf8(path)
    >>> err.row, "not UTF-8" in str(err)
    (2, True)
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                start = max(exc.start - len(exc.object) + len(block), 0)  # pending bytes come first
                line = lines + block.count(b"\n", 0, start) + 1
                row = line - header_lines
                byte = exc.object[exc.start : exc.start + 1]
                return DataError(
                    f"byte {byte!r} is not UTF-8 text; save the file as UTF-8"
                    + (" (in the header line)" if row < 1 else ""),
                    file=path,
                    row=row if row >= 1 else None,
                )
            if not block:
                return None
            lines += block.count(b"\n")


def header_line(path: str | Path, encoding: str = "utf-8") -> str:
    """The first line of ``path`` decoded as UTF-8 (``utf-8-sig`` skips a byte-order mark);
    bytes that are not UTF-8 are a :class:`DataError` naming the file and row."""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        return first.decode(encoding)
    except UnicodeDecodeError as exc:
        raise not_utf8(path) or DataError("the header line is not UTF-8 text", file=path) from exc
