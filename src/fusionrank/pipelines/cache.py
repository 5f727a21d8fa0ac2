"""Stage caching: a stage's folder is reused when its key (a hash of its config and of
the keys of what it reads) matches the one recorded in ``stage.json``. ``stage.json`` is
written last, so an interrupted stage is never mistaken for a finished one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fusionrank.io import read_json, write_json


def stage_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dataclasses as dicts) and the package version."""
    from fusionrank import __version__

    text = json.dumps([__version__, *parts], sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_fresh(folder: Path, key: str) -> bool:
    marker = folder / "stage.json"
    return marker.exists() and read_json(marker).get("key") == key


def mark_done(folder: Path, key: str, **info: Any) -> None:
    write_json(folder / "stage.json", {"key": key, **info})


def _plain(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # an instance, not the class
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)
