import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fusionrank.data.vectors import read_vectors
from fusionrank.encoders.engine import EmbedConfig, EmbedSettingsError, embed, embed_catalogue
from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig
from fusionrank.encoders.text import TextEncoder, TextEncoderConfig
from fusionrank.encoders.tiny import save_tiny_bert, save_tiny_clip, save_tiny_resnet


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _catalogue(tmp_path, n=50):
    rows = [
        {"item_id": f"i{k}", "title": f"Film {k} " + "word " * (k % 7), "genre": "Drama"} for k in range(n)
    ]
    rows[3]["title"], rows[3]["genre"] = "", ""  # empty text
    rows[7]["item_id"] = "i5"  # duplicate id
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, rows


def test_text_job_accounts_for_every_row(tmp_path, bert_dir):
    path, rows = _catalogue(tmp_path)
    manifest = embed(
        path,
        tmp_path / "out",
        encoder="text",
        model=str(bert_dir),
        fields=["title", "genre"],
        shard_size=16,
        batch_size=5,
        quiet=True,
    ).manifest
    assert manifest["rows"] + manifest["errors"] == len(rows) == manifest["catalogue_rows"]
    assert manifest["dim"] == 32 and manifest["normalised"] and len(manifest["shards"]) == 4
    errors = pd.read_parquet(tmp_path / "out" / "errors.parquet")
    assert sorted(errors["reason"]) == ["duplicate item id 'i5'", "empty text"]
    assert set(errors["row"]) == {4, 8}
    ids, vecs = read_vectors(tmp_path / "out")
    expected_ids = [r["item_id"] for k, r in enumerate(rows) if k not in (3, 7)]
    assert list(ids) == expected_ids
    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)))
    texts = [f"{r['title']} {r['genre']}".strip() for k, r in enumerate(rows) if k not in (3, 7)]
    np.testing.assert_allclose(vecs, enc.encode(texts), atol=1e-5)


def test_other_settings_into_the_same_folder_are_refused(tmp_path, bert_dir):
    path, _ = _catalogue(tmp_path, 10)
    embed(path, tmp_path / "out", model=str(bert_dir), fields=["title"], quiet=True)
    again = embed(path, tmp_path / "out", model=str(bert_dir), fields=["title"], quiet=True, batch_size=3)
    assert again.rows == 8 and again.manifest["errors"] == 2 and len(again.errors()) == 2
    with pytest.raises(EmbedSettingsError, match=r"settings.fields: \['title'\] -> \['title', 'genre'\]"):
        embed(path, tmp_path / "out", model=str(bert_dir), fields=["title", "genre"], quiet=True)
    with pytest.raises(EmbedSettingsError, match="pooling"):
        embed(path, tmp_path / "out", model=str(bert_dir), fields=["title"], pooling="cls", quiet=True)


def test_bad_catalogue_columns_name_file_and_column(tmp_path, bert_dir):
    from fusionrank.data.errors import DataError

    path, _ = _catalogue(tmp_path, 10)
    with pytest.raises(DataError, match="'synopsis'"):
        embed(path, tmp_path / "o", model=str(bert_dir), fields=["synopsis"], quiet=True)
    with pytest.raises(DataError, match="'movie_id'"):
        embed(path, tmp_path / "o", model=str(bert_dir), fields=["title"], id_column="movie_id", quiet=True)


