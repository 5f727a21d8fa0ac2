"""The encoder conformance kit: :class:`EncoderTests`, the checks every encoder keeps.

The encoder under test is built once per test class from its settings (fixtures of the
class itself, so a user's module needs nothing but the import and a subclass); the checks
that need another instance or the batch engine build their own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from fusionrank.data.text import compose_text
from fusionrank.encoders.base import Encoder, InputKind, encoder_label
from fusionrank.encoders.embed_config import EmbedConfig
from fusionrank.encoders.engine import embed
from fusionrank.encoders.registry import encoder_class
from fusionrank.settings import build_settings

TEXTS = (
    "Toy Story (1995) Animation Children's Comedy",
    "GoldenEye",
    "Heat: a heist thriller in Los Angeles, and another one" * 6,
    "a",
    "Twelve Monkeys (1995) Drama Sci-Fi",
    "Amélie — une comédie romantique, naïve et drôle",
)
"""The texts a text encoder is checked on: short, long (padding), one character, accents."""

EMPTY_ROW = 2
"""Catalogue row (0-based) of the engine check's bad row: empty text, or no image path."""


def sample_images(n: int = 5, seed: int = 0) -> list[Any]:
    """``n`` seeded random RGB PIL images of different sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (40 + 8 * k, 48 + 4 * (k % 3), 3), dtype=np.uint8))
        for k in range(n)
    ]


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder under test: how to build it and what it is checked on."""

    encoder: str | type
    """A registered name, a dotted class path, or the class itself."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The encoder's own settings by keyword (its config's fields), as ``fr.embed`` takes them."""
    reads: InputKind = "text"
    """The input it is checked on: ``text`` or ``image`` (one of its ``inputs``)."""

    @property
    def name(self) -> str:
        """The name the encoder is given to the batch engine under: the registered name or
        the dotted path (a class must be importable by its dotted path)."""
        return self.encoder if isinstance(self.encoder, str) else encoder_label(self.encoder)

    @property
    def encoder_class(self) -> type[Encoder]:
        return encoder_class(self.encoder)

    def config(self) -> Any:
        """The encoder's config, from :attr:`settings` through the settings validator."""
        return build_settings(self.encoder_class.config_class, dict(self.settings), owner=self.name)

    def build(self, device: str = "cpu") -> Encoder:
        """A new instance."""
        cls = self.encoder_class
        config = self.config()
        cls.check(config, device)
        return cls(config, device)


