"""Stage caching: a stage's folder is reused only when its key matches and every file it
wrote is still there, byte for byte.

- The **key** hashes the stage's settings, the keys of what it reads, and the code that
  computes it (:func:`code_fingerprint`: the package's source files and the versions of
  the numeric libraries), so a code change or a library upgrade recomputes the stage
  without ``--force``.
- The **done-marker** ``stage.json`` (:func:`fusionrank.io.mark_done`) is written last,
  atomically, and records the size and sha256 of every file of the stage. Reuse verifies
  them: a file that is missing, truncated or changed (a full disk, a killed copy, a stray
  edit) makes the stage recompute with a :class:`~fusionrank.io.StageCacheWarning`, never
  a crash deep inside a reader.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from fusionrank.io import StageCacheWarning, read_marker, verify_files

LIBRARIES = ("numpy", "scipy", "pandas", "pyarrow", "torch", "lightgbm", "faiss-cpu", "transformers")
"""Libraries whose version is part of every stage key: an upgrade may change the numbers."""


@functools.cache
def code_fingerprint() -> str:
    """sha256 of fusionrank's source files (path and bytes) and of :data:`LIBRARIES`' versions.

    >>> len(code_fingerprint())
    64
    """
    return source_fingerprint(Path(__file__).resolve().parents[1])


def source_fingerprint(package: Path) -> str:
    """sha256 of a package folder's ``*.py`` files and of :data:`LIBRARIES`' versions."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    for name in LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        h.update(f"{name}=={version}\0".encode())
    return h.hexdigest()


def stage_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dataclasses as dicts) and of the code."""
    text = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_fresh(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds a finished stage with ``key`` whose files all verify."""
    try:
        done = read_marker(folder)
    except ValueError as exc:
        _warn(folder, str(exc))
        return False
    if done is None or done.get("key") != key:
        return False
    problem = verify_files(folder, done)
    if problem:
        _warn(folder, problem)
        return False
    return True


def _warn(folder: Path, problem: str) -> None:
    warnings.warn(f"cached stage {folder}: {problem}; recomputing it", StageCacheWarning, stacklevel=3)


def _plain(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # an instance, not the class
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)
