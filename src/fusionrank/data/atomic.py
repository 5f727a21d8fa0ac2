"""Reader for RecBole atomic files (``.inter .item .user .kg .link``).

Each file is tab separated; the header names every column as ``name:type`` with type one
of ``token``, ``token_seq``, ``float`` or ``float_seq``. Tokens stay strings (ids are
strings everywhere in fusionrank), ``token_seq`` becomes a list of strings (split on
spaces), ``float`` a float64 column and ``float_seq`` a list of floats.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from fusionrank.data.errors import DataError, header_line, not_utf8

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ATOMIC_SUFFIXES = ("inter", "item", "user", "kg", "link")


def parse_atomic_header(line: str, file: str | Path) -> list[tuple[str, str]]:
    """Split a header line into ``(name, type)`` pairs, with a clear error for bad fields."""
    fields = []
    for raw in line.rstrip("\r\n").split("\t"):
        name, sep, kind = raw.partition(":")
        if not sep or not name:
            raise DataError(
                f"header field {raw!r} is not of the form name:type (type one of {', '.join(ATOMIC_TYPES)})",
                file=file,
                row=0,
                column=raw,
            )
        if kind not in ATOMIC_TYPES:
            raise DataError(
                f"unknown atomic type {kind!r}; expected one of {', '.join(ATOMIC_TYPES)}",
                file=file,
                row=0,
                column=name,
            )
        fields.append((name, kind))
    names = [n for n, _ in fields]
    for n in names:
        if names.count(n) > 1:
            raise DataError("column appears twice in the header", file=file, row=0, column=n)
    return fields


def read_atomic(path: str | Path) -> pd.DataFrame:
    """Read one atomic file into a DataFrame with typed columns (names without ``:type``)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist", file=path)
    header = header_line(path)
    if not header.strip():
        raise DataError("file is empty: expected a header of name:type fields", file=path)
    fields = parse_atomic_header(header, path)
    names = [n for n, _ in fields]
    try:
        raw = pd.read_csv(
            path,
            sep="\t",
            header=0,
            names=names,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
            skip_blank_lines=True,
        )
    except UnicodeDecodeError as exc:
        raise not_utf8(path) or DataError(f"not UTF-8 text: {exc}", file=path) from exc
    except pd.errors.ParserError as exc:  # wrong number of fields on a line
        _check_field_counts(path, len(names), names)
        raise DataError(f"malformed line: {str(exc).strip()}", file=path) from exc
    if raw.empty:
        raise DataError("file has a header but no data rows", file=path)
    _check_field_counts(path, len(names), names)
    out: dict[str, pd.Series | list[list[float]]] = {}
    for name, kind in fields:
        col = raw[name]
        if kind == "token":
            out[name] = col.astype(str)
        elif kind == "token_seq":
            out[name] = col.map(lambda s: s.split(" ") if s else [])
        elif kind == "float":
            out[name] = _to_float(col, path, name)
        else:  # float_seq
            out[name] = [_float_list(s, path, i + 1, name) for i, s in enumerate(col.tolist())]
    return pd.DataFrame(out)


def _check_field_counts(path: Path, n_fields: int, names: list[str]) -> None:
    """pandas pads short rows silently; find the first data row with the wrong field count."""
    with open(path, encoding="utf-8") as f:
        next(f)
        row = 0
        for line in f:
            if not line.strip():
                continue
            row += 1
            got = line.count("\t") + 1
            if got != n_fields:
                column = names[min(got, n_fields) - 1] if got < n_fields else names[-1]
                raise DataError(
                    f"row has {got} fields, the header has {n_fields}", file=path, row=row, column=column
                )


def _to_float(col: pd.Series, path: Path, name: str) -> pd.Series:
    values = pd.to_numeric(col.replace("", np.nan), errors="coerce")
    bad = values.isna() & col.ne("")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"value {col.iloc[row]!r} is not a float", file=path, row=row + 1, column=name)
    return values.astype("float64")


def _float_list(text: str, path: Path, row: int, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(" ")] if text else []
    except ValueError as exc:
        raise DataError(f"value {text!r} is not a float sequence", file=path, row=row, column=name) from exc


def read_atomic_dataset(directory: str | Path, name: str) -> dict[str, pd.DataFrame]:
    """Read every ``<name>.<suffix>`` atomic file present in ``directory``.

    Returns a dict keyed by suffix (``inter``, ``item``, ...). ``.inter`` is required.
    """
    directory = Path(directory)
    inter = directory / f"{name}.inter"
    if not inter.exists():
        raise DataError(
            f"no interactions file {inter.name} in {directory}; run "
            f"`fusionrank data fetch {name}` or point --root at a folder of atomic files",
            file=inter,
        )
    return {
        suffix: read_atomic(directory / f"{name}.{suffix}")
        for suffix in ATOMIC_SUFFIXES
        if (directory / f"{name}.{suffix}").exists()
    }
