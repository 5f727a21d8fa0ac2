"""Resumable batch embedding of a whole catalogue into Parquet shards.

The catalogue is read through Arrow (memory-mapped), ``shard_size`` rows at a time. Each
shard is written atomically as ``vectors-NNNNN.parquet`` after its bad rows were written
to ``.errors/errors-NNNNN.parquet``; a shard file therefore means "this chunk is done",
and a rerun of the same command skips it. ``job.json`` records the settings that decide
the output; a rerun into the same folder with other settings is refused. When every shard
is done, the error parts are merged into ``errors.parquet`` and ``manifest.json`` is
written last. Invariant: rows in vectors + rows in errors = rows in the catalogue.

Text is tokenised per shard and batched in order of token length (less padding). Images
are decoded and resized by DataLoader workers while the model runs; only the batches in
flight are in memory.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from fusionrank.columns import ITEM_ID
from fusionrank.encoders.templates import compose_text
from fusionrank.encoders.vectors import write_vectors
from fusionrank.io import atomic_path, read_json, sha256_file, write_json

EncoderKind = Literal["text", "image", "clip"]
Precision = Literal["fp32", "bf16", "fp16"]
ERRORS_FILE = "errors.parquet"


class EmbedSettingsError(ValueError):
    """The output folder holds a job with other settings."""


@dataclass(frozen=True)
class EmbedConfig:
    """Everything that decides an embedding job's output, and how fast it runs."""

    encoder: EncoderKind = "text"
    """``text`` (transformers), ``image`` (torchvision ResNet) or ``clip`` (open_clip)."""
    model: str | None = None
    """Model name or local path; default per encoder: all-MiniLM-L6-v2, resnet50, ViT-B-32."""
    weights: str | None = "DEFAULT"
    """Image encoder weights: enum name (from the torch hub cache), checkpoint path, or None."""
    clip_pretrained: str | None = None
    """CLIP pretrained tag (from the HF cache) or checkpoint path; None = random weights."""
    fields: tuple[str, ...] | None = None
    """Catalogue columns joined into the item text (text, and CLIP without images)."""
    template: str | None = None
    """Alternative to ``fields``: a format string such as ``"{title} ({year})"``."""
    id_column: str = ITEM_ID
    """Catalogue column with the item id."""
    image_column: str | None = None
    """Column with image paths relative to ``image_root`` (image, and CLIP on images)."""
    image_root: str | None = None
    """Folder that every image path must stay inside."""
    pooling: Literal["mean", "cls"] = "mean"
    """Text pooling."""
    max_length: int = 256
    """Text tokens kept."""
    normalize: bool = True
    """L2-normalise vectors (CLIP always is)."""
    precision: Precision = "fp32"
    """bf16/fp16 run under autocast (fp16 only on CUDA)."""
    shard_size: int = 4096
    """Catalogue rows per output shard (and per resumable unit of work)."""
    batch_size: int = 64
    """Rows per forward pass."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    workers: int = 2
    """DataLoader worker processes that decode images."""
    quiet: bool = False
    """No progress bar (for logs); the summary line is still printed."""

    def __post_init__(self) -> None:
        if self.encoder not in ("text", "image", "clip"):
            raise ValueError(f"encoder must be text, image or clip, got {self.encoder!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("fp16 needs --device cuda; use bf16 or fp32 on the CPU")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is available")
        if self.encoder == "image" and not self.image_column:
            raise ValueError("the image encoder needs --image-column")
        if self.image_column and not self.image_root:
            raise ValueError("--image-column needs --image-root (images must stay inside it)")
        if self.modality == "text" and not (self.fields or self.template):
            raise ValueError("text embedding needs --fields (e.g. title,genres) or a template")
        if self.shard_size < 1 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("shard_size and batch_size must be >= 1, workers >= 0")

    @property
    def modality(self) -> str:
        return "image" if self.encoder == "image" or self.image_column else "text"


@dataclass
class _Shard:
    index: int
    start: int
    stop: int
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    batches_left: int = 0


def build_encoder(config: EmbedConfig) -> Any:
    """The encoder object a config asks for (loaded through the real loading code)."""
    if config.encoder == "text":
        from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

        kwargs = {"model": config.model} if config.model else {}
        return TextEncoder(
            TextEncoderConfig(
                pooling=config.pooling, max_length=config.max_length, normalize=config.normalize, **kwargs
            ),
            config.device,
        )
    if config.encoder == "image":
        from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig

        return ImageEncoder(
            ImageEncoderConfig(
                model=config.model or "resnet50", weights=config.weights, normalize=config.normalize
            ),
            config.device,
        )
    from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig

    return ClipEncoder(
        ClipEncoderConfig(model=config.model or "ViT-B-32", pretrained=config.clip_pretrained), config.device
    )


def open_catalogue(path: Path) -> Any:
    """The catalogue as a memory-mapped HF ``datasets.Dataset`` (atomic ``.item`` files too)."""
    import datasets

    from fusionrank.data.atomic import read_atomic
    from fusionrank.data.errors import DataError
    from fusionrank.data.loaders import FORMATS

    datasets.disable_progress_bars()
    if path.suffix == ".item":
        return datasets.Dataset.from_pandas(read_atomic(path), preserve_index=False)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unsupported catalogue type {path.suffix!r}", file=path)
    if not path.exists() or path.stat().st_size == 0:
        raise DataError("catalogue file is missing or empty", file=path)
    kwargs = {"sep": "\t"} if fmt == "tsv" else {}
    try:
        return datasets.load_dataset(
            "csv" if fmt == "tsv" else fmt, data_files=str(path), split="train", **kwargs
        )
    except Exception as exc:
        raise DataError(f"could not read catalogue: {exc}", file=path) from exc


def _fingerprint(config: EmbedConfig, catalogue: Path, identity: dict, dim: int) -> dict:
    decisive = {
        k: v for k, v in asdict(config).items() if k not in ("batch_size", "device", "workers", "quiet")
    }
    fingerprint = {
        "settings": decisive,
        "weights": identity,
        "dim": dim,
        "catalogue": {"path": str(catalogue.resolve()), "sha256": sha256_file(catalogue)},
    }
    return json.loads(json.dumps(fingerprint))  # as it reads back from job.json (tuples -> lists)


def _check_job(out: Path, fingerprint: dict) -> None:
    job = out / "job.json"
    if not job.exists():
        if out.exists() and any(p.name.startswith("vectors-") for p in out.iterdir()):
            raise EmbedSettingsError(f"{out} holds vector shards but no job.json; use an empty --out")
        write_json(job, fingerprint)
        return
    previous = read_json(job)
    if previous != fingerprint:
        diffs = []
        for key in ("settings", "weights", "dim", "catalogue"):
            a, b = previous.get(key), fingerprint.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                diffs += [
                    f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
                    for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)
                ]
            elif a != b:
                diffs.append(f"{key}: {a!r} -> {b!r}")
        raise EmbedSettingsError(
            f"{out} was written by a job with other settings ({'; '.join(diffs)}). "
            "Use another --out folder, or delete this one to start again."
        )


def _autocast(config: EmbedConfig) -> contextlib.AbstractContextManager:
    if config.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if config.device.startswith("cuda") else "cpu", dtype=dtype)


def _shard_path(out: Path, index: int) -> Path:
    return out / f"vectors-{index:05d}.parquet"


def _errors_part(out: Path, index: int) -> Path:
    return out / ".errors" / f"errors-{index:05d}.parquet"


def _errors_table(ids: list[str], rows: list[int], reasons: list[str]) -> pa.Table:
    return pa.table(
        {
            ITEM_ID: pa.array(ids, pa.string()),
            "row": pa.array(rows, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
        }
    )


def _finish_shard(out: Path, shard: _Shard, ids: list[str], dim: int) -> tuple[int, int]:
    """Write the shard's errors part, then its vectors (the vectors file marks it done)."""
    bad = sorted(shard.errors)
    with atomic_path(_errors_part(out, shard.index)) as tmp:
        pq.write_table(
            _errors_table(
                [ids[r - shard.start] for r, _ in bad], [r + 1 for r, _ in bad], [m for _, m in bad]
            ),
            tmp,
        )
    good = sorted(shard.vectors)
    vecs = np.stack([shard.vectors[r] for r in good]) if good else np.empty((0, dim), np.float32)
    write_vectors(_shard_path(out, shard.index), [ids[r - shard.start] for r in good], vecs)
    return len(good), len(bad)


