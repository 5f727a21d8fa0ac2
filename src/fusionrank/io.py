"""Small file helpers shared by every stage: atomic writes, JSON manifests, hashing, and the
done-marker that says a folder of outputs is finished and intact."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fusionrank.errors import FusionRankError, InvalidArgumentError


class StorageError(FusionRankError, OSError):
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


MARKER = "stage.json"
"""A finished stage's done-marker: written last, it records every file's size and sha256."""


class StageCacheWarning(UserWarning):
    """A cached stage failed verification and is recomputed."""


class IncompleteOutputError(FusionRankError, ValueError):
    """A folder that a command reads was not finished (its writer was killed) or was damaged."""


def read_marker(folder: Path) -> dict[str, Any] | None:
    """``folder``'s done-marker, or None when it has none; ``ValueError`` when it is
    unreadable or records no file checksums."""
    marker = folder / MARKER
    if not marker.exists():
        return None
    try:
        done = read_json(marker)
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"its done-marker {MARKER} is unreadable ({exc})") from exc
    if not isinstance(done, dict) or not isinstance(done.get("files"), dict):
        raise InvalidArgumentError(f"its done-marker {MARKER} is unreadable (no file checksums)")
    return done


def verify_files(folder: Path, done: dict[str, Any]) -> str | None:
    """The first file recorded by the marker ``done`` that is missing, truncated or changed."""
    for name, expected in sorted(done["files"].items()):
        problem = _check(folder / name, expected)
        if problem:
            return f"{name} {problem}"
    return None


def verify_stage(folder: Path) -> str | None:
    """``None`` when ``folder``'s done-marker exists and every file it records verifies;
    else what is wrong, in a few words."""
    try:
        done = read_marker(folder)
    except ValueError as exc:
        return str(exc)
    if done is None:
        return f"it has no {MARKER} (not finished: interrupted, or still being written)"
    return verify_files(folder, done)


def require_complete(folder: Path, what: str) -> None:
    """Raise :class:`IncompleteOutputError` unless ``folder`` is a finished, intact stage."""
    problem = verify_stage(folder)
    if problem:
        raise IncompleteOutputError(
            f"{what} {folder} cannot be used: {problem}; rerun the command that wrote it"
        )


def begin_stage(folder: Path) -> None:
    """Drop the done-marker before a stage (re)writes its folder, and the temporary files
    that a killed writer left behind."""
    (folder / MARKER).unlink(missing_ok=True)
    remove_stale_temporaries(folder)


def remove_stale_temporaries(folder: Path, recursive: bool = True) -> None:
    """Delete the ``.<name>.tmp-<pid>`` files of :func:`atomic_path` whose process is gone."""
    if not folder.is_dir():
        return
    for path in folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*"):
        pid = path.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not _alive(int(pid)) and path.is_file():
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def mark_done(folder: Path, key: str, **info: Any) -> None:
    """Write the done-marker last: the key, ``info`` and the checksum of every stage file."""
    files = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MARKER and not _is_scratch(path, folder)
    }
    write_json(folder / MARKER, {"key": key, **info, "files": files})


def _check(path: Path, expected: dict[str, Any]) -> str | None:
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size != expected.get("bytes"):
        return f"has {size} bytes, {expected.get('bytes')} were written (truncated or replaced)"
    if sha256_file(path) != expected.get("sha256"):
        return "changed since it was written (checksum differs)"
    return None


def _is_scratch(path: Path, folder: Path) -> bool:
    """Temporary files of an interrupted write and lock files are not stage outputs."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


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
