"""The vectors contract and its one writer.

A vectors folder holds Parquet shards of (``item_id`` str — or ``user_id`` for user
vectors —, ``vector`` fixed-size float32 list), ``errors.parquet`` (``item_id``, ``row``,
``reason``: what could not be embedded, and why) and ``manifest.json`` written last:
encoder, weights identity, dim, normalised, rows, errors, shards, id column. Every producer
(the embedding engine, TransE, trained models' exports) writes through
:func:`write_vector_manifest`, so every folder reads the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionrank.columns import ITEM_ID, VECTOR
from fusionrank.data.errors import DataError
from fusionrank.data.idmap import IdMap
from fusionrank.errors import InvalidArgumentError, MissingInputError
from fusionrank.io import atomic_path, read_json, write_json

ERRORS_FILE = "errors.parquet"
MANIFEST = "manifest.json"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (cosine = dot product); all-zero rows stay zero.

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def vectors_table(ids: Sequence[str] | np.ndarray, vectors: np.ndarray, id_column: str = ITEM_ID) -> pa.Table:
    """An Arrow table in the vectors contract."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InvalidArgumentError(f"expected {len(ids)} vectors of shape (n, dim), got {vectors.shape}")
    dim = vectors.shape[1]
    values = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table(
        {
            id_column: pa.array([str(i) for i in ids], pa.string()),
            VECTOR: pa.FixedSizeListArray.from_arrays(values, dim),
        }
    )


