"""The settings of an embedding job (:class:`EmbedConfig`) and the encoder they load.

The job's own settings (which encoder, which catalogue columns, shard and batch sizes,
device) are fields of :class:`EmbedConfig`; the encoder's settings are its own config
(``encoder_config``, an instance of the encoder class's ``config_class``). The constructor
and :func:`~fusionrank.settings.build_settings` also take the encoder's settings as flat
keys and route each one to the config that has it, so the flags and keywords of
``fusionrank embed`` and ``fr.embed`` read as one list:

>>> config = EmbedConfig(fields=("title",), pooling="cls", precision="int8")
>>> type(config.encoder_config).__name__, config.encoder_config.pooling, config.precision
('TextEncoderConfig', 'cls', 'int8')
>>> EmbedConfig(fields=("title",), weights="DEFAULT")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
fusionrank.settings.SettingsError: weights: not a setting of the embedding job or of the text encoder; ...
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fusionrank.columns import ITEM_ID
from fusionrank.encoders.base import Encoder, encoder_label
from fusionrank.encoders.device import check_device
from fusionrank.encoders.registry import builtin_name, encoder_class
from fusionrank.errors import InvalidArgumentError
from fusionrank.settings import SettingsError, aliases_of, build_settings, config_fields, settings_kwargs

SPEED_KNOBS = ("batch_size", "device", "workers", "quiet", "bucket")
"""Job settings that change how fast a job runs, not its output (not in the fingerprint)."""

LEGACY_LAYOUT: tuple[tuple[str, str, Any], ...] = (
    ("model", "model", None),
    ("weights", "weights", "DEFAULT"),
    ("clip_pretrained", "pretrained", None),
    ("pooling", "pooling", "mean"),
    ("max_length", "max_length", 256),
    ("normalize", "normalize", True),
    ("precision", "precision", "fp32"),
    ("backend", "backend", "torch"),
)
"""The built-in encoders' settings as the fingerprint (``job.json``, the content vectors'
folder key) has always written them: the keys of the one flat config that held every
encoder's settings before each encoder had its own, with that config's defaults (key,
the encoder config's field, the value when the encoder has no such field)."""


@dataclass(frozen=True, init=False)
class EmbedConfig:
    """Everything that decides an embedding job's output, and how fast it runs: the job's
    settings, and the encoder's own config (``encoder_config``).

    Keyword arguments that are not the job's go to the encoder's config (``model``,
    ``pooling``, ``precision``, ``weights``; ``clip_pretrained`` sets CLIP's
    ``pretrained``); a key that neither has is a :class:`~fusionrank.settings.SettingsError`.
    ``dataclasses.replace`` routes them the same way."""

    encoder: str = "text"
    """``text`` (transformers), ``image`` (torchvision ResNet), ``clip`` (open_clip), a name
    given to :func:`~fusionrank.encoders.registry.register_encoder`, or a dotted class path."""
    fields: tuple[str, ...] | None = None
    """Catalogue columns joined into the item text (encoders that read text)."""
    template: str | None = None
    """Alternative to ``fields``: a format string such as ``"{title} ({year})"``."""
    id_column: str = ITEM_ID
    """Catalogue column with the item id."""
    image_column: str | None = None
    """Column with image paths relative to ``image_root``: embed the images (encoders that read them)."""
    image_root: str | None = None
    """Folder that every image path must stay inside."""
    shard_size: int = 4096
    """Catalogue rows per output shard (and per resumable unit of work)."""
    batch_size: int = 64
    """Rows per forward pass."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``cuda:N``."""
    workers: int | None = None
    """DataLoader worker processes that read and decode images (None: one on the CPU) or
    compose, tokenise and collate text shards in pieces (None: none on the CPU, the shard
    is prepared inline); with a GPU, None is one per spare core (at most 8)."""
    bucket: bool = True
    """Text with an encoder that sorts by length (BERT): batch each shard's rows by token
    length, longest first (each batch padded to its own longest row); False: catalogue
    order. Vectors come back in the catalogue's order either way (the same to float noise)."""
    quiet: bool = False
    """No progress bar (for logs); the summary line is still printed."""
    encoder_config: Any = None
    """The encoder's settings: an instance of its class's ``config_class`` (None: its defaults)."""

    def __init__(
        self,
        encoder: str = "text",
        *,
        fields: tuple[str, ...] | list[str] | None = None,
        template: str | None = None,
        id_column: str = ITEM_ID,
        image_column: str | None = None,
        image_root: str | os.PathLike[str] | None = None,
        shard_size: int = 4096,
        batch_size: int = 64,
        device: str = "cpu",
        workers: int | None = None,
        bucket: bool = True,
        quiet: bool = False,
        encoder_config: Any = None,
        **settings: Any,
    ) -> None:
        cls = encoder_class(encoder)
        name = builtin_name(cls) or encoder
        values = {
            "encoder": name,
            "fields": tuple(fields) if isinstance(fields, list) else fields,
            "template": template,
            "id_column": id_column,
            "image_column": image_column,
            "image_root": os.fspath(image_root) if image_root is not None else None,
            "shard_size": shard_size,
            "batch_size": batch_size,
            "device": device,
            "workers": workers,
            "bucket": bool(bucket),
            "quiet": quiet,
            "encoder_config": _encoder_config(cls, name, encoder_config, settings),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        self._check(cls)

    def _check(self, cls: type[Encoder]) -> None:
        """The rules of a job, in one line each: the encoder runs here, reads this input."""
        cls.check(self.encoder_config, self.device)
        check_device(self.device)
        if "text" not in cls.inputs and not self.image_column:
            raise InvalidArgumentError(f"the {self.encoder} encoder needs --image-column")
        if self.image_column and "image" not in cls.inputs:
            raise InvalidArgumentError(
                f"the {self.encoder} encoder reads text, not images: "
                "drop --image-column, give --fields or a template"
            )
        if self.image_column and not self.image_root:
            raise InvalidArgumentError("--image-column needs --image-root (images must stay inside it)")
        if self.modality == "text" and not (self.fields or self.template):
            raise InvalidArgumentError("text embedding needs --fields (e.g. title,genres) or a template")
        if self.shard_size < 1 or self.batch_size < 1 or (self.workers is not None and self.workers < 0):
            raise InvalidArgumentError("shard_size and batch_size must be >= 1, workers >= 0")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], owner: str, where: str = "") -> EmbedConfig:
        """The config from flat settings (:func:`~fusionrank.settings.build_settings`'s hook):
        the job's keys checked against its fields, the rest against the encoder's config
        (or given whole as ``encoder_config``: a mapping or an instance)."""

        def at(key: str) -> str:
            return f"{where}.{key}" if where else key

        job_keys = [name for name in config_fields(cls) if name != "encoder_config"]
        job = settings_kwargs(
            cls, {k: v for k, v in values.items() if k in job_keys}, owner=owner, where=where
        )
        try:
            enc_cls = encoder_class(job.get("encoder", "text"))
        except InvalidArgumentError as exc:
            raise SettingsError(f"{owner}: {at('encoder')}: {exc}") from exc
        name = builtin_name(enc_cls) or job.get("encoder", "text")
        rest = {k: v for k, v in values.items() if k not in job_keys and k != "encoder_config"}
        known = [*config_fields(enc_cls.config_class), *aliases_of(enc_cls.config_class)]
        for key in rest:
            if key not in known:
                raise SettingsError(f"{owner}: {at(key)}: {_unknown(key, name, enc_cls)}")
        given = values.get("encoder_config")
        if isinstance(given, enc_cls.config_class):
            given = {f: getattr(given, f) for f in config_fields(enc_cls.config_class)}
        elif given is not None and not isinstance(given, Mapping):
            raise SettingsError(
                f"{owner}: {at('encoder_config')}: expected a mapping or a {enc_cls.config_class.__name__}, "
                f"got {type(given).__name__}"
            )
        encoder_config = build_settings(
            enc_cls.config_class, {**(given or {}), **rest}, owner=owner, where=where
        )
        try:
            return cls(**job, encoder_config=encoder_config)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SettingsError):
                raise
            raise SettingsError(f"{owner}: {where or 'settings'}: {exc}") from exc

    @property
    def encoder_class(self) -> type[Encoder]:
        """The encoder's class (from the registry, or imported by its dotted path)."""
        return encoder_class(self.encoder)

    @property
    def encoder_ref(self) -> str:
        """The encoder as jobs and manifests record it: a built-in's short name, else the
        dotted path of its class (what a worker in another process imports)."""
        cls = self.encoder_class
        return builtin_name(cls) or encoder_label(cls)

    @property
    def modality(self) -> str:
        """What the job embeds: ``image`` when an image column is given, else ``text``."""
        return "image" if self.image_column else "text"

    @property
    def precision(self) -> str:
        """The encoder's precision (``fp32`` when its config has none); recorded in manifests."""
        return str(getattr(self.encoder_config, "precision", "fp32"))

    @property
    def backend(self) -> str:
        """The encoder's backend (``torch`` when its config has none); recorded in manifests."""
        return str(getattr(self.encoder_config, "backend", "torch"))

    @property
    def model(self) -> str | None:
        """The model the encoder's config names (None: the encoder's default model, or an
        encoder without one); recorded in manifests."""
        value = getattr(self.encoder_config, "model", None)
        return None if value is None else str(value)

    def decisive(self) -> dict[str, Any]:
        """The settings that decide the output (every setting but the speed knobs), hashed
        into ``job.json`` and the content vectors' folder names.

        The built-in encoders write :data:`LEGACY_LAYOUT`, flat, as before each encoder had
        its own config (the default backend left out, so that folders made before it
        existed read the same). Any other encoder: the job's settings, ``encoder`` (the
        class's dotted path) and ``settings`` (its config as a dict)."""
        job = {
            name: getattr(self, name)
            for name in config_fields(type(self))
            if name not in SPEED_KNOBS and name != "encoder_config"
        }
        cls = self.encoder_class
        if not builtin_name(cls):
            return {**job, "encoder": encoder_label(cls), "settings": dataclasses.asdict(self.encoder_config)}
        legacy = _legacy_settings(self.encoder_config)
        out = {
            "encoder": job.pop("encoder"),
            **{k: legacy.pop(k) for k in ("model", "weights", "clip_pretrained")},
            **{k: job.pop(k) for k in ("fields", "template", "id_column", "image_column", "image_root")},
            **legacy,
            **job,
        }
        if out["backend"] == "torch":
            del out["backend"]
        return out


