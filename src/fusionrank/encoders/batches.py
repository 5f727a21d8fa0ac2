"""Feeding the encoders. Text is composed per shard; an encoder with the token fast path
(:class:`~fusionrank.encoders.base.TokenEncoder`) gets the shard tokenised at once and
batches of rows (BERT: bucketed by token length, longest first, each batch padded to its
own longest row; the vectors go back to the catalogue's order), any other encoder batches
of the composed strings. With a GPU, worker processes compose, tokenise and collate the
shards ahead in pieces of :data:`PIECE_BATCHES` batches (``workers``), the batches are
pinned and copied one ahead on a side stream
(:class:`~fusionrank.encoders.device.DeviceFeed`), and a shard's vectors stay on the device
until its last batch is queued, then come back in one copy that is waited for only after
the next shard's batches are queued: the GPU is never idle waiting for the host.

Images are read, checked and decoded by DataLoader workers while the model runs; an
encoder with the pixel fast path (:class:`~fusionrank.encoders.base.PixelEncoder`) has them
preprocessed there too and gets pixel tensors, any other encoder gets the batch of RGB PIL
images. On CUDA with the ``nvjpeg`` decoder (:mod:`~fusionrank.encoders.decode`), the
workers only read the files' bytes and the JPEGs are decoded and preprocessed on the GPU."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrank.data.text import compose_text
from fusionrank.encoders import decode as decoding
from fusionrank.encoders.base import (
    Encoder,
    PixelEncoder,
    StagedTokenEncoder,
    TokenEncoder,
    checked_vectors,
)
from fusionrank.encoders.device import DeviceFeed, decode_workers, text_workers
from fusionrank.encoders.embed_config import EmbedConfig
from fusionrank.encoders.job import Shard


def bucketed(encoder: Encoder, config: EmbedConfig) -> bool:
    """Whether a text job batches rows by token length (``bucket`` and an encoder that sorts)."""
    return config.bucket and isinstance(encoder, TokenEncoder) and bool(encoder.sort_by_length)


def batch_order(lengths: Sequence[int], bucket: bool) -> np.ndarray:
    """Positions of a shard's rows in the order they are batched: longest first (stable:
    equal lengths keep the catalogue's order) when ``bucket``, else the catalogue's order."""
    if bucket:
        return np.argsort([-n for n in lengths], kind="stable")
    return np.arange(len(lengths))


def what_ran(encoder: Encoder, config: EmbedConfig) -> dict[str, Any]:
    """What a job ran, for its manifest: the device, how bf16/fp16 ran (``cast``), and the
    image decoder or the text bucketing."""
    out: dict[str, Any] = {"device": config.device, "cast": getattr(encoder, "cast", None)}
    if config.modality == "image":
        out["decoder"] = decoding.choose_decoder(config.device, encoder)
    else:
        out["bucketing"] = "length" if bucketed(encoder, config) else "none"
    return out


@dataclass
class _ShardText:
    """A shard's texts, ready for the model: catalogue rows, the texts (or their tokens,
    for an encoder with the token fast path), bad rows; with the staged fast path, the
    collated host batches instead, in ``order`` (positions into ``rows``)."""

    rows: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tokens: Sequence[Any] | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)
    order: np.ndarray | None = None
    batches: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def pin_memory(self) -> _ShardText:
        """The collated batches in pinned memory (the DataLoader's pinning thread calls it)."""
        self.batches = [{k: v.pin_memory() for k, v in b.items()} for b in self.batches]
        return self


def _prepare(
    table: Any, shard: Shard, encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str]
) -> _ShardText:
    """Compose (and tokenise, and with the staged fast path collate) one shard's texts
    (empty text and bad ids become errors)."""
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
        out.order = batch_order([len(x) for x in out.tokens], bucketed(encoder, config))
        if isinstance(encoder, StagedTokenEncoder):
            size = config.batch_size
            out.batches = [
                encoder.collate_tokens(out.tokens, out.order[s : s + size].tolist())
                for s in range(0, len(out.order), size)
            ]
            out.texts, out.tokens = [], None  # what the model needs is in the batches
    return out


