"""Engines: where chunk work and boosting run, chosen once per run or job.

``get_engine("local")`` runs everything in this process; ``get_engine("ray", options)``
runs chunk work in Ray actors and boosting on Ray Train. Stages describe their work as a
:class:`Work` and call :meth:`Engine.map`; nothing outside this package asks which engine
it has.
"""

from __future__ import annotations

import importlib
from typing import Literal

from fusionrank.engines.base import BoosterFit, ChunkFn, Engine, MapStats, RankTable, Work
from fusionrank.errors import InvalidArgumentError

ENGINES: dict[str, str] = {
    "local": "fusionrank.engines.local.LocalEngine",
    "ray": "fusionrank.engines.ray_engine.RayEngine",
}
"""Engine names and the dotted paths of their classes (imported when chosen)."""

SERIAL_BOOSTING: dict[str, bool] = {"local": True, "ray": False}
"""Whether an engine trains a booster with LightGBM's serial learner (``local``) or a
data-parallel one (``ray``: Ray Train), which some LightGBM settings (linear leaves) need."""

EngineName = Literal["local", "ray"]
"""The names of :data:`ENGINES`, for type hints."""

__all__ = [
    "ENGINES",
    "SERIAL_BOOSTING",
    "BoosterFit",
    "ChunkFn",
    "Engine",
    "EngineName",
    "MapStats",
    "RankTable",
    "Work",
    "check_engine_name",
    "engine_names",
    "get_engine",
]


def engine_names(quote: bool = True) -> str:
    """The engine names for a message.

    >>> engine_names(), engine_names(quote=False)
    ("'local' or 'ray'", 'local or ray')
    """
    return " or ".join(repr(name) if quote else name for name in ENGINES)


def check_engine_name(name: str, what: str = "engine", quote: bool = True) -> None:
    """Refuse an unknown engine name in one line naming the setting."""
    if name not in ENGINES:
        raise InvalidArgumentError(f"{what} must be {engine_names(quote)}, got {name!r}")


def get_engine(
    name: str = "local", options: object | None = None, *, quiet: bool = True, strict: bool = False
) -> Engine:
    """The engine ``name`` (``local`` or ``ray``); ``options`` are the Ray engine's
    (:class:`~fusionrank.engines.ray_engine.RayOptions`), ``quiet`` keeps Ray's workers'
    output off the console. Refuses an unknown name; with ``strict``, also options the
    engine would not use (a command's Ray flags without ``--engine ray``).

    >>> get_engine("local").name
    'local'
    """
    check_engine_name(name, quote=False)
    module, _, attr = ENGINES[name].rpartition(".")
    engine: Engine = getattr(importlib.import_module(module), attr).create(
        options, quiet=quiet, strict=strict
    )
    return engine
