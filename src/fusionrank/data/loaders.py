"""Loaders for interaction logs and item catalogues in CSV, TSV, Parquet and JSONL.

Files are read through Hugging Face ``datasets`` (so the same code handles local and
remote data files and large files memory-mapped by Arrow), then validated here so that
every problem names the file, the 1-based data row and the column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusionrank.columns import DOMAIN, ITEM_ID, RATING, TIMESTAMP, USER_ID
from fusionrank.data.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".json": "json",
}


@dataclass(frozen=True)
class InteractionColumns:
    """Which column of the file holds each field of an interaction."""

    user: str = USER_ID
    """Column with the user id."""
    item: str = ITEM_ID
    """Column with the item id."""
    timestamp: str | None = None
    """Column with a timestamp, if any: numbers (seconds), ISO-8601 text or datetimes."""
    rating: str | None = None
    """Column with a rating or weight, if any; absent means every row weighs 1."""
    domain: str | None = None
    """Column with the interaction's domain (for cross-domain protocols), if any."""

    @classmethod
    def from_mapping(cls, columns: dict[str, str] | None, source: str = "columns") -> InteractionColumns:
        """From ``{"user": "uid", "item": "sku", "timestamp": "ts"}``; unknown keys are refused.

        >>> InteractionColumns.from_mapping({"user": "uid", "item": "sku"}).user
        'uid'
        """
        from fusionrank.settings import build_settings

        return build_settings(cls, dict(columns or {}), owner=source)


def read_table(path: str | Path | pd.DataFrame, what: str = "table") -> tuple[pd.DataFrame, str]:
    """A table and the name errors use for it: a file read by :func:`read_file`, or a
    DataFrame given directly (named ``<what DataFrame>``)."""
    if isinstance(path, pd.DataFrame):
        if path.empty:
            raise DataError(f"the {what} DataFrame has no rows", file=f"<{what} DataFrame>")
        return path.reset_index(drop=True), f"<{what} DataFrame>"
    return read_file(path), str(path)


