"""The encoder registry: short names -> encoder classes (and their config classes).

``fusionrank embed --encoder``, ``fr.embed(encoder=...)``, a dataset profile's
``encoders`` section and the Ray workers all find the encoder class here. An encoder may
also be named by its dotted class path (``mypackage.encoders.MyEncoder``), so a user's own
:class:`~fusionrank.encoders.base.Encoder` plugs in wherever a registered name does.

>>> sorted(list_encoders())
['clip', 'image', 'text']
>>> encoder_class("text").__name__, list_encoders()["text"].__name__
('TextEncoder', 'TextEncoderConfig')
>>> encoder_class("bert")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
fusionrank.errors.InvalidArgumentError: unknown encoder 'bert'; registered: ['clip', 'image', 'text'], ...
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, cast

from fusionrank.encoders.base import INPUT_KINDS, Encoder, encoder_label
from fusionrank.errors import InvalidArgumentError
from fusionrank.registry import import_dotted

ENCODERS: dict[str, str] = {
    "text": "fusionrank.encoders.text.TextEncoder",
    "image": "fusionrank.encoders.image.ImageEncoder",
    "clip": "fusionrank.encoders.clip.ClipEncoder",
}
"""The built-in encoders' names and the dotted paths of their classes."""

_EXTRA: dict[str, type[Encoder]] = {}
"""Encoders a user registered in this process (name -> class)."""


def register_encoder(name: str, cls: type) -> None:
    """Register a user's encoder class under a short name (its dotted path works without
    this). A registered name is known in this process only: jobs record, and Ray workers
    import, the class's dotted path.

    >>> from fusionrank.encoders.text import TextEncoder
    >>> register_encoder("text", TextEncoder)
    Traceback (most recent call last):
    ...
    fusionrank.errors.InvalidArgumentError: 'text' is a built-in encoder; register yours under another name
    """
    if name in ENCODERS:
        raise InvalidArgumentError(f"{name!r} is a built-in encoder; register yours under another name")
    _EXTRA[name] = _checked(cls, repr(cls))


def encoder_class(name: str | type) -> type[Encoder]:
    """The class of a registered name, a dotted class path, or an encoder class itself,
    or a one-line :class:`~fusionrank.errors.InvalidArgumentError`."""
    if isinstance(name, type):
        return _checked(name, encoder_label(name))
    if name in _EXTRA:
        return _EXTRA[name]
    path = ENCODERS.get(name)
    if path is None:
        if "." not in name:
            known = sorted({*ENCODERS, *_EXTRA})
            raise InvalidArgumentError(
                f"unknown encoder {name!r}; registered: {known}, or a dotted class path"
            )
        path = name
    return _checked(import_dotted(path, "encoder class"), repr(path))


def builtin_name(cls: type) -> str | None:
    """The short name of a built-in encoder class (None for any other class)."""
    label = encoder_label(cls)
    return next((name for name, path in ENCODERS.items() if path == label), None)


def encoder_ref(name: str) -> str:
    """How a job records the encoder ``name`` names: a built-in's short name, else the
    dotted path of its class (what a worker in another process can import)."""
    cls = encoder_class(name)
    return builtin_name(cls) or encoder_label(cls)


def list_encoders() -> dict[str, type]:
    """Every registered encoder name -> its config class."""
    return {name: encoder_class(name).config_class for name in sorted({*ENCODERS, *_EXTRA})}


def _checked(cls: object, what: str) -> type[Encoder]:
    """``cls`` if it keeps the class side of the contract, else a one-line error saying what lacks."""
    if not isinstance(cls, type):
        raise InvalidArgumentError(f"{what} is not a fusionrank encoder: not a class")
    config = getattr(cls, "config_class", None)
    inputs = getattr(cls, "inputs", None)
    missing = [
        reason
        for reason, bad in (
            (
                "config_class (a dataclass)",
                not (isinstance(config, type) and dataclasses.is_dataclass(config)),
            ),
            (
                f"inputs (a tuple of {' and/or '.join(INPUT_KINDS)})",
                not (isinstance(inputs, tuple) and inputs and set(inputs) <= set(INPUT_KINDS)),
            ),
            ("encode(batch)", not callable(getattr(cls, "encode", None))),
            ("check(config, device)", not callable(getattr(cls, "check", None))),
        )
        if bad
    ]
    if missing:
        raise InvalidArgumentError(
            f"{what} is not a fusionrank encoder: it lacks {', '.join(missing)} "
            "(see fusionrank.encoders.base.Encoder)"
        )
    return cast("type[Encoder]", cls)


if TYPE_CHECKING:  # the built-ins keep the contract and its fast paths (checked by mypy)
    from fusionrank.encoders.base import PixelEncoder, TokenEncoder
    from fusionrank.encoders.clip import ClipEncoder
    from fusionrank.encoders.image import ImageEncoder
    from fusionrank.encoders.text import TextEncoder

    def _contract(text: TextEncoder, image: ImageEncoder, clip: ClipEncoder) -> None:
        encoders: list[Encoder] = [text, image, clip]
        tokens: list[TokenEncoder] = [text, clip]
        pixels: list[PixelEncoder] = [image, clip]
        del encoders, tokens, pixels
