"""Feeding the encoders: text tokenised per shard and batched by token length (less
padding); images decoded and preprocessed by DataLoader workers while the model runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fusionrank.data.text import compose_text
from fusionrank.encoders.embed_config import EmbedConfig, autocast
from fusionrank.encoders.job import Shard


def embed_text(
    table: Any,
    pending: list[Shard],
    encoder: Any,
    config: EmbedConfig,
    id_errors: dict[int, str],
    bar: tqdm,
    done: Callable[[Shard], None],
) -> None:
    """Embed the pending shards' texts; each shard goes to ``done`` once all its rows are in
    ``shard.vectors`` or ``shard.errors`` (empty text, a bad id)."""
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
        with autocast(config):
            for s in range(0, len(texts), config.batch_size):
                out[s : s + config.batch_size] = (
                    encoder.forward_text(encoder.tokenize(texts[s : s + config.batch_size])).cpu().numpy()
                )
        return out
    ids = encoder.tokenize(texts)["input_ids"]
    order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first: less padding
    with autocast(config):
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


def _batches(pending: list[Shard], rows_of: dict[int, list[int]], batch_size: int) -> Iterator[list[int]]:
    for shard in pending:
        rows = rows_of[shard.index]
        for s in range(0, len(rows), batch_size):
            yield rows[s : s + batch_size]


def embed_images(
    table: Any,
    pending: list[Shard],
    encoder: Any,
    config: EmbedConfig,
    id_errors: dict[int, str],
    bar: tqdm,
    done: Callable[[Shard], None],
) -> None:
    """Embed the pending shards' images: DataLoader workers read, check and preprocess them
    (missing, unreadable or escaping paths become errors); each shard goes to ``done`` when
    its last batch is through."""
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
    with autocast(config):
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