class EncoderTests:
    """Conformance tests of one encoder: subclass it in a test module (the subclass's name
    starts with ``Test``) and set :attr:`encoder`, its :attr:`settings` and the input it
    :attr:`reads`.

    What is checked: the class names a frozen dataclass config and what it reads; the config
    round-trips through the settings validator (alone and inside the job's
    :class:`~fusionrank.encoders.embed_config.EmbedConfig`); ``encode`` gives float32
    ``(n, dim)`` with ``dim`` as declared; a batch gives the vectors of one input at a time
    (rtol 1e-4); the same input gives the same vectors, from a second instance built from
    the same config too (same ``identity``); ``identity`` is JSON; ``normalized`` is true to
    the norms; an empty batch gives ``(0, dim)``; and the batch engine (``fr.embed`` of a
    small catalogue with one bad row, which lands in ``errors.parquet``) gives the vectors
    ``encode`` gives.

    Settings that need files made at test time (a tiny model in a temporary folder): override
    the class-scoped fixture :meth:`encoder_settings`. Other inputs: override :meth:`inputs`.
    """

    encoder: ClassVar[str | type | None] = None
    """The encoder under test: a registered name, a dotted class path, or the class."""
    settings: ClassVar[Mapping[str, Any]] = {}
    """Its settings by keyword (its config's fields)."""
    reads: ClassVar[InputKind] = "text"
    """The input it is checked on: ``text`` (composed item text) or ``image`` (RGB images)."""

    # --- fixtures, one instance per class ------------------------------------------------------
    @pytest.fixture(scope="class")
    def encoder_settings(self) -> Mapping[str, Any]:
        """The encoder's settings (default: :attr:`settings`)."""
        return dict(self.settings)

    @pytest.fixture(scope="class")
    def encoder_spec(self, encoder_settings: Mapping[str, Any]) -> EncoderSpec:
        """The encoder under test, from the class attributes."""
        if self.encoder is None:
            raise TypeError(f"{type(self).__name__}: set encoder = a registered name, dotted path or class")
        return EncoderSpec(self.encoder, encoder_settings, self.reads)

    @pytest.fixture(scope="class")
    def built_encoder(self, encoder_spec: EncoderSpec) -> Encoder:
        """The encoder, built once for the checks that do not build their own."""
        return encoder_spec.build()

    @pytest.fixture(scope="class")
    def inputs(self, encoder_spec: EncoderSpec) -> list[Any]:
        """What it encodes: :data:`TEXTS`, or :func:`sample_images`."""
        return list(TEXTS) if encoder_spec.reads == "text" else sample_images()

    @pytest.fixture(scope="class")
    def vectors(self, built_encoder: Encoder, inputs: list[Any]) -> np.ndarray:
        """``encode(inputs)`` of the built encoder."""
        return built_encoder.encode(inputs)

    # --- the checks ----------------------------------------------------------------------------
    def test_class_names_its_config_and_what_it_reads(
        self, encoder_spec: EncoderSpec, built_encoder: Encoder
    ) -> None:
        cls = encoder_spec.encoder_class
        params = getattr(cls.config_class, "__dataclass_params__", None)
        assert params is not None and params.frozen, f"{cls.__name__}.config_class must be a frozen dataclass"
        assert encoder_spec.reads in cls.inputs, (
            f"{cls.__name__} reads {cls.inputs}, not {encoder_spec.reads}"
        )
        assert isinstance(built_encoder, Encoder), f"{cls.__name__} lacks part of the Encoder protocol"
        assert isinstance(built_encoder.dim, int) and built_encoder.dim > 0

    def test_config_round_trips_through_the_settings(self, encoder_spec: EncoderSpec) -> None:
        config = encoder_spec.config()
        cls = encoder_spec.encoder_class
        again = build_settings(cls.config_class, dataclasses.asdict(config), owner=encoder_spec.name)
        assert again == config
        job: dict[str, dict[str, Any]] = {
            "text": {"fields": ["title"]},
            "image": {"image_column": "image", "image_root": "."},
        }
        settings = {"encoder": encoder_spec.name, **job[encoder_spec.reads], **encoder_spec.settings}
        embed_config = build_settings(EmbedConfig, settings, owner=encoder_spec.name)
        assert embed_config.encoder_config == config
        assert build_settings(EmbedConfig, dataclasses.asdict(embed_config), owner="again") == embed_config

    def test_encode_gives_float32_n_by_dim(
        self, built_encoder: Encoder, inputs: list[Any], vectors: np.ndarray
    ) -> None:
        assert isinstance(vectors, np.ndarray), f"encode gave a {type(vectors).__name__}, not a numpy array"
        assert vectors.dtype == np.float32, f"encode gave {vectors.dtype}, not float32"
        assert vectors.shape == (len(inputs), built_encoder.dim)
        assert np.isfinite(vectors).all()

    def test_batch_equals_one_at_a_time(
        self, built_encoder: Encoder, inputs: list[Any], vectors: np.ndarray
    ) -> None:
        single = np.concatenate([built_encoder.encode(inputs[k : k + 1]) for k in range(len(inputs))])
        np.testing.assert_allclose(single, vectors, rtol=1e-4, atol=1e-5)

    def test_same_input_gives_the_same_vectors(
        self, encoder_spec: EncoderSpec, built_encoder: Encoder, inputs: list[Any], vectors: np.ndarray
    ) -> None:
        np.testing.assert_array_equal(built_encoder.encode(inputs), vectors)
        other = encoder_spec.build()
        assert other.identity == built_encoder.identity and other.dim == built_encoder.dim
        np.testing.assert_array_equal(other.encode(inputs), vectors)

    def test_identity_is_json(self, built_encoder: Encoder) -> None:
        identity = built_encoder.identity
        assert isinstance(identity, dict)
        assert json.loads(json.dumps(identity)) == identity, "identity must be JSON values (no tuples, paths)"

    def test_normalized_is_true_to_the_norms(self, built_encoder: Encoder, vectors: np.ndarray) -> None:
        unit = np.isclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        if built_encoder.normalized:
            assert unit.all(), "normalized is True but some vectors do not have unit norm"
        else:
            assert not unit.all(), "normalized is False but every vector has unit norm"

    def test_empty_batch_gives_no_rows(self, built_encoder: Encoder) -> None:
        empty = built_encoder.encode([])
        assert empty.shape == (0, built_encoder.dim) and empty.dtype == np.float32

    def test_the_batch_engine_gives_the_vectors_encode_gives(
        self,
        encoder_spec: EncoderSpec,
        built_encoder: Encoder,
        inputs: list[Any],
        vectors: np.ndarray,
        tmp_path: Path,
    ) -> None:
        ids = [f"i{k}" for k in range(len(inputs))]
        rows: list[dict[str, str]] = []
        job: dict[str, Any]
        expected = vectors
        if encoder_spec.reads == "text":
            rows = [{"item_id": i, "title": t} for i, t in zip(ids, inputs)]
            rows.insert(EMPTY_ROW, {"item_id": "bad", "title": ""})
            job, reason = {"fields": ["title"]}, "empty text"
            composed = [compose_text(row, ["title"]) for row in rows if row["title"]]
            if composed != inputs:  # the engine's text of a row: white space trimmed
                expected = built_encoder.encode(composed)
        else:
            (tmp_path / "images").mkdir()
            for i, image in zip(ids, inputs):
                image.save(tmp_path / "images" / f"{i}.png")  # lossless: the same pixels back
            rows = [{"item_id": i, "image": f"{i}.png"} for i in ids]
            rows.insert(EMPTY_ROW, {"item_id": "bad", "image": ""})
            job, reason = {"image_column": "image", "image_root": str(tmp_path / "images")}, "no image path"
        pd.DataFrame(rows).to_parquet(tmp_path / "catalogue.parquet")
        done = embed(
            tmp_path / "catalogue.parquet",
            tmp_path / "vectors",
            encoder_spec.name,
            **job,
            **encoder_spec.settings,
            batch_size=2,
            shard_size=4,
            quiet=True,
        )
        got_ids, got = done.load()
        assert list(got_ids) == ids
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        errors = done.errors()
        assert errors["item_id"].tolist() == ["bad"] and errors["reason"].tolist() == [reason]
        manifest = done.manifest
        assert (manifest["dim"], manifest["normalised"]) == (built_encoder.dim, built_encoder.normalized)
        assert manifest["weights"] == json.loads(json.dumps(built_encoder.identity))