def _shard_ids(table: Any, config: EmbedConfig, start: int, stop: int) -> list[str]:
    return ["" if v is None else str(v) for v in table[start:stop][config.id_column]]


def _check_ids(table: Any, config: EmbedConfig, path: Path) -> dict[int, str]:
    """Rows whose id is empty or repeated are errors (they could not be joined back)."""
    from fusionrank.data.errors import DataError

    if config.id_column not in table.column_names:
        raise DataError(
            f"no id column; the catalogue has {table.column_names}", file=path, column=config.id_column
        )
    for col in (config.image_column,) if config.image_column else ():
        if col not in table.column_names:
            raise DataError(f"no image column; the catalogue has {table.column_names}", file=path, column=col)
    missing = [f for f in (config.fields or ()) if f not in table.column_names]
    if missing:
        raise DataError(
            f"no such text field; the catalogue has {table.column_names}", file=path, column=missing[0]
        )
    ids = pd.Series(["" if v is None else str(v).strip() for v in table[config.id_column]])
    bad: dict[int, str] = {int(r): "empty item id" for r in np.flatnonzero((ids == "").to_numpy())}
    dup = ids.duplicated() & (ids != "")
    for r in np.flatnonzero(dup.to_numpy()):
        bad[int(r)] = f"duplicate item id {ids.iloc[r]!r}"
    return bad