PIECE_BATCHES = 2
"""Batches per piece: the feeding workers prepare shards in pieces of this many batches
(bucketed by length within the piece), so that every worker has work from the first
moment and the GPU starts after one piece, not one shard. A setting of the feeding only:
the rows of a batch depend on ``batch_size`` alone, never on the number of workers."""


def pieces(pending: list[Shard], rows: int) -> list[tuple[Shard, Shard, bool]]:
    """``(shard, piece, last)`` for each piece of ``rows`` catalogue rows of each pending
    shard, in order; ``piece`` is a :class:`Shard` over its rows, ``last`` marks a shard's
    final piece."""
    out = []
    for shard in pending:
        starts = list(range(shard.start, shard.stop, rows)) or [shard.start]
        for k, start in enumerate(starts):
            out.append(
                (shard, Shard(shard.index, start, min(start + rows, shard.stop)), k == len(starts) - 1)
            )
    return out


class _ShardTexts(torch.utils.data.Dataset):
    """The pieces to prepare, each prepared when asked for (in the DataLoader's workers)."""

    def __init__(self, pending: list[Shard], prepare: Callable[[Shard], _ShardText]) -> None:
        self.pending, self.prepare = pending, prepare

    def __len__(self) -> int:
        return len(self.pending)

    def __getitem__(self, k: int) -> _ShardText:
        return self.prepare(self.pending[k])


def embed_text(
    table: Any, pending: list[Shard], encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str]
) -> Iterator[Shard]:
    """Embed the pending shards' texts, in order; each shard is yielded once all its rows
    are in ``shard.vectors`` or ``shard.errors`` (empty text, a bad id). With feeding
    workers the shards are prepared in pieces (:data:`PIECE_BATCHES`), inline whole."""

    def prepare(shard: Shard) -> _ShardText:
        return _prepare(table, shard, encoder, config, id_errors)

    cuda = config.device.startswith("cuda")
    workers = text_workers(config.workers, config.device)
    stream: Iterator[tuple[Shard, _ShardText, bool]]
    if workers:
        work = pieces(pending, PIECE_BATCHES * config.batch_size)
        stream = _prepared_in_workers(work, prepare, min(workers, len(work)), pin=cuda)
    else:
        stream = ((shard, prepared, True) for shard, prepared in _prepared(pending, prepare, ahead=cuda))
    feed = (
        DeviceFeed(getattr(encoder, "device", config.device))
        if isinstance(encoder, StagedTokenEncoder)
        else None
    )
    vectors: _Vectors | None = None
    waiting: tuple[Shard, _Vectors] | None = None
    for shard, prepared, last in stream:
        shard.errors.extend(prepared.errors)
        if vectors is None:
            vectors = _Vectors(shard.stop - shard.start, encoder.dim)
        _encode_text(encoder, prepared, config.batch_size, feed, vectors)
        if last:
            vectors.to_host()
            if waiting is not None:  # the previous shard's copy, waited for once this one is queued
                yield _finished(*waiting)
            waiting, vectors = (shard, vectors), None
    if waiting is not None:
        yield _finished(*waiting)


def _finished(shard: Shard, vectors: _Vectors) -> Shard:
    for r, vec in zip(vectors.rows, vectors.result()):
        shard.vectors[r] = vec
    return shard


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


def _prepared_in_workers(
    work: list[tuple[Shard, Shard, bool]], prepare: Callable[[Shard], _ShardText], workers: int, pin: bool
) -> Iterator[tuple[Shard, _ShardText, bool]]:
    """Each piece of :func:`pieces` as ``(shard, prepared piece, last)``, prepared by
    ``workers`` processes (in order; two pieces ahead per worker), its batches pinned when
    ``pin``. The workers tokenise with one thread each (``TOKENIZERS_PARALLELISM=false`` in
    their environment unless it is set: no thread pool forked into them); this process's
    setting is left as it was."""
    loader = torch.utils.data.DataLoader(
        _ShardTexts([piece for _, piece, _ in work], prepare),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2,
        pin_memory=pin,
    )
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # inherited by the workers only
    try:
        prepared = iter(loader)  # the workers start here
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
    for (shard, _, last), piece in zip(work, prepared):
        yield shard, piece, last


