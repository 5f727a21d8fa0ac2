"""Items added to a finished run after it was made (``POST /items`` of ``fusionrank serve``).

Each request's items are one line of an append-only JSON-lines log in the run folder
(:data:`LOG_NAME`): the rows as given (``item_id`` and catalogue fields), their content
vectors (the run's text encoder, fused as the content model reads them) and when they
came. A line is written whole (one ``write``, flushed and fsynced, under an ``flock``
shared by every process serving the run) or not at all: a reader takes complete lines
only, and a writer first cuts a torn last line (a writer killed mid-line). So a restart,
or ``fusionrank recommend`` on the same folder, sees every item a finished request
added and none of a request that failed. Vectors are float32 written as JSON numbers
(exact round trip), so a restart does not need the encoder to give the same bits again.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionrank.columns import ITEM_ID
from fusionrank.errors import InvalidArgumentError

LOG_NAME = "added_items.jsonl"
"""The log's file name inside the run folder."""


@dataclass(frozen=True)
class AddedItems:
    """A snapshot of the added items (never changed in place: :meth:`extended` makes the
    next one, so a reader holding a snapshot is never disturbed by a writer)."""

    ids: tuple[str, ...] = ()
    rows: tuple[dict[str, Any], ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """(n, d) float32: the content vectors the run's content model scores."""
    position: dict[str, int] = field(default_factory=dict)
    """item id -> row of :attr:`vectors`."""

    def __len__(self) -> int:
        return len(self.ids)

    def extended(self, rows: Sequence[Mapping[str, Any]], vectors: np.ndarray) -> AddedItems:
        """This snapshot with ``rows`` (and their ``vectors``, one row each) appended."""
        vectors = np.asarray(vectors, np.float32)
        if len(rows) != len(vectors):
            raise InvalidArgumentError(f"{len(rows)} items but {len(vectors)} vectors")
        if len(self) and vectors.shape[1] != self.vectors.shape[1]:
            raise InvalidArgumentError(
                f"added items have {vectors.shape[1]}-dimensional vectors, earlier ones "
                f"{self.vectors.shape[1]}: the run's encoder changed"
            )
        ids = tuple(str(r[ITEM_ID]) for r in rows)
        position = dict(self.position)
        for i in ids:
            position[i] = len(position)
        stacked = vectors.copy() if not len(self) else np.concatenate([self.vectors, vectors])
        stacked.flags.writeable = False  # a snapshot: models may keep what they computed from it
        return AddedItems(self.ids + ids, self.rows + tuple(dict(r) for r in rows), stacked, position)


class ItemLog:
    """The append-only log of added items in a run folder (see the module's docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOG_NAME
        self.lock_path = Path(folder) / f".{LOG_NAME}.lock"

    def size(self) -> int:
        """Bytes in the log now (0 when there is none): a cheap test for news."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's lock (every process serving the run takes it to append)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read(self, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The complete lines after byte ``offset`` (each a batch: ``items``, ``vectors``,
        ``time``) and the offset after the last complete line."""
        if not self.path.exists():
            return [], offset
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a torn last line (no newline yet) is not read
        batches = []
        for number, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                batch = json.loads(line)
            except ValueError as exc:
                raise InvalidArgumentError(
                    f"{self.path}: line {number} after byte {offset} is not JSON ({exc}); "
                    "the log was edited by hand"
                ) from exc
            batches.append(batch)
        return batches, offset + end

    def append(self, rows: Sequence[Mapping[str, Any]], vectors: np.ndarray) -> int:
        """Write one batch as one line; the caller holds :meth:`locked`. Returns the log's
        size after the line."""
        line = json.dumps(
            {
                "time": time.time(),
                "items": [dict(r) for r in rows],
                "vectors": np.asarray(vectors, np.float32).tolist(),
            },
            separators=(",", ":"),
            default=str,
        ).encode("utf-8")
        with open(self.path, "ab+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":  # a writer died mid-line: drop its torn line
                    handle.seek(0)
                    keep = handle.read().rfind(b"\n") + 1
                    handle.truncate(keep)
                    handle.seek(keep)
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()


def replay(items: AddedItems, batches: Sequence[Mapping[str, Any]]) -> AddedItems:
    """``items`` with the logged ``batches`` appended, in order."""
    for batch in batches:
        items = items.extended(batch["items"], np.asarray(batch["vectors"], np.float32))
    return items