def write_vectors(
    path: str | Path, ids: Sequence[str] | np.ndarray, vectors: np.ndarray, id_column: str = ITEM_ID
) -> None:
    """Write one shard atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(vectors_table(ids, vectors, id_column), tmp)


def errors_table(ids: Sequence[str], rows: Sequence[int | None], reasons: Sequence[str]) -> pa.Table:
    """The errors contract: the id, the 1-based catalogue row (null if none) and the reason."""
    return pa.table(
        {
            ITEM_ID: pa.array(list(ids), pa.string()),
            "row": pa.array(list(rows), pa.int64()),
            "reason": pa.array(list(reasons), pa.string()),
        }
    )


def write_vector_manifest(
    out: Path,
    *,
    shards: list[dict[str, Any]],
    errors: pa.Table,
    encoder: str,
    weights: dict[str, Any],
    dim: int,
    normalised: bool,
    id_column: str = ITEM_ID,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``errors.parquet`` and then ``manifest.json`` (last: it marks the folder done).

    ``shards`` lists the written shard files (``{"file", "rows", ...}``); ``extra`` keys
    (settings, catalogue identity ...) are added to the manifest."""
    with atomic_path(out / ERRORS_FILE) as tmp:
        pq.write_table(errors, tmp)
    manifest = {
        "encoder": encoder,
        "weights": weights,
        "dim": int(dim),
        "normalised": bool(normalised),
        "id_column": id_column,
        "rows": int(sum(s["rows"] for s in shards)),
        "errors": errors.num_rows,
        "shards": shards,
        "errors_file": ERRORS_FILE,
        **extra,
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def write_vector_folder(
    out: str | Path,
    ids: Sequence[str] | np.ndarray,
    vectors: np.ndarray,
    *,
    encoder: str,
    weights: dict[str, Any],
    normalised: bool,
    errors: Sequence[tuple[str, str]] = (),
    id_column: str = ITEM_ID,
    **extra: Any,
) -> dict[str, Any]:
    """A whole vectors folder in one shard (for producers that hold every vector at once):
    ``errors`` lists ``(id, reason)`` of what has no vector."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    write_vectors(out / "vectors-00000.parquet", ids, vectors, id_column)
    table = errors_table([i for i, _ in errors], [None] * len(errors), [r for _, r in errors])
    return write_vector_manifest(
        out,
        shards=[{"file": "vectors-00000.parquet", "rows": len(ids)}],
        errors=table,
        encoder=encoder,
        weights=weights,
        dim=vectors.shape[1] if vectors.ndim == 2 else 0,
        normalised=normalised,
        id_column=id_column,
        **extra,
    )


def read_vector_file(path: str | Path, id_column: str = ITEM_ID) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet shard: {_first_line(exc)}", file=path) from exc
    ids = np.asarray(table[id_column].to_pylist(), dtype=object)
    col = table[VECTOR].combine_chunks()
    dim = col.type.list_size
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return ids, flat.reshape(-1, dim).astype(np.float32, copy=False)


def shard_schema(path: str | Path) -> tuple[int, pa.Schema]:
    """Rows and schema of a Parquet shard from its footer; a missing, truncated or
    unreadable file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError("shard is missing", file=path)
    try:
        meta = pq.read_metadata(path)
        return meta.num_rows, meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet shard: {_first_line(exc)}", file=path) from exc


def check_vector_folder(folder: str | Path) -> dict[str, Any]:
    """The manifest of a finished vectors folder, after checking that it agrees with the
    shards (each listed shard exists, is readable, has the listed rows, the id column and
    vectors of the manifest's dim; the rows add up; no shard is left out). Only Parquet
    footers are read. A disagreement is a :class:`DataError` naming the file."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise MissingInputError(f"{folder} has no manifest.json: the embedding job did not finish")
    try:
        meta = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {_first_line(exc)}", file=path) from exc
    if not isinstance(meta, dict):
        raise DataError("expected a JSON object", file=path)
    for key, kind in (("dim", int), ("rows", int), ("shards", list)):
        if not isinstance(meta.get(key), kind):
            raise DataError(
                f"{key!r} is missing or not {'a list' if kind is list else 'an integer'}", file=path
            )
    id_column = meta.get("id_column", ITEM_ID)
    listed = set()
    for i, shard in enumerate(meta["shards"]):
        name = shard.get("file") if isinstance(shard, dict) else None
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise DataError(f"shards[{i}]: expected a file name inside the folder, got {name!r}", file=path)
        listed.add(name)
        rows, schema = shard_schema(folder / name)
        if rows != shard.get("rows"):
            raise DataError(f"has {rows} rows, manifest.json says {shard.get('rows')}", file=folder / name)
        if id_column not in schema.names or VECTOR not in schema.names:
            raise DataError(
                f"expected columns {id_column!r} and {VECTOR!r}, has {schema.names}", file=folder / name
            )
        kind = schema.field(VECTOR).type
        size = getattr(kind, "list_size", None)
        if size != meta["dim"]:
            raise DataError(
                f"vectors of dim {size if size is not None else kind}, manifest.json says {meta['dim']}",
                file=folder / name,
            )
    total = sum(int(s["rows"]) for s in meta["shards"])
    if total != meta["rows"]:
        raise DataError(f"the shards hold {total} rows in all, 'rows' says {meta['rows']}", file=path)
    extra = sorted(p.name for p in folder.glob("vectors-*.parquet") if p.name not in listed)
    if extra:
        raise DataError(f"shard {extra[0]} is in the folder but not in manifest.json", file=path)
    return meta


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def read_vectors(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All ids and vectors of a finished vectors folder, in catalogue order (checked with
    :func:`check_vector_folder` first)."""
    folder = Path(folder)
    meta = check_vector_folder(folder)
    id_column = meta.get("id_column", ITEM_ID)
    parts = [read_vector_file(folder / s["file"], id_column) for s in meta["shards"]]
    if not parts:
        return np.empty(0, dtype=object), np.empty((0, meta["dim"]), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass(frozen=True)
class VectorSet:
    """A finished vectors folder: its manifest, and the vectors on demand (:meth:`load`)."""

    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, folder: str | Path) -> VectorSet:
        """A finished folder, checked against its shards (:func:`check_vector_folder`)."""
        folder = Path(folder)
        return cls(folder, check_vector_folder(folder))

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors (rows, dim) float32)."""
        return read_vectors(self.folder)

    def errors(self) -> Any:
        """The rows that have no vector, with the reason (a DataFrame)."""
        return pq.read_table(self.folder / ERRORS_FILE).to_pandas()

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"VectorSet({str(self.folder)!r}, {m['encoder']}, {m['rows']} x {m['dim']}, {m['errors']} errors)"
        )


def align(folder: Path, items: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of ``folder`` in ``items`` order; rows without a vector are zero."""
    ids, vecs = read_vectors(folder)
    out = np.zeros((len(items), vecs.shape[1]), dtype=np.float32)
    idx = items.to_index(ids, missing=-1)
    keep = idx >= 0
    out[idx[keep]] = vecs[keep]
    present = np.zeros(len(items), dtype=bool)
    present[idx[keep]] = True
    return out, present