def embed_catalogue(
    catalogue: str | Path,
    out: str | Path,
    config: EmbedConfig,
    encoder: Any = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Embed every row of ``catalogue`` into ``out``; returns the manifest. Resumable."""
    catalogue, out = Path(catalogue), Path(out)
    log = log or (lambda m: print(m, file=sys.stderr))
    table = open_catalogue(catalogue)
    id_errors = _check_ids(table, config, catalogue)
    encoder = encoder or build_encoder(config)
    fingerprint = _fingerprint(config, catalogue, encoder.identity, encoder.dim)
    out.mkdir(parents=True, exist_ok=True)
    _check_job(out, fingerprint)
    if (out / "manifest.json").exists():
        log(f"{out} is complete; nothing to do")
        return read_json(out / "manifest.json")
    for stale in list(out.glob(".*.tmp-*")) + list((out / ".errors").glob(".*.tmp-*")):
        stale.unlink(missing_ok=True)
    n = len(table)
    shards = [
        _Shard(i, s, min(s + config.shard_size, n)) for i, s in enumerate(range(0, n, config.shard_size))
    ]
    pending = [
        s for s in shards if not _shard_path(out, s.index).exists() or not _errors_part(out, s.index).exists()
    ]
    t0 = time.perf_counter()
    bar = tqdm(
        total=sum(s.stop - s.start for s in pending),
        unit="item",
        desc=f"embed {config.encoder}",
        disable=config.quiet,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    counts = [0, 0]

    def done(shard: _Shard) -> None:
        good, bad = _finish_shard(out, shard, _shard_ids(table, config, shard.start, shard.stop), encoder.dim)
        counts[0] += good
        counts[1] += bad

    if config.modality == "text":
        _embed_text(table, pending, encoder, config, id_errors, bar, done)
    else:
        _embed_images(table, pending, encoder, config, id_errors, bar, done)
    bar.close()
    manifest = _write_manifest(out, shards, fingerprint, config, encoder, n)
    elapsed = time.perf_counter() - t0
    rate = counts[0] / elapsed if elapsed > 0 else float("nan")
    log(
        f"embedded {counts[0]} items ({counts[1]} errors) in {elapsed:.1f}s ({rate:.1f} items/s) "
        f"this run; total {manifest['rows']} vectors, {manifest['errors']} errors -> {out}"
    )
    return manifest


def _write_manifest(
    out: Path, shards: list[_Shard], fingerprint: dict, config: EmbedConfig, encoder: Any, n_rows: int
) -> dict:
    shard_info, error_tables = [], []
    for s in shards:
        meta = pq.read_metadata(_shard_path(out, s.index))
        shard_info.append(
            {
                "file": _shard_path(out, s.index).name,
                "rows": meta.num_rows,
                "catalogue_rows": [s.start + 1, s.stop],
            }
        )
        error_tables.append(pq.read_table(_errors_part(out, s.index)))
    errors = pa.concat_tables(error_tables) if error_tables else _errors_table([], [], [])
    with atomic_path(out / ERRORS_FILE) as tmp:
        pq.write_table(errors, tmp)
    rows = sum(s["rows"] for s in shard_info)
    if rows + errors.num_rows != n_rows:  # the no-row-lost invariant
        raise RuntimeError(f"{rows} vectors + {errors.num_rows} errors != {n_rows} catalogue rows")
    manifest = {
        "encoder": config.encoder,
        "modality": config.modality,
        "model": config.model,
        "weights": encoder.identity,
        "dim": encoder.dim,
        "normalised": bool(encoder.normalized),
        "rows": rows,
        "errors": errors.num_rows,
        "catalogue_rows": n_rows,
        "shards": shard_info,
        "errors_file": ERRORS_FILE,
        "settings": fingerprint["settings"],
        "catalogue": fingerprint["catalogue"],
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _embed_text(
    table: Any,
    pending: list[_Shard],
    encoder: Any,
    config: EmbedConfig,
    id_errors: dict[int, str],
    bar: tqdm,
    done: Callable[[_Shard], None],
) -> None:
    fields = list(config.fields or ())
    for shard in pending:
        chunk = table[shard.start : shard.stop]
        keys = list(chunk)
        texts, rows = [], []
        for j in range(shard.stop - shard.start):
            r = shard.start + j
            if r in id_errors:
                shard.errors.append((r, id_errors[r]))
                continue
            text = compose_text({k: chunk[k][j] for k in keys}, fields, config.template)
            if not text:
                shard.errors.append((r, "empty text"))
                continue
            texts.append(text)
            rows.append(r)
        if texts:
            for r, vec in zip(rows, _encode_texts(encoder, texts, config)):
                shard.vectors[r] = vec
        done(shard)
        bar.update(shard.stop - shard.start)


def _encode_texts(encoder: Any, texts: list[str], config: EmbedConfig) -> np.ndarray:
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    if encoder.kind == "clip":
        with _autocast(config):
            for s in range(0, len(texts), config.batch_size):
                out[s : s + config.batch_size] = (
                    encoder.forward_text(encoder.tokenize(texts[s : s + config.batch_size])).cpu().numpy()
                )
        return out
    ids = encoder.tokenize(texts)["input_ids"]
    order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first: less padding
    with _autocast(config):
        for s in range(0, len(ids), config.batch_size):
            rows = order[s : s + config.batch_size]
            out[rows] = encoder.forward(encoder.collate([ids[i] for i in rows])).cpu().numpy()
    return out


class _ImageRows(torch.utils.data.Dataset):
    """Loads, checks and preprocesses one image per catalogue row (runs in workers)."""

    def __init__(self, paths: dict[int, str], root: Path, preprocess: Callable) -> None:
        self.paths, self.root, self.preprocess = paths, root.resolve(), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int) -> tuple[int, torch.Tensor | None, str | None]:
        from PIL import Image

        rel = self.paths[row]
        if not rel:
            return row, None, "no image path"
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            return row, None, f"image path {rel!r} escapes the image root"
        if not path.is_file():
            return row, None, f"missing image {rel!r}"
        try:
            with Image.open(path) as im:
                pixels = self.preprocess(im.convert("RGB"))
        except Exception as exc:  # truncated or unreadable files
            return row, None, f"unreadable image {rel!r}: {type(exc).__name__}: {exc}"
        return row, pixels, None


def _collate(items: list) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(r, t) for r, t, e in items if t is not None]
    bad = [(r, e) for r, t, e in items if t is None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return [r for r, _ in good], pixels, bad


def _batches(pending: list[_Shard], rows_of: dict[int, list[int]], batch_size: int) -> Iterator[list[int]]:
    for shard in pending:
        rows = rows_of[shard.index]
        for s in range(0, len(rows), batch_size):
            yield rows[s : s + batch_size]


def _embed_images(
    table: Any,
    pending: list[_Shard],
    encoder: Any,
    config: EmbedConfig,
    id_errors: dict[int, str],
    bar: tqdm,
    done: Callable[[_Shard], None],
) -> None:
    paths: dict[int, str] = {}
    rows_of: dict[int, list[int]] = {}
    for shard in pending:
        col = table[shard.start : shard.stop][config.image_column]
        rows = []
        for j, value in enumerate(col):
            r = shard.start + j
            if r in id_errors:
                shard.errors.append((r, id_errors[r]))
                continue
            paths[r] = "" if value is None else str(value).strip()
            rows.append(r)
        rows_of[shard.index] = rows
        shard.batches_left = -(-len(rows) // config.batch_size)
    for shard in pending:  # shards whose rows were all bad ids
        if shard.batches_left == 0:
            done(shard)
            bar.update(shard.stop - shard.start)
    batches = list(_batches(pending, rows_of, config.batch_size))
    if not batches:
        return
    loader = torch.utils.data.DataLoader(
        _ImageRows(paths, Path(config.image_root or "."), encoder.preprocess),
        batch_sampler=batches,
        collate_fn=_collate,
        num_workers=config.workers,
        prefetch_factor=4 if config.workers else None,
        pin_memory=config.device.startswith("cuda"),
    )
    by_row = {}
    for shard in pending:
        for r in rows_of[shard.index]:
            by_row[r] = shard
    with _autocast(config):
        for rows, pixels, bad in loader:
            shard = by_row[(rows or [r for r, _ in bad])[0]]
            shard.errors.extend(bad)
            if pixels is not None:
                for r, vec in zip(rows, encoder.forward(pixels).cpu().numpy()):
                    shard.vectors[r] = vec
            shard.batches_left -= 1
            if shard.batches_left == 0:
                done(shard)
                bar.update(shard.stop - shard.start)


def embed(
    catalogue: str | Path,
    out: str | Path,
    encoder: EncoderKind = "text",
    model: str | None = None,
    fields: list[str] | tuple[str, ...] | None = None,
    image_column: str | None = None,
    image_root: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    precision: Precision = "fp32",
    workers: int = 2,
    **settings: Any,
) -> dict:
    """The ``fusionrank embed`` command as a function; returns the manifest.

    Extra keyword arguments are :class:`EmbedConfig` fields (``template``, ``id_column``,
    ``shard_size``, ``weights``, ``clip_pretrained``, ``pooling``, ``quiet`` ...).
    """
    config = EmbedConfig(
        encoder=encoder,
        model=model,
        fields=tuple(fields) if fields else None,
        image_column=image_column,
        image_root=str(image_root) if image_root else None,
        batch_size=batch_size,
        device=device,
        precision=precision,
        workers=workers,
        **settings,
    )
    return embed_catalogue(catalogue, out, config)
