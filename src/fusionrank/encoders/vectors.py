"""The vectors contract: Parquet shards of (``item_id`` str, ``vector`` fixed-size float32 list)
plus a ``manifest.json`` that names the shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionrank.columns import ITEM_ID, VECTOR
from fusionrank.io import atomic_path, read_json


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (cosine = dot product); all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def vectors_table(ids: list[str] | np.ndarray, vectors: np.ndarray) -> pa.Table:
    """An Arrow table in the vectors contract."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"expected {len(ids)} vectors of shape (n, dim), got {vectors.shape}")
    dim = vectors.shape[1]
    values = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table(
        {
            ITEM_ID: pa.array([str(i) for i in ids], pa.string()),
            VECTOR: pa.FixedSizeListArray.from_arrays(values, dim),
        }
    )


def write_vectors(path: str | Path, ids: list[str] | np.ndarray, vectors: np.ndarray) -> None:
    """Write one shard atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(vectors_table(ids, vectors), tmp)


def read_vector_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    ids = np.asarray(table[ITEM_ID].to_pylist(), dtype=object)
    col = table[VECTOR].combine_chunks()
    dim = col.type.list_size
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return ids, flat.reshape(-1, dim).astype(np.float32, copy=False)


def read_vectors(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All ids and vectors of a finished embedding folder, in catalogue order."""
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{folder} has no manifest.json: the embedding job did not finish")
    meta = read_json(manifest)
    parts = [read_vector_file(folder / s["file"]) for s in meta["shards"]]
    if not parts:
        return np.empty(0, dtype=object), np.empty((0, meta["dim"]), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
