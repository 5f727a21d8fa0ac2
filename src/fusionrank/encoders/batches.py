"""Feeding the encoders. Text is composed per shard; an encoder with the token fast path
(:class:`~fusionrank.encoders.base.TokenEncoder`) gets the shard tokenised at once and
batches of rows (BERT: sorted by token length, each batch padded to its own longest row
only), any other encoder batches of the composed strings. Images are read, checked and
decoded by DataLoader workers while the model runs; an encoder with the pixel fast path
(:class:`~fusionrank.encoders.base.PixelEncoder`) has them preprocessed there too and gets
pixel tensors, any other encoder gets the batch of RGB PIL images. With a GPU, the next
shard's text is prepared in a thread while the current one runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrank.data.text import compose_text
from fusionrank.encoders.base import Encoder, PixelEncoder, TokenEncoder, checked_vectors
from fusionrank.encoders.device import decode_workers
from fusionrank.encoders.embed_config import EmbedConfig
from fusionrank.encoders.job import Shard


@dataclass
class _ShardText:
    """A shard's texts, ready for the model: catalogue rows, the texts (or their tokens,
    for an encoder with the token fast path), bad rows."""

    rows: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tokens: Sequence[Any] | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)


def _prepare(
    table: Any, shard: Shard, encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str]
) -> _ShardText:
    """Compose (and tokenise) one shard's texts (empty text and bad ids become errors)."""
    fields = list(config.fields or ())
    chunk = table[shard.start : shard.stop]
    keys = list(chunk)
    out = _ShardText()
    for j in range(shard.stop - shard.start):
        r = shard.start + j
        if r in id_errors:
            out.errors.append((r, id_errors[r]))
            continue
        text = compose_text({k: chunk[k][j] for k in keys}, fields, config.template)
        if not text:
            out.errors.append((r, "empty text"))
            continue
        out.texts.append(text)
        out.rows.append(r)
    if out.texts and isinstance(encoder, TokenEncoder):
        out.tokens = encoder.tokenize(out.texts)
    return out


def embed_text(
    table: Any, pending: list[Shard], encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str]
) -> Iterator[Shard]:
    """Embed the pending shards' texts, in order; each shard is yielded once all its rows
    are in ``shard.vectors`` or ``shard.errors`` (empty text, a bad id)."""

    def prepare(shard: Shard) -> _ShardText:
        return _prepare(table, shard, encoder, config, id_errors)

    for shard, prepared in _prepared(pending, prepare, ahead=config.device.startswith("cuda")):
        shard.errors.extend(prepared.errors)
        if prepared.rows:
            for r, vec in zip(prepared.rows, _encode_text(encoder, prepared, config.batch_size)):
                shard.vectors[r] = vec
        yield shard


def _prepared(
    pending: list[Shard], prepare: Callable[[Shard], _ShardText], ahead: bool
) -> Iterator[tuple[Shard, _ShardText]]:
    """Each shard with its prepared text. With ``ahead`` (a GPU runs the model), the next
    shard is prepared in a thread meanwhile (the tokenizer releases the GIL); on the CPU it
    would only take cores from the model."""
    if not ahead or len(pending) < 2:
        for shard in pending:
            yield shard, prepare(shard)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(prepare, pending[0])
        for k, shard in enumerate(pending):
            prepared = future.result()
            if k + 1 < len(pending):
                future = pool.submit(prepare, pending[k + 1])
            yield shard, prepared


def _encode_text(encoder: Encoder, prepared: _ShardText, batch_size: int) -> np.ndarray:
    """Vectors of one shard's texts, in order: through the token fast path when the
    encoder has it (rows longest first when it sorts by length, so that each batch pads
    to a length close to all of its rows'), else ``encode`` of each batch of texts."""
    n = len(prepared.rows)
    out = np.empty((n, encoder.dim), dtype=np.float32)
    if prepared.tokens is not None and isinstance(encoder, TokenEncoder):
        tokens = prepared.tokens
        if encoder.sort_by_length:
            order = np.argsort([-len(x) for x in tokens], kind="stable")
        else:
            order = np.arange(n)
        for s in range(0, n, batch_size):
            rows = order[s : s + batch_size]
            out[rows] = encoder.encode_tokens(tokens, rows.tolist()).cpu().numpy()
        return out
    for s in range(0, n, batch_size):
        batch = prepared.texts[s : s + batch_size]
        out[s : s + len(batch)] = checked_vectors(encoder, encoder.encode(batch), len(batch))
    return out


