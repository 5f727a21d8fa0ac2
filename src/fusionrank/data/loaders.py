"""Loaders for interaction logs and item catalogues in CSV, TSV, Parquet and JSONL.

Delimited and Parquet files are read through Hugging Face ``datasets``, JSON lines through
Arrow, then validated here (vectorised: files can have tens of millions of rows) so that
every problem names the file, the 1-based data row and the column.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusionrank.columns import DOMAIN, ITEM_ID, RATING, TIMESTAMP, USER_ID
from fusionrank.data.errors import DataError, header_line, not_utf8

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
    """Read a CSV/TSV/Parquet/JSONL file into a DataFrame.

    CSV/TSV and Parquet go through HF ``datasets``; delimited files are read with every
    column as a string so that type problems are reported by the validators with their
    row, not by a parser deep in Arrow. JSON goes through Arrow's JSON-lines reader, and
    through pandas (each value as written) when a column mixes types: HF's JSON loader
    would turn ``"1"`` and ``1.0`` into one id. A file that cannot be parsed is a
    :class:`DataError` naming the row when it can be found (bytes that are not UTF-8, a
    row with the wrong number of fields, an unterminated quote, a line that is not JSON).
    """
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
    if fmt == "json":
        frame = _read_json(path)
    else:
        frame = _read_with_datasets(path, fmt)
    if frame.empty:
        raise DataError("file has no data rows", file=path)
    return frame.reset_index(drop=True)


def _read_with_datasets(path: Path, fmt: str) -> pd.DataFrame:
    import datasets

    datasets.disable_progress_bars()
    kwargs: dict = {}
    if fmt in ("csv", "tsv"):
        sep = "\t" if fmt == "tsv" else ","
        header = _csv_header(path, sep)
        features = datasets.Features({name: datasets.Value("string") for name in header})
        # index_col=False: a row with more fields than the header is an error, never an index.
        kwargs = dict(sep=sep, features=features, keep_default_na=False, index_col=False)
        fmt = "csv"
    try:
        with quiet_datasets(), warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # pandas drops extra fields otherwise
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # parser errors from pandas/pyarrow
        raise parse_error(path, exc) from exc
    return ds.to_pandas()


def parse_error(path: str | Path, exc: BaseException) -> DataError:
    """A parser's failure on ``path`` as a :class:`DataError` naming the row when it can be
    found: bytes that are not UTF-8, a row with the wrong number of fields or an unclosed
    quote (CSV/TSV), a line that is not JSON (JSON lines); else the parser's first line."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower(), path.suffix.lstrip("."))
    if "corresponds to no data" in str(exc):
        return DataError("file has no data rows", file=path)
    found = not_utf8(path, header_lines=0 if fmt == "json" else 1) if fmt != "parquet" else None
    if found is None and fmt in ("csv", "tsv"):
        sep = "\t" if fmt == "tsv" else ","
        try:
            found = _csv_problem(path, sep, len(_csv_header(path, sep)))
        except DataError as bad_header:
            found = bad_header
    if found is None and fmt == "json":
        found = _json_problem(path)
    return found or DataError(f"could not parse as {fmt}: {_root_cause(exc)}", file=path)


def _csv_header(path: Path, sep: str) -> list[str]:
    """The header's column names; a header that is empty, not UTF-8 or names a column twice
    is refused here (HF ``datasets`` would fail later with a less clear message)."""
    line = header_line(path, "utf-8-sig")
    header = next(csv.reader([line], delimiter=sep), [])
    if not header or not any(h.strip() for h in header):
        raise DataError("file has no header line", file=path)
    for i, name in enumerate(header):
        if not name.strip():
            raise DataError(f"the header's field {i + 1} has no column name", file=path)
        if header.count(name) > 1:
            raise DataError("column appears twice in the header", file=path, column=name)
    return header