def read_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/JSONL file with HF ``datasets`` into a DataFrame.

    Delimited files are read with every column as a string so that type problems are
    reported by the validators with their row, not by a parser deep in Arrow.
    """
    import datasets

    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist", file=path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unsupported file type {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}",
            file=path,
        )
    if path.stat().st_size == 0:
        raise DataError("file is empty", file=path)
    datasets.disable_progress_bars()
    kwargs: dict = {}
    if fmt in ("csv", "tsv"):
        sep = "\t" if fmt == "tsv" else ","
        with open(path, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f, delimiter=sep), [])
        if not header:
            raise DataError("file has no header line", file=path)
        features = datasets.Features({name: datasets.Value("string") for name in header})
        kwargs = dict(sep=sep, features=features, keep_default_na=False)
        fmt = "csv"
    try:
        ds = datasets.load_dataset(fmt, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # parser errors from pandas/pyarrow
        if "corresponds to no data" in str(exc):
            raise DataError("file has no data rows", file=path) from exc
        raise DataError(f"could not parse as {fmt}: {exc}", file=path) from exc
    frame = ds.to_pandas()
    if frame.empty:
        raise DataError("file has no data rows", file=path)
    return frame.reset_index(drop=True)


def _require_columns(frame: pd.DataFrame, wanted: dict[str, str | None], path: Path) -> None:
    for field, col in wanted.items():
        if col is not None and col not in frame.columns:
            raise DataError(
                f"missing column for {field}; the file has {list(frame.columns)}; "
                "pass the right name in the column mapping",
                file=path,
                column=col,
            )


def _ids(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = frame[col]
    as_str = values.astype(str).str.strip()
    bad = values.isna().to_numpy() | (as_str == "").to_numpy() | (as_str == "nan").to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError("empty id", file=path, row=row + 1, column=col)
    # Floats such as 12.0 from JSON would otherwise give the id "12.0".
    if pd.api.types.is_float_dtype(values):
        whole = np.equal(np.mod(values.to_numpy(), 1), 0)
        if whole.all():
            return values.astype(np.int64).astype(str)
    return as_str


def _numbers(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = frame[col]
    numeric = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"value {values.iloc[row]!r} is not a number", file=path, row=row + 1, column=col)
    return numeric.astype("float64")


def _timestamps(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """Seconds since the epoch from numbers, datetimes or ISO-8601 text; bad cells name their row."""
    values = frame[col]
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
    else:
        numeric = pd.to_numeric(values.replace("", np.nan), errors="coerce")
        if numeric.notna().all():
            return numeric.astype("float64")
        stamps = pd.to_datetime(values.astype(str), errors="coerce", utc=True, format="ISO8601")
        stamps = stamps.where(numeric.isna(), pd.to_datetime(numeric, unit="s", utc=True))
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"value {values.iloc[row]!r} is not a timestamp (seconds, ISO-8601 text or a datetime)",
            file=path,
            row=row + 1,
            column=col,
        )
    return ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).astype("float64")


def normalise_interactions(
    frame: pd.DataFrame, columns: InteractionColumns, path: str | Path
) -> pd.DataFrame:
    """Validate a raw interaction table and rename it to fusionrank's column names.

    The result has ``user_id`` and ``item_id`` (str), ``rating`` (float, 1.0 if the file
    has none), and ``timestamp`` / ``domain`` when mapped. Row order is kept, so the
    frame index + 1 is the data row of the file.
    """
    path = Path(path)
    if frame.empty:
        raise DataError("no interactions", file=path)
    _require_columns(
        frame,
        {
            "user": columns.user,
            "item": columns.item,
            "timestamp": columns.timestamp,
            "rating": columns.rating,
            "domain": columns.domain,
        },
        path,
    )
    out = pd.DataFrame({USER_ID: _ids(frame, columns.user, path), ITEM_ID: _ids(frame, columns.item, path)})
    out[RATING] = _numbers(frame, columns.rating, path) if columns.rating else np.ones(len(frame))
    if columns.timestamp:
        out[TIMESTAMP] = _timestamps(frame, columns.timestamp, path)
    if columns.domain:
        out[DOMAIN] = _ids(frame, columns.domain, path)
    return out.reset_index(drop=True)


def load_interactions(
    path: str | Path | pd.DataFrame, columns: InteractionColumns | None = None
) -> pd.DataFrame:
    """Load and validate an interaction file (CSV/TSV/Parquet/JSONL) or DataFrame."""
    frame, name = read_table(path, "interactions")
    return normalise_interactions(frame, columns or InteractionColumns(), name)


def normalise_catalogue(
    frame: pd.DataFrame, id_column: str, path: str | Path, id_name: str = ITEM_ID
) -> pd.DataFrame:
    """Validate a catalogue (or user table): the id column exists, ids are non-empty and
    unique; it is renamed to ``id_name`` and moved first."""
    path = Path(path)
    if frame.empty:
        raise DataError("table has no rows", file=path)
    _require_columns(frame, {id_name.removesuffix("_id"): id_column}, path)
    ids = _ids(frame, id_column, path)
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise DataError(
            f"duplicate {id_name.removesuffix('_id')} id {ids.iloc[row]!r} (first seen at row {first + 1})",
            file=path,
            row=row + 1,
            column=id_column,
        )
    out = frame.drop(columns=[id_column]).copy()
    out.insert(0, id_name, ids.to_numpy())
    return out.reset_index(drop=True)


def load_catalogue(path: str | Path | pd.DataFrame, id_column: str = ITEM_ID) -> pd.DataFrame:
    """Load and validate an item catalogue (CSV/TSV/Parquet/JSONL, or a DataFrame)."""
    frame, name = read_table(path, "items")
    return normalise_catalogue(frame, id_column, name)


def check_known_items(
    interactions: pd.DataFrame, catalogue: pd.DataFrame, path: str | Path, column: str = ITEM_ID
) -> None:
    """Stop at the first interaction whose item is not in the catalogue (``column``: the
    interaction file's item column, as the user named it)."""
    known = pd.Index(catalogue[ITEM_ID])
    unknown = ~interactions[ITEM_ID].isin(known).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"item {interactions[ITEM_ID].iloc[row]!r} is not in the catalogue "
            f"({int(unknown.sum())} such rows in all)",
            file=path,
            row=row + 1,
            column=column,
        )