class _Vectors:
    """A shard's vectors as the batches come (in batch order; on the model's device), with
    the catalogue rows they belong to, then in one copy to the host, waited for in
    :meth:`result` (back in the rows' order)."""

    def __init__(self, n: int, dim: int) -> None:
        self.n, self.dim = n, dim
        self.out: torch.Tensor | np.ndarray | None = None
        self.done: torch.cuda.Event | None = None
        self.at = 0
        self.rows: list[int] = []
        self.orders: list[np.ndarray] = []
        """Per piece: the batch order of its rows, offset to positions in ``rows``."""

    def add_rows(self, rows: list[int], order: np.ndarray | None) -> None:
        """The next piece's catalogue rows, and the order its vectors will come in
        (positions into ``rows``; None: as they are)."""
        offset = len(self.rows)
        self.rows.extend(rows)
        self.orders.append(offset + (np.arange(len(rows)) if order is None else np.asarray(order)))

    def put(self, vectors: torch.Tensor | np.ndarray) -> None:
        """The next batch's vectors (a tensor on the model's device, or an array)."""
        if self.out is None:
            if isinstance(vectors, torch.Tensor):
                self.out = torch.empty((self.n, self.dim), dtype=torch.float32, device=vectors.device)
            else:
                self.out = np.empty((self.n, self.dim), dtype=np.float32)
        if isinstance(self.out, torch.Tensor):
            self.out[self.at : self.at + len(vectors)] = torch.as_tensor(vectors)
        else:
            self.out[self.at : self.at + len(vectors)] = np.asarray(vectors)
        self.at += len(vectors)

    def to_host(self) -> _Vectors:
        """Start the copy to the host (a GPU's: into pinned memory, without waiting)."""
        if isinstance(self.out, torch.Tensor) and self.out.device.type == "cuda":
            host = torch.empty((self.at, self.dim), dtype=self.out.dtype, pin_memory=True)
            host.copy_(self.out[: self.at], non_blocking=True)
            self.done = torch.cuda.Event()
            self.done.record(torch.cuda.current_stream(self.out.device))
            self.out = host
        return self

    def result(self) -> np.ndarray:
        """The vectors, ``(n, dim)`` float32, in the rows' order."""
        if self.done is not None:
            self.done.synchronize()
        if self.out is None:
            return np.empty((0, self.dim), dtype=np.float32)
        out = (self.out.numpy() if isinstance(self.out, torch.Tensor) else self.out)[: self.at]
        order = np.concatenate(self.orders) if self.orders else None
        if order is None or np.array_equal(order, np.arange(len(order))):
            return out
        rows = np.empty_like(out)
        rows[order] = out
        return rows


def _encode_text(
    encoder: Encoder, prepared: _ShardText, batch_size: int, feed: DeviceFeed | None, vectors: _Vectors
) -> None:
    """Queue the model work of one piece's texts into its shard's ``vectors``: the staged
    token fast path (collated batches, through ``feed``), ``encode_tokens`` of each batch
    of rows, or ``encode`` of each batch of texts."""
    n = len(prepared.rows)
    if prepared.batches and feed is not None and isinstance(encoder, StagedTokenEncoder):
        vectors.add_rows(prepared.rows, prepared.order)
        for _, on_device in feed((k, b) for k, b in enumerate(prepared.batches)):
            vectors.put(encoder.forward_tokens(on_device).float())
        prepared.batches = []
        return
    if prepared.tokens is not None and isinstance(encoder, TokenEncoder):
        order = prepared.order if prepared.order is not None else np.arange(n)
        vectors.add_rows(prepared.rows, order)
        for s in range(0, n, batch_size):
            vectors.put(encoder.encode_tokens(prepared.tokens, order[s : s + batch_size].tolist()).float())
        return
    vectors.add_rows(prepared.rows, None)
    for s in range(0, n, batch_size):
        batch = prepared.texts[s : s + batch_size]
        vectors.put(checked_vectors(encoder, encoder.encode(batch), len(batch)))


