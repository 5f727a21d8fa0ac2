"""Encoders a user plugs in: an own encoder outside fusionrank (``tests_plugin.HashingEncoder``)
by its dotted path through the conformance kit, ``fusionrank embed --encoder ... --set`` and
``fr.embed``; registered names and a dataset profile naming one; one-line refusals; the kit
failing a broken encoder; and the built-in encoders keeping the same contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from tests_plugin import HashingEncoder, HashingEncoderConfig
from typer.testing import CliRunner

import fusionrank as fr
from fusionrank.encoders import registry
from fusionrank.encoders.base import EncoderContractError
from fusionrank.encoders.engine import EmbedConfig, embed_config
from fusionrank.encoders.registry import encoder_class, list_encoders, register_encoder
from fusionrank.encoders.tiny import save_tiny_bert, save_tiny_clip, save_tiny_resnet
from fusionrank.errors import InvalidArgumentError
from fusionrank.io import read_json
from fusionrank.pipelines.cli import app
from fusionrank.settings import SettingsError
from fusionrank.testing import EncoderSpec, EncoderTests
from fusionrank.testing._encoders import TEXTS

OWN = "tests_plugin.HashingEncoder"
TITLES = ["Heat", "Up", "", "Toy Story (1995)", "The Usual Suspects", "Babe"]

runner = CliRunner()


class TestHashingEncoder(EncoderTests):
    encoder = OWN
    settings = {"dim": 32}


def _catalogue(tmp_path):
    path = tmp_path / "catalogue.csv"
    pd.DataFrame({"item_id": [f"i{k}" for k in range(len(TITLES))], "title": TITLES}).to_csv(
        path, index=False
    )
    return path


def _expected(**settings):
    return HashingEncoder(HashingEncoderConfig(**settings)).encode([t for t in TITLES if t])


def _one_line(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_cli_embeds_with_an_own_encoder_and_its_settings(tmp_path):
    path = _catalogue(tmp_path)
    out = tmp_path / "out"
    args = ["embed", "--catalogue", str(path), "--encoder", OWN, "--fields", "title", "--quiet"]
    res = runner.invoke(app, [*args, "--set", "dim=32", "--set", "n=2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    vecs = fr.embed(path, out, encoder=OWN, fields=["title"], dim=32, n=2, quiet=True)  # resumes: done
    ids, matrix = vecs.load()
    assert list(ids) == [f"i{k}" for k, t in enumerate(TITLES) if t]
    np.testing.assert_allclose(matrix, _expected(dim=32, n=2), atol=1e-6)
    assert vecs.errors()["reason"].tolist() == ["empty text"]
    job = read_json(out / "job.json")["settings"]
    assert job["encoder"] == OWN and job["settings"] == {"dim": 32, "n": 2} and job["fields"] == ["title"]
    manifest = vecs.manifest
    assert (manifest["encoder"], manifest["dim"], manifest["normalised"]) == (OWN, 32, True)
    assert (manifest["precision"], manifest["backend"]) == ("fp32", "torch")
    res = runner.invoke(app, [*args, "--set", "dim=16", "--out", str(out)])  # other settings: refused
    assert res.exit_code == 2 and "settings.settings" in res.output and len(_one_line(res.output)) == 1


def test_fr_embed_with_an_own_encoder(tmp_path):
    path = _catalogue(tmp_path)
    vecs = fr.embed(path, tmp_path / "out", encoder=OWN, fields=["title"], quiet=True)
    assert vecs.dim == 64
    np.testing.assert_allclose(vecs.load()[1], _expected(), atol=1e-6)


def test_an_unknown_setting_and_a_class_that_is_no_encoder_are_one_line_errors(tmp_path):
    path = _catalogue(tmp_path)
    with pytest.raises(SettingsError) as err:
        fr.embed(path, tmp_path / "a", encoder=OWN, fields=["title"], pooling="cls")
    message = str(err.value)
    assert "pooling" in message and OWN in message and "\n" not in message
    assert "expected one of" in message and "'dim'" in message and "'n'" in message
    with pytest.raises(
        SettingsError, match=r"encoder: 'tests_plugin.MostRecent' is not a fusionrank encoder"
    ):
        fr.embed(path, tmp_path / "b", encoder="tests_plugin.MostRecent", fields=["title"])
    with pytest.raises(SettingsError, match=r"encoder: encoder class 'tests_plugin.Nope' cannot be imported"):
        fr.embed(path, tmp_path / "c", encoder="tests_plugin.Nope", fields=["title"])
    with pytest.raises(InvalidArgumentError, match=r"'tests_plugin.MostRecent' is not a fusionrank encoder"):
        encoder_class("tests_plugin.MostRecent")
    with pytest.raises(InvalidArgumentError, match="unknown encoder 'bert'"):
        encoder_class("bert")
    args = ["embed", "--catalogue", str(path), "--fields", "title", "--out", str(tmp_path / "d")]
    for extra, said in [
        (["--encoder", OWN, "--set", "pooling=cls"], "pooling"),
        (["--encoder", OWN, "--precision", "int8"], "precision"),
        (["--encoder", "tests_plugin.MostRecent"], "not a fusionrank encoder"),
    ]:
        res = runner.invoke(app, [*args, *extra])
        assert res.exit_code == 2 and said in res.output, res.output
        assert len(_one_line(res.output)) == 1, res.output
    assert not (tmp_path / "d").exists()


def test_a_registered_name_and_a_profile_that_names_an_own_encoder(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_EXTRA", {})
    register_encoder("hashing", HashingEncoder)
    assert list_encoders()["hashing"] is HashingEncoderConfig and encoder_class("hashing") is HashingEncoder
    with pytest.raises(InvalidArgumentError, match="not a fusionrank encoder"):
        register_encoder("pop", fr.Recommender)
    path = _catalogue(tmp_path)
    vecs = fr.embed(path, tmp_path / "out", encoder="hashing", fields=["title"], dim=8, quiet=True)
    assert vecs.manifest["encoder"] == OWN, "jobs record the class's dotted path, not the local name"
    assert read_json(tmp_path / "out" / "job.json")["settings"]["encoder"] == OWN
    events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["i0", "i1"]})
    items = pd.read_csv(path)
    profile = {"encoders": {"text": {"encoder": OWN, "dim": 16}}}
    ds = fr.Dataset.from_files(events, items, text="{title}", profile=profile, cache_dir=tmp_path / "c")
    config = embed_config(ds, "text")
    assert config.encoder_config == HashingEncoderConfig(dim=16) and config.template == "{title}"
    assert config.decisive()["settings"] == {"dim": 16, "n": 3}
    assert fr.embed(ds, tmp_path / "ds", quiet=True).dim == 16


class Float64Encoder(HashingEncoder):
    def encode(self, batch):
        return super().encode(batch).astype(np.float64)


class BatchDependentEncoder(HashingEncoder):
    def encode(self, batch):
        out = super().encode(batch)
        return out - out.mean(axis=0) if len(out) > 1 else out


class WrongShapeEncoder(HashingEncoder):
    def encode(self, batch):
        return super().encode(batch)[:, :-1]


def test_the_kit_fails_a_broken_encoder():
    kit = EncoderTests()
    inputs = list(TEXTS)
    for cls, check in [
        (Float64Encoder, kit.test_encode_gives_float32_n_by_dim),
        (BatchDependentEncoder, kit.test_batch_equals_one_at_a_time),
        (WrongShapeEncoder, kit.test_encode_gives_float32_n_by_dim),
    ]:
        good = EncoderSpec(HashingEncoder, {"dim": 8}).build()
        check(good, inputs, good.encode(inputs))  # the sound encoder passes the same check
        broken = EncoderSpec(cls, {"dim": 8}).build()
        with pytest.raises(AssertionError):
            check(broken, inputs, broken.encode(inputs))


def test_the_engine_refuses_vectors_of_another_shape_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_EXTRA", {})
    register_encoder("wrong-shape", WrongShapeEncoder)
    with pytest.raises(EncoderContractError, match=r"gave an array of shape \(2, 7\) for 2 inputs; expected"):
        fr.embed(
            _catalogue(tmp_path), tmp_path / "o", encoder="wrong-shape", fields=["title"], dim=8, batch_size=2
        )


# --- the built-in encoders keep the same contract ----------------------------------------------


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-models")
    return {
        "bert": str(save_tiny_bert(folder / "bert")),
        "resnet": str(save_tiny_resnet(folder / "resnet18.safetensors")),
        "clip": str(save_tiny_clip(folder / "clip")),
    }


class TestTextEncoder(EncoderTests):
    encoder = "text"

    @pytest.fixture(scope="class")
    def encoder_settings(self, tiny_models):
        return {"model": tiny_models["bert"]}


class TestImageEncoder(EncoderTests):
    encoder = "image"
    reads = "image"

    @pytest.fixture(scope="class")
    def encoder_settings(self, tiny_models):
        return {"model": "resnet18", "weights": tiny_models["resnet"], "normalize": False}


class TestClipOnText(EncoderTests):
    encoder = "clip"

    @pytest.fixture(scope="class")
    def encoder_settings(self, tiny_models):
        return {"model": tiny_models["clip"]}


class TestClipOnImages(TestClipOnText):
    reads = "image"


def test_builtin_settings_by_flat_key_and_by_replace():
    config = EmbedConfig(
        encoder="clip", fields=("t",), clip_pretrained="/x/clip.safetensors", precision="int8"
    )
    assert config.encoder_config.pretrained == "/x/clip.safetensors" and config.precision == "int8"
    assert config.backend == "torch" and config.decisive()["clip_pretrained"] == "/x/clip.safetensors"
    again = dataclasses.replace(config, precision="fp32", batch_size=3)  # routed like the constructor
    assert again.encoder_config.precision == "fp32" and again.batch_size == 3
    assert dataclasses.asdict(again)["encoder_config"]["pretrained"] == "/x/clip.safetensors"
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        dataclasses.replace(config, precision="fp16")
    with pytest.raises(
        SettingsError, match="pooling: not a setting of the embedding job or of the clip encoder"
    ):
        EmbedConfig(encoder="clip", fields=("t",), pooling="cls")
    with pytest.raises(ValueError, match="the image encoder needs --image-column"):
        EmbedConfig(encoder="image")
    with pytest.raises(ValueError, match="the text encoder reads text, not images"):
        EmbedConfig(image_column="image", image_root=".")