class _ImageRows(torch.utils.data.Dataset):
    """Loads, checks and decodes one image per catalogue row, and preprocesses it when
    given ``preprocess`` (runs in workers): (row, pixels or RGB image or None, error or None)."""

    def __init__(self, paths: dict[int, str], root: Path, preprocess: Callable | None) -> None:
        self.paths, self.root, self.preprocess = paths, root.resolve(), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int) -> tuple[int, Any, str | None]:
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
                rgb = im.convert("RGB")  # decoded here: a loaded copy
                pixels = self.preprocess(rgb) if self.preprocess is not None else rgb
        except Exception as exc:  # truncated or unreadable files
            return row, None, f"unreadable image {rel!r}: {type(exc).__name__}: {exc}"
        return row, pixels, None


def _collate(items: list) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """A batch of pixel tensors, stacked (the pixel fast path)."""
    rows, good, bad = _split(items)
    return rows, torch.stack(good) if good else None, bad


def _collate_images(items: list) -> tuple[list[int], list[Any] | None, list[tuple[int, str]]]:
    """A batch of PIL images, as a list (any other encoder)."""
    rows, good, bad = _split(items)
    return rows, good or None, bad


def _split(items: list) -> tuple[list[int], list[Any], list[tuple[int, str]]]:
    good = [(r, t) for r, t, e in items if t is not None]
    bad = [(r, e) for r, t, e in items if t is None]
    return [r for r, _ in good], [t for _, t in good], bad


def _batches(pending: list[Shard], rows_of: dict[int, list[int]], batch_size: int) -> Iterator[list[int]]:
    for shard in pending:
        rows = rows_of[shard.index]
        for s in range(0, len(rows), batch_size):
            yield rows[s : s + batch_size]


def embed_images(
    table: Any, pending: list[Shard], encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str]
) -> Iterator[Shard]:
    """Embed the pending shards' images: DataLoader workers read, check and decode them
    (missing, unreadable or escaping paths become errors), and preprocess them for an
    encoder with the pixel fast path; each shard is yielded when its last batch is through
    (shards whose rows are all bad ids first)."""
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
            yield shard
    batches = list(_batches(pending, rows_of, config.batch_size))
    if not batches:
        return
    workers = decode_workers(config.workers, config.device)
    fast = encoder if isinstance(encoder, PixelEncoder) else None
    preprocess = fast.preprocess if fast is not None else None
    loader = torch.utils.data.DataLoader(
        _ImageRows(paths, Path(config.image_root or "."), preprocess),
        batch_sampler=batches,
        collate_fn=_collate if preprocess is not None else _collate_images,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        pin_memory=preprocess is not None and config.device.startswith("cuda"),
    )
    by_row = {}
    for shard in pending:
        for r in rows_of[shard.index]:
            by_row[r] = shard
    for rows, good, bad in loader:
        shard = by_row[(rows or [r for r, _ in bad])[0]]
        shard.errors.extend(bad)
        if good is not None:
            if fast is not None:  # (batch, 3, H, W) pixels
                vecs = fast.encode_pixels(good).cpu().numpy()
            else:  # RGB PIL images
                vecs = checked_vectors(encoder, encoder.encode(good), len(good))
            for r, vec in zip(rows, vecs):
                shard.vectors[r] = vec
        shard.batches_left -= 1
        if shard.batches_left == 0:
            yield shard


def embed_shards(
    table: Any, encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str], shards: Iterable[Shard]
) -> Iterator[Shard]:
    """The shards, embedded (the text or the image feeder, by the config's modality): the
    one chunk function of both engines."""
    feed = embed_text if config.modality == "text" else embed_images
    yield from feed(table, list(shards), encoder, config, id_errors)