def _legacy_settings(config: Any) -> dict[str, Any]:
    """A built-in encoder's config in :data:`LEGACY_LAYOUT` (then, by name, any other field
    of its config that is not at its default, e.g. the image encoder's ``optimize=False``)."""
    names = {f.name: f for f in dataclasses.fields(config)}
    out: dict[str, Any] = {}
    for key, name, default in LEGACY_LAYOUT:
        out[key] = getattr(config, name) if name in names else default
    covered = {name for _, name, _ in LEGACY_LAYOUT}
    for name, f in names.items():
        if name not in covered and getattr(config, name) != f.default:
            out[name] = getattr(config, name)
    return out


def _unknown(key: str, name: str, cls: type[Encoder]) -> str:
    known = sorted(
        {*config_fields(EmbedConfig), *config_fields(cls.config_class), *aliases_of(cls.config_class)}
    )
    known.remove("encoder_config")
    return f"not a setting of the embedding job or of the {name} encoder; expected one of {known}"


def _encoder_config(cls: type[Encoder], name: str, given: Any, settings: dict[str, Any]) -> Any:
    """The encoder's config: ``given`` (or its defaults) with the flat ``settings`` applied."""
    config_class: Any = cls.config_class
    fields = config_fields(config_class)
    aliases = aliases_of(config_class)
    values: dict[str, Any] = {}
    for key, value in settings.items():
        for target in aliases.get(key, (key,)):
            if target not in fields:
                raise SettingsError(f"{key}: {_unknown(key, name, cls)}")
            values[target] = value
    if given is None:
        return config_class(**values)
    if not isinstance(given, config_class):
        raise InvalidArgumentError(
            f"encoder_config of the {name} encoder must be a {config_class.__name__}, "
            f"got {type(given).__name__}"
        )
    return dataclasses.replace(given, **values) if values else given


def build_encoder(config: EmbedConfig) -> Encoder:
    """The encoder a config asks for (loaded through the real loading code)."""
    return config.encoder_class(config.encoder_config, config.device)
