"""Small file helpers shared by every stage: atomic writes, JSON manifests, hashing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StorageError(OSError):
    """Writing an output failed for a reason outside fusionrank (disk full, no permission).

    The message names the final path; nothing was left under that name."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    The data is flushed to disk before the rename, so after a crash ``path`` holds either
    the old or the complete new content. A full disk (or a quota, or a read-only folder)
    becomes a :class:`StorageError` naming ``path``; the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if isinstance(exc, StorageError) or exc.errno not in _STORAGE_ERRNOS:
            raise
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StorageError(exc.errno, f"could not write {path}: {reason}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def write_json(path: str | Path, payload: Any) -> None:
    """Write JSON atomically, pretty-printed, keys in insertion order."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
