"""The one settings validator: a (frozen) dataclass config from a mapping of settings.

Every place that takes settings from a user goes through :func:`build_settings`: model
keywords (``fr.build_model("lightgcn", dim=64)``), the YAML run config, and the CLI's
``--set KEY=VALUE``. An unknown key, a wrong type or a value the config refuses is a
:class:`SettingsError` that names the owner (a model name or a file) and the key path.

A config class may declare ``ALIASES`` (a ``ClassVar`` mapping an alias to the fields it
sets), e.g. ``{"dim": ("embedding_dim",)}``, so that ``dim=64`` works for every model
with an embedding size.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Example:
...     k: int = 10
...     names: tuple[str, ...] = ()
>>> build_settings(Example, {"k": 3, "names": ["a", "b"]}, owner="example")
Example(k=3, names=('a', 'b'))
>>> build_settings(Example, {"kk": 3}, owner="example")
Traceback (most recent call last):
...
fusionrank.settings.SettingsError: example: kk: unknown setting; expected one of ['k', 'names']
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from fusionrank.errors import FusionRankError, InvalidArgumentError


class SettingsError(FusionRankError, ValueError):
    """A setting is unknown, of the wrong type, or refused by its config."""


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The settable fields of a config dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def aliases_of(cls: type) -> dict[str, tuple[str, ...]]:
    """``ALIASES`` of a config class (alias -> the fields it sets)."""
    return dict(getattr(cls, "ALIASES", {}) or {})


def known_keys(cls: type) -> list[str]:
    """Every key a config accepts: its fields and its aliases."""
    return sorted([*config_fields(cls), *aliases_of(cls)])


def build_settings(cls: type, values: Mapping[str, Any] | None, *, owner: str, where: str = "") -> Any:
    """``cls(**values)`` after checking every key and value; nested dataclass fields take
    mappings, tuple fields take lists. ``owner`` and ``where`` (a key path) go into errors.

    A config class that routes some keys elsewhere (the embedding job's config hands its
    encoder's settings to the encoder's own config) takes over with a classmethod
    ``from_settings(values, owner, where)``: it gets the mapping and returns the config,
    checking its own fields with :func:`settings_kwargs`."""
    if values is None:
        values = {}
    if dataclasses.is_dataclass(values) and isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise SettingsError(
            f"{owner}: {where or 'settings'}: expected a mapping, got {type(values).__name__}"
        )
    hook = getattr(cls, "from_settings", None)
    if hook is not None:
        return hook(values, owner=owner, where=where)
    kwargs = settings_kwargs(cls, values, owner=owner, where=where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{owner}: {where or 'settings'}: {exc}") from exc


def settings_kwargs(cls: type, values: Mapping[str, Any], *, owner: str, where: str = "") -> dict[str, Any]:
    """The keyword arguments :func:`build_settings` gives ``cls`` for ``values``: every key
    checked (aliases resolved) and every value coerced to its field's type."""
    fields = config_fields(cls)
    hints = _hints(cls)
    aliases = aliases_of(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        targets = aliases.get(key, (key,))
        for name in targets:
            if name not in fields:
                raise SettingsError(f"{owner}: {path}: unknown setting; expected one of {known_keys(cls)}")
            kwargs[name] = _coerce(hints.get(name, Any), value, owner, path)
    return kwargs


def replace_settings(config: Any, values: Mapping[str, Any], *, owner: str) -> Any:
    """A copy of a config instance with ``values`` applied, validated like :func:`build_settings`."""
    current = {name: getattr(config, name) for name in config_fields(type(config))}
    return build_settings(type(config), {**current, **values}, owner=owner)


def as_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able values (tuples stay lists on the way back in)."""
    return dataclasses.asdict(config)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: skip type checks
        return {}


def _coerce(hint: Any, value: Any, owner: str, path: str) -> Any:
    """Check ``value`` against a type hint; convert lists to tuples and ints to floats."""
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, owner, path)
            except SettingsError as exc:
                errors.append(str(exc).rsplit(": ", 1)[-1])
        raise SettingsError(f"{owner}: {path}: {' or '.join(errors)}")
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise SettingsError(f"{owner}: {path}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{owner}: {path}: expected a list, got {value!r}")
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, owner, f"{path}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise SettingsError(f"{owner}: {path}: expected {len(args)} values, got {len(value)}")
        return (
            tuple(value)
            if not args
            else tuple(_coerce(a, v, owner, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        )
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{owner}: {path}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_settings(hint, value, owner=owner, where=path)
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{owner}: {path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{owner}: {path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{owner}: {path}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, os.PathLike):  # paths are given as Path objects too
            return os.fspath(value)
        if not isinstance(value, str):
            raise SettingsError(f"{owner}: {path}: expected a string, got {value!r}")
        return value
    return value


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["reg=500", "k=50"]`` -> ``{"reg": 500, "k": 50}`` (values parsed as YAML scalars).

    >>> parse_overrides(["ease.reg=500", "modalities=[text, kg]"])
    {'ease.reg': 500, 'modalities': ['text', 'kg']}
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out
