"""The bookkeeping of a resumable embedding job: the job fingerprint (``job.json``), the
shard files that mark finished work, per-shard error parts, and the final manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionrank.data.vectors import errors_table, shard_schema, write_vector_manifest, write_vectors
from fusionrank.encoders.base import Encoder
from fusionrank.encoders.embed_config import EmbedConfig
from fusionrank.errors import FusionRankError, InvalidArgumentError
from fusionrank.io import atomic_path, read_json, sha256_file, write_json


class EmbedSettingsError(FusionRankError, ValueError):
    """The output folder holds a job with other settings."""


@dataclass
class Shard:
    """One resumable unit: catalogue rows ``[start, stop)``, their vectors and errors."""

    index: int
    start: int
    stop: int
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    batches_left: int = 0


def fingerprint(config: EmbedConfig, catalogue: Path, identity: dict, dim: int) -> dict:
    """What decides a job's output: settings (not speed knobs), weights, dim, catalogue."""
    payload = {
        "settings": config.decisive(),
        "weights": identity,
        "dim": dim,
        "catalogue": {"path": str(catalogue.resolve()), "sha256": sha256_file(catalogue)},
    }
    return json.loads(json.dumps(payload))  # as it reads back from job.json (tuples -> lists)


def check_encoder(encoder: Encoder, config: EmbedConfig) -> None:
    """An encoder given to the engine must run at the precision and backend the job records."""
    ran = (encoder.precision, encoder.backend)
    if ran != (config.precision, config.backend):
        raise InvalidArgumentError(
            f"the encoder runs {ran[0]} on {ran[1]} but the job says {config.precision} on {config.backend}"
        )


def _setting(settings: dict, key: str) -> Any:
    """A recorded setting; a missing ``backend`` is the default one (left out of fingerprints)."""
    return settings.get(key, "torch" if key == "backend" else None)


def check_job(out: Path, fingerprint: dict) -> None:
    """Record the job in ``job.json``, or refuse a folder written with other settings."""
    job = out / "job.json"
    if not job.exists():
        if out.exists() and any(p.name.startswith("vectors-") for p in out.iterdir()):
            raise EmbedSettingsError(f"{out} holds vector shards but no job.json; use an empty --out")
        write_json(job, fingerprint)
        return
    try:
        previous = read_json(job)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EmbedSettingsError(
            f"{job} is not valid JSON ({exc}); delete the folder {out} to start again"
        ) from exc
    if previous != fingerprint:
        diffs = []
        for key in ("settings", "weights", "dim", "catalogue"):
            a, b = previous.get(key), fingerprint.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                diffs += [
                    f"{key}.{k}: {_setting(a, k)!r} -> {_setting(b, k)!r}"
                    for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)
                ]
            elif a != b:
                diffs.append(f"{key}: {a!r} -> {b!r}")
        raise EmbedSettingsError(
            f"{out} was written by a job with other settings ({'; '.join(diffs)}). "
            "Use another --out folder, or delete this one to start again."
        )


def shard_path(out: Path, index: int) -> Path:
    return out / f"vectors-{index:05d}.parquet"


def errors_part(out: Path, index: int) -> Path:
    return out / ".errors" / f"errors-{index:05d}.parquet"


def finish_shard(out: Path, shard: Shard, ids: list[str], dim: int) -> tuple[int, int]:
    """Write the shard's errors part, then its vectors (the vectors file marks it done)."""
    bad = sorted(shard.errors)
    with atomic_path(errors_part(out, shard.index)) as tmp:
        pq.write_table(
            errors_table(
                [ids[r - shard.start] for r, _ in bad], [r + 1 for r, _ in bad], [m for _, m in bad]
            ),
            tmp,
        )
    good = sorted(shard.vectors)
    vecs = np.stack([shard.vectors[r] for r in good]) if good else np.empty((0, dim), np.float32)
    write_vectors(shard_path(out, shard.index), [ids[r - shard.start] for r in good], vecs)
    return len(good), len(bad)


def write_manifest(
    out: Path,
    shards: list[Shard],
    fingerprint: dict,
    config: EmbedConfig,
    encoder: Encoder,
    n_rows: int,
    ran: dict[str, Any] | None = None,
) -> dict:
    """Merge the error parts and write the manifest once every shard is done (``ran``: what
    ran, beside the precision and backend: device, cast, decoder or bucketing)."""
    shard_info: list[dict[str, Any]] = []
    error_tables = []
    for s in shards:
        shard_rows, _ = shard_schema(shard_path(out, s.index))  # a damaged shard is named
        shard_info.append(
            {
                "file": shard_path(out, s.index).name,
                "rows": shard_rows,
                "catalogue_rows": [s.start + 1, s.stop],
            }
        )
        error_tables.append(pq.read_table(errors_part(out, s.index)))
    errors = pa.concat_tables(error_tables) if error_tables else errors_table([], [], [])
    rows = sum(s["rows"] for s in shard_info)
    if rows + errors.num_rows != n_rows:  # the no-row-lost invariant
        raise RuntimeError(f"{rows} vectors + {errors.num_rows} errors != {n_rows} catalogue rows")
    return write_vector_manifest(
        out,
        shards=shard_info,
        errors=errors,
        encoder=config.encoder_ref,
        weights=encoder.identity,
        dim=encoder.dim,
        normalised=bool(encoder.normalized),
        modality=config.modality,
        model=config.model,
        catalogue_rows=n_rows,
        precision=config.precision,
        backend=config.backend,
        **(ran or {}),
        settings=fingerprint["settings"],
        catalogue=fingerprint["catalogue"],
    )