class _ImageRows(torch.utils.data.Dataset):
    """Loads, checks and decodes one image per catalogue row, and preprocesses it when
    given ``preprocess`` (runs in workers): (row, pixels or RGB image or None, error or None).
    With ``raw``, only reads the file: (row, its bytes as a uint8 tensor, None)."""

    def __init__(
        self, paths: dict[int, str], root: Path, preprocess: Callable | None, raw: bool = False
    ) -> None:
        self.paths, self.root, self.preprocess, self.raw = paths, root.resolve(), preprocess, raw

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
            if self.raw:  # decoded on the GPU (or, if it refuses, by PIL) in the main process
                return row, torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8), None
            with Image.open(path) as im:
                rgb = im.convert("RGB")  # decoded here: a loaded copy
                pixels = self.preprocess(rgb) if self.preprocess is not None else rgb
        except Exception as exc:  # truncated or unreadable files
            return row, None, f"unreadable image {rel!r}: {type(exc).__name__}: {exc}"
        return row, pixels, None


@dataclass
class _Packed:
    """A batch of files' bytes in one tensor (one shared-memory block between processes,
    not one per file), with each file's length."""

    data: torch.Tensor
    sizes: list[int]

    def files(self) -> list[torch.Tensor]:
        """Each file's bytes (views of the block)."""
        return list(torch.split(self.data, self.sizes))


def _collate_raw(items: list) -> tuple[list[int], _Packed | None, list[tuple[int, str]]]:
    """A batch of files' bytes, packed (decoded on the GPU)."""
    rows, good, bad = _split(items)
    return rows, (_Packed(torch.cat(good), [len(g) for g in good]) if good else None), bad


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
    spec = (
        decoding.pixel_spec(preprocess)
        if decoding.choose_decoder(config.device, encoder) == "nvjpeg"
        else None
    )
    device = torch.device(getattr(encoder, "device", config.device)) if spec is not None else None
    loader = torch.utils.data.DataLoader(
        _ImageRows(paths, Path(config.image_root or "."), preprocess, raw=spec is not None),
        batch_sampler=batches,
        collate_fn=_collate_raw
        if spec is not None
        else _collate
        if preprocess is not None
        else _collate_images,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        pin_memory=spec is None and preprocess is not None and config.device.startswith("cuda"),
    )
    by_row = {}
    for shard in pending:
        for r in rows_of[shard.index]:
            by_row[r] = shard
    vectors: dict[int, _Vectors] = {}
    waiting: Shard | None = None
    for rows, good, bad in loader:
        shard = by_row[(rows or [r for r, _ in bad])[0]]
        shard.errors.extend(bad)
        got = vectors.setdefault(shard.index, _Vectors(len(rows_of[shard.index]), encoder.dim))
        if good is not None and spec is not None and fast is not None and device is not None:  # bytes
            items = [(r, data, paths[r]) for r, data in zip(rows, good.files())]
            rows, good, refused = decoding.gpu_batch(
                items, spec, device, fast.preprocess, decoding.decode_jpegs
            )
            shard.errors.extend(refused)
        if good is not None:
            if fast is not None:  # (batch, 3, H, W) pixels
                got.put(fast.encode_pixels(good).float())
            else:  # RGB PIL images
                got.put(checked_vectors(encoder, encoder.encode(good), len(good)))
            got.add_rows(rows, None)
        shard.batches_left -= 1
        if shard.batches_left == 0:
            got.to_host()  # waited for once the next shard is queued
            if waiting is not None:
                yield _finished(waiting, vectors.pop(waiting.index))
            waiting = shard
    if waiting is not None:
        yield _finished(waiting, vectors.pop(waiting.index))


def embed_shards(
    table: Any, encoder: Encoder, config: EmbedConfig, id_errors: dict[int, str], shards: Iterable[Shard]
) -> Iterator[Shard]:
    """The shards, embedded (the text or the image feeder, by the config's modality): the
    one chunk function of both engines."""
    feed = embed_text if config.modality == "text" else embed_images
    yield from feed(table, list(shards), encoder, config, id_errors)
