"""Precision and backends of the encoders: int8, ONNX Runtime, bf16/fp16 rules, the fused
channels_last image path, what the manifest records and what a resume refuses."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig
from fusionrank.encoders.device import decode_workers
from fusionrank.encoders.engine import EmbedConfig, EmbedSettingsError, embed
from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig
from fusionrank.encoders.text import TextEncoder, TextEncoderConfig
from fusionrank.encoders.tiny import save_tiny_bert, save_tiny_clip, save_tiny_resnet
from fusionrank.pipelines.cli import app
from fusionrank.settings import SettingsError

REPO = Path(__file__).resolve().parents[1]

TITLES = [
    "Toy Story (1995) Animation Children's Comedy",
    "GoldenEye (1995) Action Adventure Thriller",
    "Four Rooms (1995) Thriller",
    "Get Shorty (1995) Action Comedy Drama",
    "Copycat (1995) Crime Drama Thriller",
    "Twelve Monkeys (1995) Drama Sci-Fi",
    "Babe (1995) Children's Comedy Drama",
    "Dead Man Walking (1995) Drama",
    "Richard III (1995) Drama War",
    "Seven (Se7en) (1995) Crime Thriller",
    "The Usual Suspects (1995) Crime Thriller",
    "Mighty Aphrodite (1995) Comedy",
    "Postino, Il (1994) Drama Romance",
    "Mr. Holland's Opus (1995) Drama",
    "French Twist (Gazon maudit) (1995) Comedy Romance",
    "From Dusk Till Dawn (1996) Action Comedy Crime Horror",
    "Angels and Insects (1995) Drama Romance",
    "Muppet Treasure Island (1996) Action Adventure Comedy Musical",
    "Braveheart (1995) Action Drama War",
    "Taxi Driver (1976) Drama Thriller",
    "Rumble in the Bronx (1995) Action Adventure Crime",
    "Apollo 13 (1995) Action Drama Thriller",
    "Batman Forever (1995) Action Adventure Comedy Crime",
    "Crimson Tide (1995) Drama Thriller War",
]
PLOTS = [
    "A cowboy doll is profoundly threatened and jealous when a new spaceman figure supplants him "
    "as top toy in a boy's room.",
    "In a future world devastated by disease, a convict is sent back in time to gather information "
    "about the man-made virus that wiped out most of the human population.",
    "Two detectives, a rookie and a veteran, hunt a serial killer who uses the seven deadly sins as "
    "his motives.",
    "NASA must devise a strategy to return Apollo 13 to Earth safely after the spacecraft undergoes "
    "massive internal damage putting the lives of the three astronauts on board in jeopardy.",
    "Scottish warrior William Wallace leads his countrymen in a rebellion to free his homeland from "
    "the tyranny of King Edward I of England.",
    "On a nuclear submarine, a clash of wills between the captain and his executive officer erupts "
    "over an order to launch missiles.",
]
TEXTS = TITLES + PLOTS


@pytest.fixture(scope="module")
def minilm_fp32():
    enc = TextEncoder()
    return enc, enc.encode(TEXTS)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_minilm_stays_close_to_fp32(minilm_fp32):
    _, ref = minilm_fp32
    enc = TextEncoder(TextEncoderConfig(precision="int8"))
    linears = [type(m).__name__ for m in enc.model.modules() if "Linear" in type(m).__name__]
    assert "FullRangeDynamicLinear" in linears and linears.count("Linear") == 1  # layer 0's FFN output
    cos = _cosines(enc.encode(TEXTS), ref)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, (cos.mean(), cos.min())


def test_onnx_backend_matches_torch(minilm_fp32):
    _, ref = minilm_fp32
    enc = TextEncoder(TextEncoderConfig(backend="onnx"))
    assert enc.model is None and enc.dim == 384
    cos = _cosines(enc.encode(TEXTS, batch_size=7), ref)
    assert cos.min() >= 0.9999, cos.min()
    # cached beside the fusionrank cache, named by the weights' sha256, with a sidecar
    path = enc.onnx.path
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["weights_sha256"] == enc.identity["sha256"] and sidecar["precision"] == "fp32"
    assert path.parent == Path(os.environ["FUSIONRANK_CACHE"]) / "onnx"
    stamp = path.stat().st_mtime_ns
    int8 = TextEncoder(TextEncoderConfig(backend="onnx", precision="int8"))
    assert path.stat().st_mtime_ns == stamp  # reused, not exported again
    assert (
        int8.onnx.path.name.endswith("-int8.onnx") and int8.onnx.path.stat().st_size < path.stat().st_size / 3
    )
    cos8 = _cosines(int8.encode(TEXTS), ref)
    assert cos8.mean() >= 0.99, cos8.mean()


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False)])
def test_onnx_pooling_has_the_torch_semantics(bert_dir, pooling, normalize):
    texts = ["a b c", "x", "a much longer text about nothing " * 6, "Heat (1995)"]
    kw = {"model": str(bert_dir), "pooling": pooling, "normalize": normalize}
    torch_vecs = TextEncoder(TextEncoderConfig(**kw)).encode(texts, batch_size=3)
    onnx_vecs = TextEncoder(TextEncoderConfig(**kw, backend="onnx")).encode(texts, batch_size=3)
    np.testing.assert_allclose(onnx_vecs, torch_vecs, atol=2e-5)


def _catalogue(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": TITLES[:n]}).to_csv(path, index=False)
    return path


def test_manifest_records_precision_and_resume_refuses_another(tmp_path, bert_dir):
    path = _catalogue(tmp_path)
    out = tmp_path / "out"
    common = {"model": str(bert_dir), "fields": ["title"], "quiet": True}
    vecs = embed(path, out, precision="int8", backend="onnx", **common)
    assert (vecs.manifest["precision"], vecs.manifest["backend"]) == ("int8", "onnx")
    assert vecs.manifest["settings"]["precision"] == "int8" and vecs.manifest["settings"]["backend"] == "onnx"
    with pytest.raises(EmbedSettingsError) as err:
        embed(path, out, precision="fp32", backend="onnx", **common)
    assert "settings.precision: 'int8' -> 'fp32'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(EmbedSettingsError, match="settings.backend: 'onnx' -> 'torch'"):
        embed(path, out, precision="int8", **common)
    # a half-done default job refuses int8 too (the shards must not mix)
    (tmp_path / "fp32").mkdir()
    (tmp_path / "fp32" / "job.json").write_text(json.dumps({"settings": {"precision": "fp32"}}))
    with pytest.raises(EmbedSettingsError, match="precision"):
        embed(path, tmp_path / "fp32", precision="int8", **common)
    plain = embed(path, tmp_path / "plain", **common).manifest
    assert (plain["precision"], plain["backend"]) == ("fp32", "torch")


def test_default_settings_serialise_as_before():
    """Folder keys of content vectors (fusion.content.vectors_dir) and job.json of existing
    folders are hashes of ``decisive()``: the default backend must not appear in it."""
    config = EmbedConfig(template="{movie_title} {class}")
    decisive = config.decisive()
    assert "backend" not in decisive and decisive["precision"] == "fp32"
    key = hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:10]
    assert key == "ac756f7336"  # the key these settings had before precision/backend options
    assert EmbedConfig(template="{t}", backend="onnx").decisive()["backend"] == "onnx"


def test_precision_rules_are_one_line_errors():
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        EmbedConfig(fields=("t",), precision="fp16")
    with pytest.raises(ValueError, match="a ResNet has none"):
        EmbedConfig(encoder="image", image_column="i", image_root=".", precision="int8")
    with pytest.raises(ValueError, match="text encoder only"):
        EmbedConfig(encoder="clip", fields=("t",), backend="onnx")
    with pytest.raises(ValueError, match="fp32 or int8"):
        EmbedConfig(fields=("t",), backend="onnx", precision="bf16")
    with pytest.raises(SettingsError, match="precision: expected one of"):
        from fusionrank.settings import build_settings

        build_settings(EmbedConfig, {"fields": ["t"], "precision": "int4"}, owner="embed")
    with pytest.raises(ValueError, match="device must be"):
        EmbedConfig(fields=("t",), device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            EmbedConfig(fields=("t",), device="cuda:0", precision="bf16")
    assert decode_workers(3, "cpu") == 3 and decode_workers(None, "cpu") == 1
    assert 1 <= decode_workers(None, "cuda") <= 8


def test_bf16_on_the_cpu_runs_and_says_it_is_slow(tmp_path, bert_dir):
    from fusionrank.encoders.engine import embed_catalogue

    lines: list[str] = []
    config = EmbedConfig(model=str(bert_dir), fields=("title",), precision="bf16", quiet=True)
    manifest = embed_catalogue(_catalogue(tmp_path), tmp_path / "o", config, log=lines.append)
    assert manifest["precision"] == "bf16" and any("bf16 on the CPU" in m and "slow" in m for m in lines)


runner = CliRunner()


def test_cli_flags_parse_and_refuse(tmp_path, bert_dir):
    path = _catalogue(tmp_path, 5)
    args = ["embed", "--catalogue", str(path), "--model", str(bert_dir), "--fields", "title", "--quiet"]
    res = runner.invoke(
        app, [*args, "--precision", "int8", "--backend", "torch", "--out", str(tmp_path / "a")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["precision"] == "int8"
    res = runner.invoke(app, [*args, "--precision", "fp16", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "fp16 needs --device cuda" in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output
    res = runner.invoke(app, [*args, "--backend", "tensorrt", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "backend" in res.output


def test_fused_channels_last_resnet_matches_the_plain_module(tmp_path):
    weights = save_tiny_resnet(tmp_path / "r18.safetensors")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)) for _ in range(6)]
    fused = ImageEncoder(ImageEncoderConfig("resnet18", str(weights)))
    plain = ImageEncoder(ImageEncoderConfig("resnet18", str(weights), optimize=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.model.modules())
    conv = next(m for m in fused.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    a, b = fused.encode(images, batch_size=4), plain.encode(images, batch_size=4)
    assert _cosines(a, b).min() >= 1 - 1e-4
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_int8_clip_runs_close_to_fp32(tmp_path):
    folder = save_tiny_clip(tmp_path / "clip")
    fp32 = ClipEncoder(ClipEncoderConfig(model=str(folder)))
    int8 = ClipEncoder(ClipEncoderConfig(model=str(folder), precision="int8"))
    texts = ["a red car", "two dogs on a beach", "a bowl of soup"]
    a, b = fp32.encode_text(texts), int8.encode_text(texts)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert _cosines(a, b).min() >= 0.99


@pytest.mark.slow  # about 90 s on 2 cores (a dozen model loads)
def test_gpu_embed_dry_run_writes_its_tables(tmp_path):
    env = {**os.environ, "DRY_RUN": "1"}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_embed.sh"), "--out", str(tmp_path)],
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((tmp_path / "gpu_embed.json").read_text())
    rows = payload["rows"]
    assert payload["meta"]["plan"]["device"] == "cpu"
    assert {r["task"].split()[0] for r in rows} == {"300", "all-MiniLM-L6-v2", "resnet18", "ViT-S-32"}
    assert not [r for r in rows if "error" in r], rows
    assert all(r["engine_items_per_s"] > 0 for r in rows)
    measured = [r for r in rows if "texts job" not in r["task"] and not r["system"].startswith("engine, ")]
    assert all(r["cosine_vs_fp32"] > 0.99 for r in measured)
    assert ("all-MiniLM-L6-v2 short", "engine, workers 2", "bf16") in {
        (r["task"], r["system"], r["precision"]) for r in rows
    }  # a variant: one speed setting changed
    assert all(
        r["fixed_seconds"] > 0 for r in rows if r["system"] == "engine" and "texts job" not in r["task"]
    )
    engine = [r for r in rows if r["system"] == "engine" and "texts job" not in r["task"]]
    text_stages = {"tokenise", "collate", "h2d", "forward", "d2h", "write"}
    image_stages = {"read", "decode+preprocess", "forward", "d2h", "write"}
    for r in engine:
        assert set(r["stages"]) == (text_stages if "MiniLM" in r["task"] else image_stages), r
        assert r["ran"]["device"] == "cpu" and (r["ran"]["bucketing"] or r["ran"]["decoder"])
    systems = {(r["task"], r["system"], r["precision"]) for r in rows}
    assert ("all-MiniLM-L6-v2 short", "sentence-transformers", "fp32") in systems
    assert ("300 texts job", "sentence-transformers", "bf16") in systems
    job = next(r for r in rows if r["task"] == "300 texts job" and r["system"] == "engine")
    assert job["items"] == 300 and job["peak_rss_mb"] > 0
    targets = {t["target"]: t for t in payload["targets"]}
    assert (
        "short texts bf16: engine / forward" in targets
        and "1M job: engine / sentence-transformers" in targets
    )
    assert all(t["pass"] in ("pass", "FAIL") for t in targets.values())
    assert [c["pass"] for c in payload["checks"]] == [True, True], payload["checks"]
    md = (tmp_path / "gpu_embed.md").read_text()
    assert "| task" in md and "## Targets" in md and "| pass" in md and "## Where the time goes" in md


def test_shards_prepared_ahead_come_in_order_and_equal():
    """The GPU path prepares the next shard in a thread: same shards, same order, same text."""
    from fusionrank.encoders.batches import _prepared, _ShardText
    from fusionrank.encoders.job import Shard

    pending = [Shard(i, 10 * i, 10 * i + 10) for i in range(5)]

    def prepare(shard: Shard) -> _ShardText:
        return _ShardText(rows=list(range(shard.start, shard.stop)))

    inline = [(s.index, p.rows) for s, p in _prepared(pending, prepare, ahead=False)]
    ahead = [(s.index, p.rows) for s, p in _prepared(pending, prepare, ahead=True)]
    assert inline == ahead and [i for i, _ in ahead] == [0, 1, 2, 3, 4]