def _image_catalogue(tmp_path, n=12):
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(1)
    rows = []
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(root / f"{k}.jpg")
        rows.append({"item_id": f"i{k}", "image": f"{k}.jpg"})
    data = (root / "0.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (root / "text.jpg").write_text("not an image")
    (tmp_path / "outside.jpg").write_bytes(data)
    rows += [
        {"item_id": "truncated", "image": "broken.jpg"},
        {"item_id": "notimage", "image": "text.jpg"},
        {"item_id": "missing", "image": "nope.jpg"},
        {"item_id": "escape", "image": "../outside.jpg"},
    ]
    path = tmp_path / "catalogue.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path, root, n


@pytest.mark.parametrize("workers", [0, 2])
def test_image_job_with_bad_files(tmp_path, workers):
    weights = save_tiny_resnet(tmp_path / "r18.safetensors")
    path, root, n_good = _image_catalogue(tmp_path)
    manifest = embed(
        path,
        tmp_path / "out",
        encoder="image",
        model="resnet18",
        weights=str(weights),
        image_column="image",
        image_root=root,
        batch_size=4,
        shard_size=5,
        workers=workers,
        quiet=True,
    ).manifest
    assert (manifest["rows"], manifest["errors"], manifest["dim"]) == (n_good, 4, 512)
    errors = pd.read_parquet(tmp_path / "out" / "errors.parquet").set_index("item_id")["reason"]
    assert errors["missing"].startswith("missing image")
    assert "escapes the image root" in errors["escape"]
    assert errors["truncated"].startswith("unreadable image") and errors["notimage"].startswith("unreadable")
    ids, vecs = read_vectors(tmp_path / "out")
    enc = ImageEncoder(ImageEncoderConfig("resnet18", str(weights)))
    ref = enc.encode([Image.open(root / f"{k}.jpg") for k in range(n_good)])
    assert list(ids) == [f"i{k}" for k in range(n_good)]
    np.testing.assert_allclose(vecs, ref, atol=1e-4)


def test_clip_embeds_images_and_text_into_one_space(tmp_path):
    folder = save_tiny_clip(tmp_path / "clip")
    path, root, n_good = _image_catalogue(tmp_path, 3)
    img = embed(
        path,
        tmp_path / "img",
        encoder="clip",
        model=str(folder),
        image_column="image",
        image_root=root,
        quiet=True,
        workers=0,
    ).manifest
    txt = embed(
        path, tmp_path / "txt", encoder="clip", model=str(folder), fields=["image"], quiet=True
    ).manifest
    assert img["dim"] == txt["dim"] == 32 and img["modality"] == "image" and txt["modality"] == "text"
    assert img["rows"] == 3 and txt["rows"] == 7


def _run_cli(args, **kwargs):
    code = "from fusionrank.pipelines.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs
    )


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, bert_dir):
    n = 4000
    rows = [
        {"item_id": str(k), "title": f"Film number {k} " + "long words here " * (k % 9)} for k in range(n)
    ]
    path = tmp_path / "catalogue.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    args = [
        "embed",
        "--catalogue",
        str(path),
        "--model",
        str(bert_dir),
        "--fields",
        "title",
        "--shard-size",
        "250",
        "--batch-size",
        "16",
        "--quiet",
    ]
    out = tmp_path / "killed"
    proc = _run_cli([*args, "--out", str(out)])
    deadline = time.time() + 120
    while not (out / "vectors-00002.parquet").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("vectors-*.parquet")))
    assert 3 <= done_before < n // 250, "the job must have been killed mid-run"
    assert not (out / "manifest.json").exists()
    resumed = _run_cli([*args, "--out", str(out)])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    clean = embed_catalogue(
        path,
        tmp_path / "clean",
        EmbedConfig(model=str(bert_dir), fields=("title",), shard_size=250, batch_size=16, quiet=True),
    )
    ids_a, vec_a = read_vectors(out)
    ids_b, vec_b = read_vectors(tmp_path / "clean")
    assert list(ids_a) == list(ids_b) and len(ids_a) == n == clean["rows"]
    np.testing.assert_array_equal(vec_a, vec_b)
    assert not list(out.glob(".*tmp*"))


def test_embed_a_dataset_uses_its_profile(tmp_path, bert_dir):
    """fr.embed on a Dataset takes the text template and the catalogue from the dataset."""
    import fusionrank as fr

    events = pd.DataFrame({"uid": ["a", "b", "a"], "sku": ["x", "y", "z"]})
    items = pd.DataFrame(
        {"sku": ["x", "y", "z"], "title": ["Heat", "Up", ""], "plot": ["A heist.", "A house.", ""]}
    )
    ds = fr.Dataset.from_files(
        events,
        items,
        columns={"user": "uid", "item": "sku"},
        text="{title}. {plot}",
        cache_dir=tmp_path / "c",
    )
    vecs = fr.embed(ds, encoder="text", out=tmp_path / "v", model=str(bert_dir), quiet=True)
    ids, matrix = vecs.load()
    assert list(ids) == ["x", "y"] and vecs.errors()["reason"].tolist() == ["empty text"]
    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)))
    np.testing.assert_allclose(matrix, enc.encode(["Heat. A heist.", "Up. A house."]), atol=1e-5)
    with pytest.raises(ValueError, match="no image column"):
        fr.embed(ds, encoder="image", out=tmp_path / "i")
