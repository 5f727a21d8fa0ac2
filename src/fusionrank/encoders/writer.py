"""Writing finished shards from a background thread, so that the model never waits for
Parquet: :class:`ShardWriter` takes each embedded shard and writes it (errors part, then
vectors file: :func:`~fusionrank.encoders.job.finish_shard`, the same bytes as writing it
inline) in one thread, in order, with at most ``max_pending`` shards waiting (memory stays
bounded). A failed write is raised in the caller at its next ``submit`` or at ``close``,
never swallowed and never waited on forever."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from fusionrank.encoders.job import Shard, finish_shard

Write = Callable[[Path, Shard, list[str], int], tuple[int, int]]
"""How a shard is written: ``(out, shard, ids, dim) -> (vectors, errors)``."""


class ShardWriter:
    """Writes shards in a background thread; ``counts`` holds the vectors and errors
    written so far. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, out: Path, dim: int, max_pending: int = 2, write: Write = finish_shard) -> None:
        self.out, self.dim, self.max_pending, self.write = out, dim, max(1, max_pending), write
        self.counts = [0, 0]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionrank-shard-writer")
        self._pending: deque[Future[tuple[int, int]]] = deque()

    def submit(self, shard: Shard, ids: list[str]) -> None:
        """Queue ``shard`` (its catalogue ids ``ids``); waits while ``max_pending`` shards are
        queued, and raises the error of an earlier write that failed."""
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.max_pending):
            self._collect(self._pending.popleft())
        self._pending.append(self._pool.submit(self._write, shard, ids))

    def _write(self, shard: Shard, ids: list[str]) -> tuple[int, int]:
        try:
            return self.write(self.out, shard, ids, self.dim)
        finally:
            shard.vectors.clear()  # written (or failed): memory stays flat in the number of shards
            shard.errors.clear()

    def _collect(self, future: Future[tuple[int, int]]) -> None:
        good, bad = future.result()  # a failed write raises here
        self.counts[0] += good
        self.counts[1] += bad

    def close(self) -> tuple[int, int]:
        """Wait for every queued shard; raise the first failure. Returns ``counts``."""
        try:
            while self._pending:
                self._collect(self._pending.popleft())
        finally:
            self._abandon()
        return self.counts[0], self.counts[1]

    def _abandon(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._pending.clear()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:  # the job failed: the write under way finishes, queued ones are dropped (a rerun does them)
            self._abandon()