def _csv_problem(path: Path, sep: str, n_fields: int) -> DataError | None:
    """The first malformed row of a delimited file (wrong field count, bad quoting), found
    with the ``csv`` module after a faster parser failed; None if there is none."""
    row = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep, strict=True)
        next(reader, None)
        try:
            for record in reader:
                if not record:  # blank lines are skipped by the parser too
                    continue
                row += 1
                if len(record) != n_fields:
                    return DataError(
                        f"row has {len(record)} fields, the header has {n_fields}", file=path, row=row
                    )
        except csv.Error as exc:
            if "end of data" in str(exc):
                return DataError("a quote opened in this row is never closed", file=path, row=row + 1)
            return DataError(f"malformed row: {exc}", file=path, row=row + 1)
    return None


def _read_json(path: Path) -> pd.DataFrame:
    """JSON lines through Arrow; a JSON array, or lines whose columns mix types, through
    pandas with each value as written."""
    import pyarrow as pa
    import pyarrow.json as paj

    with open(path, "rb") as f:
        array = f.read(64).lstrip().startswith(b"[")
    if not array:
        try:
            table = paj.read_json(path)
            table.validate(full=True)  # Arrow's JSON reader does not check that text is UTF-8
            return table.to_pandas()
        except (pa.ArrowInvalid, pa.ArrowException):  # mixed types, bad bytes or bad JSON: find out below
            pass
    found = not_utf8(path, header_lines=0) or (None if array else _json_problem(path))
    if found is not None:  # else the lines are fine JSON whose columns mix types
        raise found
    try:
        if int(pd.__version__.split(".")[0]) < 3:  # pandas 3: dtype=False leaves dates alone too
            return pd.read_json(path, lines=not array, dtype=False, convert_dates=False, encoding="utf-8")
        return pd.read_json(path, lines=not array, dtype=False, encoding="utf-8")
    except ValueError as exc:
        raise DataError(f"could not parse as json: {_root_cause(exc)}", file=path) from exc


