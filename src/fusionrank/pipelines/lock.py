"""One writer per output folder: a lock file held with ``flock`` for the life of a job.

The kernel drops an ``flock`` when its process dies, even by ``kill -9``, so a lock left
by a killed job is stale by construction: the next job takes it over (and says so). The
file also records who holds it (pid, host, command, start time) so that a refused job can
name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fusionrank.errors import FusionRankError

LOCK_FILE = ".lock"


class RunLockedError(FusionRankError, RuntimeError):
    """Another live process is writing into the same folder."""


@contextmanager
def folder_lock(folder: str | Path, log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``<folder>/.lock`` while the block runs; raise :class:`RunLockedError` when held.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, folder_lock(d) as lock:
    ...     lock.name
    '.lock'
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise RunLockedError(
                f"{folder} is in use by {_describe(holder)}; wait for it to finish, or write "
                "into another folder"
            ) from None
        previous = _holder(path)
        if previous and log is not None:
            log(f"taking over the lock of {_describe(previous)}, which is no longer running")
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly, nothing to take over
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')}: "
        f"{holder.get('command')})"
    )