def _json_problem(path: Path) -> DataError | None:
    """The first line of a JSON-lines file that is not a JSON object; None if there is none."""
    row = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row += 1
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                at = min(exc.pos, len(line.rstrip())) + 1
                return DataError(f"not valid JSON: {exc.msg} (character {at})", file=path, row=row)
            if not isinstance(value, dict):
                return DataError(f"expected a JSON object, got {type(value).__name__}", file=path, row=row)
    return None


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """HF ``datasets`` logs parser failures on stderr; ours name the file and row instead."""
    from datasets.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost exception (HF wraps the parser's error)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _require_columns(frame: pd.DataFrame, wanted: dict[str, str | None], path: Path) -> None:
    for field, col in wanted.items():
        if col is not None and col not in frame.columns:
            raise DataError(
                f"missing column for {field}; the file has {list(frame.columns)}; "
                "pass the right name in the column mapping",
                file=path,
                column=col,
            )


MISSING_IDS = ("", "nan", "<na>")
"""Id cells that mean "no value" (compared lower-cased, after stripping blanks)."""


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _cell(value: object) -> str:
    """A cell as a user would write it: ``'abc'``, ``-6.0`` (not ``np.float64(-6.0)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _ids(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """The column as string ids. Empty or missing cells are refused, and so are two
    different values that would become the same id (the text ``"1"`` and the number 1.0)."""
    values = frame[col]
    as_str = values.astype(str).str.strip()
    bad = values.isna().to_numpy() | as_str.str.lower().isin(MISSING_IDS).to_numpy()
    if bad.any():
        row = _first(bad)
        shown = "" if pd.isna(values.iloc[row]) or not as_str.iloc[row] else f" ({_cell(values.iloc[row])})"
        raise DataError(f"empty id{shown}", file=path, row=row + 1, column=col)
    if pd.api.types.is_float_dtype(values):
        return _float_ids(values)
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) != "string":
        return _mixed_ids(values, col, path)
    return as_str


def _float_ids(values: pd.Series) -> pd.Series:
    """Floats such as 12.0 (JSON numbers, a column with gaps) are the ids ``"12"``, as the
    integers they are; other floats keep their shortest text."""
    numbers = values.to_numpy(dtype=np.float64)
    whole = np.equal(np.mod(numbers, 1), 0) & (np.abs(numbers) < 2**53)
    if whole.all():
        return pd.Series(numbers.astype(np.int64).astype(str), index=values.index, dtype=object)
    text = values.astype(str).to_numpy(dtype=object)
    text[whole] = numbers[whole].astype(np.int64).astype(str)
    return pd.Series(text, index=values.index, dtype=object)


def _mixed_ids(values: pd.Series, col: str, path: Path) -> pd.Series:
    """Ids of a column that mixes text and numbers; a text id and a number that read the
    same (``"1"`` and 1.0) are refused, naming both rows."""
    kind = values.map(lambda v: "text" if isinstance(v, str) else type(v).__name__).to_numpy()
    is_text = kind == "text"
    ids = values.astype(str).str.strip().to_numpy(dtype=object)
    floats = np.isin(kind, ("float", "float64", "float32"))
    if floats.any():
        ids[floats] = _float_ids(values[floats].astype(np.float64)).to_numpy()
    out = pd.Series(ids, index=values.index, dtype=object)
    text_ids = pd.Index(out[is_text].unique())
    clash = ~is_text & out.isin(text_ids).to_numpy()
    if clash.any():
        row = _first(clash)
        first = _first(is_text & (out == out.iloc[row]).to_numpy())
        a, b = sorted((first, row))
        raise DataError(
            f"ids {_cell(values.iloc[a])} (row {a + 1}) and {_cell(values.iloc[b])} (row {b + 1}) both "
            f"read as {out.iloc[row]!r}; write every id of the column the same way (all text or all numbers)",
            file=path,
            row=b + 1,
            column=col,
        )
    return out


def _numbers(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = frame[col]
    numeric = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    bad = ~np.isfinite(numeric.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"value {_cell(values.iloc[row])} is not a (finite) number", file=path, row=row + 1, column=col
        )
    return numeric.astype("float64")


def _timestamps(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """Seconds since the epoch from numbers, datetimes or ISO-8601 text; bad cells (and
    times before 1970) name their row."""
    values = frame[col]
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
    else:
        numeric = pd.to_numeric(values.replace("", np.nan), errors="coerce")
        if numeric.notna().all():
            return _not_negative(numeric.astype("float64"), values, col, path)
        stamps = pd.to_datetime(values.astype(str), errors="coerce", utc=True, format="ISO8601")
        stamps = stamps.where(numeric.isna(), pd.to_datetime(numeric, unit="s", utc=True, errors="coerce"))
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"value {_cell(values.iloc[row])} is not a timestamp (seconds, ISO-8601 text or a datetime)",
            file=path,
            row=row + 1,
            column=col,
        )
    seconds = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).astype("float64")
    return _not_negative(seconds, values, col, path)


def _not_negative(seconds: pd.Series, values: pd.Series, col: str, path: Path) -> pd.Series:
    bad = ~(np.isfinite(seconds.to_numpy()) & (seconds.to_numpy() >= 0))
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"timestamp {_cell(values.iloc[row])} is negative or not finite (seconds since 1970 expected)",
            file=path,
            row=row + 1,
            column=col,
        )
    return seconds


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
        first = _first((ids == ids.iloc[row]).to_numpy())
        raw, earlier = frame[id_column].iloc[row], frame[id_column].iloc[first]
        written = f"; written {_cell(earlier)} and {_cell(raw)}" if str(raw) != str(earlier) else ""
        raise DataError(
            f"duplicate {id_name.removesuffix('_id')} id {ids.iloc[row]!r} (first seen at row {first + 1}"
            f"{written})",
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
