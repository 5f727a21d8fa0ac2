"""The engine's feeding for a GPU, checked on the CPU: length buckets keep the catalogue's
order, text workers and the background writer change no byte, a writer failure is raised,
the GPU JPEG path keeps every row when the decoder refuses, weights cast to bf16 stay close
to fp32, and the manifest says what ran."""

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fusionrank.data.vectors import read_vectors
from fusionrank.encoders import decode as decoding
from fusionrank.encoders.batches import batch_order, pieces
from fusionrank.encoders.engine import EmbedConfig, embed_catalogue
from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig
from fusionrank.encoders.job import Shard, errors_part, finish_shard, shard_path
from fusionrank.encoders.precision import resolve_cast
from fusionrank.encoders.text import TextEncoder, TextEncoderConfig, pad_ids
from fusionrank.encoders.tiny import save_tiny_bert, save_tiny_resnet
from fusionrank.encoders.writer import ShardWriter
from fusionrank.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _texts(tmp_path: Path, n: int = 90) -> Path:
    rng = np.random.default_rng(3)
    words = "heat up night city river blood summer murder island ghost".split()
    titles = [" ".join(rng.choice(words, size=int(rng.integers(1, 30)))) for _ in range(n)]
    titles[4] = ""  # an error row among them
    path = tmp_path / "texts.parquet"
    pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": titles}).to_parquet(path)
    return path


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _job(path, out, bert_dir, **kw):
    config = EmbedConfig(
        model=str(bert_dir), fields=("title",), shard_size=40, batch_size=8, quiet=True, **kw
    )
    return embed_catalogue(path, out, config, log=lambda m: None)


def test_length_buckets_keep_the_catalogue_order_and_the_vectors(tmp_path, bert_dir):
    path = _texts(tmp_path)
    bucketed = _job(path, tmp_path / "b", bert_dir)
    plain = _job(path, tmp_path / "p", bert_dir, bucket=False)
    assert (bucketed["bucketing"], plain["bucketing"]) == ("length", "none")
    assert (bucketed["device"], bucketed["cast"]) == ("cpu", "none")
    ids_b, vec_b = read_vectors(tmp_path / "b")
    ids_p, vec_p = read_vectors(tmp_path / "p")
    assert list(ids_b) == list(ids_p) == [f"i{k}" for k in range(90) if k != 4]
    assert _cosines(vec_b, vec_p).min() >= 0.9999
    np.testing.assert_allclose(vec_b, vec_p, atol=1e-5)
    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)))
    texts = pd.read_parquet(path)["title"].tolist()
    np.testing.assert_allclose(vec_b, enc.encode([t for k, t in enumerate(texts) if k != 4]), atol=1e-5)
    # the buckets really reorder (longest first, ties in catalogue order)
    assert batch_order([2, 5, 5, 1], True).tolist() == [1, 2, 0, 3]
    assert batch_order([2, 5, 5, 1], False).tolist() == [0, 1, 2, 3]


def test_text_workers_prepare_pieces_with_the_same_bytes_whatever_their_number(tmp_path, bert_dir):
    """Feeding workers prepare shards in pieces of PIECE_BATCHES batches (bucketed within
    the piece): the bytes depend on the batch size, never on how many workers run, and the
    vectors are those of the inline path (whole shards) up to float rounding."""
    path = _texts(tmp_path)
    _job(path, tmp_path / "inline", bert_dir)
    _job(path, tmp_path / "one", bert_dir, workers=1)
    _job(path, tmp_path / "two", bert_dir, workers=2)
    for name in ("vectors-00000.parquet", "vectors-00002.parquet", "errors.parquet"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    ids_i, vec_i = read_vectors(tmp_path / "inline")
    ids_w, vec_w = read_vectors(tmp_path / "two")
    assert list(ids_i) == list(ids_w) == [f"i{k}" for k in range(90) if k != 4]
    np.testing.assert_allclose(vec_w, vec_i, atol=1e-5)
    assert (tmp_path / "inline" / "errors.parquet").read_bytes() == (
        tmp_path / "two" / "errors.parquet"
    ).read_bytes()


def test_pieces_cover_each_shard_in_order():
    shards = [Shard(0, 0, 40), Shard(1, 40, 45), Shard(2, 45, 45)]
    got = [(s.index, p.start, p.stop, last) for s, p, last in pieces(shards, 16)]
    assert got == [
        (0, 0, 16, False),
        (0, 16, 32, False),
        (0, 32, 40, True),
        (1, 40, 45, True),
        (2, 45, 45, True),
    ]


@pytest.mark.parametrize("left", [False, True])
def test_pad_ids_equals_the_tokenizers_pad(bert_dir, left):
    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)))
    ids = enc.tokenize(["a b c", "x", "a much longer text about nothing at all", "Heat (1995)"])
    enc.tokenizer.padding_side = "left" if left else "right"
    ref = enc.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    mine = pad_ids(ids, enc.tokenizer.pad_token_id, left)
    assert set(mine) == {"input_ids", "attention_mask"}
    for key in mine:
        assert mine[key].dtype == ref[key].dtype and torch.equal(mine[key], ref[key]), key


def _shards(n: int = 4, dim: int = 3) -> list[Shard]:
    rng = np.random.default_rng(0)
    shards = []
    for i in range(n):
        s = Shard(i, 5 * i, 5 * i + 5)
        s.vectors = {r: rng.standard_normal(dim).astype(np.float32) for r in range(s.start, s.stop) if r % 4}
        s.errors = [(r, "empty text") for r in range(s.start, s.stop) if not r % 4]
        shards.append(s)
    return shards


def test_the_background_writer_writes_the_same_bytes(tmp_path):
    ids = [f"id{r}" for r in range(20)]
    (tmp_path / "a" / ".errors").mkdir(parents=True)
    (tmp_path / "b" / ".errors").mkdir(parents=True)
    for s in _shards():
        finish_shard(tmp_path / "a", s, ids[s.start : s.stop], 3)
    with ShardWriter(tmp_path / "b", 3) as writer:
        for s in _shards():
            writer.submit(s, ids[s.start : s.stop])
    assert writer.counts == [15, 5]
    for i in range(4):
        for part in (shard_path, errors_part):
            assert part(tmp_path / "a", i).read_bytes() == part(tmp_path / "b", i).read_bytes()


def test_a_failed_write_is_raised_not_waited_on(tmp_path):
    def write(out, shard, ids, dim):
        if shard.index == 1:
            raise OSError("disk full")
        return finish_shard(out, shard, ids, dim)

    (tmp_path / ".errors").mkdir()
    outcome: list[BaseException] = []

    def job():
        try:
            with ShardWriter(tmp_path, 3, write=write) as writer:
                for s in _shards(6):
                    writer.submit(s, [f"id{r}" for r in range(s.start, s.stop)])
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the writer hung"
    assert [str(e) for e in outcome] == ["disk full"]
    assert shard_path(tmp_path, 0).exists() and not shard_path(tmp_path, 1).exists()


def test_a_write_failure_stops_the_job_with_its_error(tmp_path, bert_dir, monkeypatch):
    import fusionrank.encoders.job as job

    def refuse(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(job, "write_vectors", refuse)
    with pytest.raises(OSError, match="no space left"):
        _job(_texts(tmp_path), tmp_path / "o", bert_dir)
    assert not (tmp_path / "o" / "manifest.json").exists()


def _images(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(1)
    names = []
    for k in range(7):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(root / f"{k}.jpg")
        names.append(f"{k}.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(root / "p.png")
    data = (root / "0.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 3])
    (root / "text.jpg").write_text("not an image")
    names += ["p.png", "broken.jpg", "text.jpg", "nope.jpg"]
    path = tmp_path / "images.parquet"
    pd.DataFrame({"item_id": [f"i{k}" for k in range(len(names))], "image": names}).to_parquet(path)
    return path, root


def _image_job(path, root, out, weights):
    config = EmbedConfig(
        encoder="image",
        model="resnet18",
        weights=str(weights),
        image_column="image",
        image_root=str(root),
        batch_size=4,
        shard_size=6,
        workers=0,
        quiet=True,
    )
    return embed_catalogue(path, out, config, log=lambda m: None)


def test_a_refusing_gpu_decoder_loses_no_row(tmp_path, monkeypatch):
    """The GPU JPEG path on the CPU: a decoder that refuses everything sends every file to
    PIL, so the rows, the errors and the vectors are the PIL path's."""
    weights = save_tiny_resnet(tmp_path / "r18.safetensors")
    path, root = _images(tmp_path)
    pil = _image_job(path, root, tmp_path / "pil", weights)
    assert pil["decoder"] == "pil"
    calls = []

    def refuse(data, device):
        calls.append(len(data))
        raise RuntimeError("nvjpeg: unsupported")

    monkeypatch.setattr(decoding, "choose_decoder", lambda device, encoder: "nvjpeg")
    monkeypatch.setattr(decoding, "decode_jpegs", refuse)
    gpu = _image_job(path, root, tmp_path / "gpu", weights)
    assert gpu["decoder"] == "nvjpeg" and calls, calls
    assert (gpu["rows"], gpu["errors"]) == (pil["rows"], pil["errors"]) == (8, 3)
    ids_a, vec_a = read_vectors(tmp_path / "pil")
    ids_b, vec_b = read_vectors(tmp_path / "gpu")
    assert list(ids_a) == list(ids_b)
    np.testing.assert_allclose(vec_b, vec_a, atol=1e-6)
    errors = pd.read_parquet(tmp_path / "gpu" / "errors.parquet").set_index("item_id")["reason"]
    assert errors["i9"].startswith("unreadable image 'text.jpg'") and errors["i10"].startswith("missing")


def test_the_gpu_pixel_path_matches_the_encoders_preprocessing(tmp_path):
    """torchvision's JPEG decoder (here on the CPU) with the GPU's resize, crop and
    normalisation: close to PIL with the encoder's transform; a PNG and a broken JPEG go to
    PIL, which keeps the PNG and refuses the broken file."""
    weights = save_tiny_resnet(tmp_path / "r18.safetensors")
    enc = ImageEncoder(ImageEncoderConfig("resnet18", str(weights)))
    spec = decoding.pixel_spec(enc.preprocess)
    assert spec is not None and spec.crop == (224, 224) and spec.resize == 256  # resnet18: V1 weights
    _, root = _images(tmp_path)
    names = ["0.jpg", "p.png", "1.jpg", "text.jpg", "2.jpg"]
    items = [
        (k, torch.frombuffer(bytearray((root / n).read_bytes()), dtype=torch.uint8), n)
        for k, n in enumerate(names)
    ]
    rows, pixels, bad = decoding.gpu_batch(items, spec, torch.device("cpu"), enc.preprocess)
    assert sorted(rows) == [0, 1, 2, 4] and [r for r, _ in bad] == [3]
    assert pixels is not None and pixels.shape == (4, 3, 224, 224)
    for row, got in zip(rows, pixels):
        with Image.open(root / names[row]) as im:
            ref = enc.preprocess(im.convert("RGB"))
        if names[row].endswith(".png"):
            assert torch.equal(got, ref)  # decoded by PIL: the CPU path exactly
        else:
            assert (got - ref).abs().mean() < 0.02, (got - ref).abs().mean()  # a wrong resize: 0.2


def test_bf16_with_weights_cast_stays_close_to_fp32(bert_dir):
    texts = ["Heat (1995) Action Crime", "a long text " * 20, "Up", "Toy Story (1995) Animation"]
    fp32 = TextEncoder(TextEncoderConfig(model=str(bert_dir))).encode(texts)
    cast = TextEncoder(TextEncoderConfig(model=str(bert_dir), precision="bf16", cast="weights"))
    auto = TextEncoder(TextEncoderConfig(model=str(bert_dir), precision="bf16"))
    assert cast.cast == "weights" and next(cast.model.parameters()).dtype == torch.bfloat16
    assert auto.cast == "autocast" and next(auto.model.parameters()).dtype == torch.float32
    vectors = cast.encode(texts)
    assert vectors.dtype == np.float32
    assert _cosines(vectors, fp32).min() >= 0.999, _cosines(vectors, fp32)
    assert (
        resolve_cast("auto", "bf16", "cuda") == "weights" and resolve_cast("auto", "fp32", "cuda") == "none"
    )
    with pytest.raises(ValueError, match="cast must be one of"):
        TextEncoderConfig(cast="always")


def test_a_4d_padding_mask_gives_the_2d_masks_vectors(bert_dir):
    """On CUDA the text encoder hands SDPA a (batch, 1, 1, seq) boolean mask (no host wait
    in transformers' mask check); on the same batch it must give the 2-D mask's vectors."""
    from fusionrank.encoders.text import attention_mask_4d, sdpa_model

    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)))
    assert sdpa_model(enc.model) and not enc.mask_4d  # the CPU keeps the 2-D mask
    batch = enc.collate(
        enc.tokenize(["a b c", "x", "a much longer text about nothing at all", "Heat (1995)"])
    )
    plain = enc.forward(batch)
    enc.mask_4d = True
    four = enc.forward(batch)
    assert attention_mask_4d(batch)["attention_mask"].shape == (4, 1, 1, batch["input_ids"].shape[1])
    torch.testing.assert_close(four, plain, atol=1e-6, rtol=1e-5)


def test_images_of_several_sizes_are_resized_per_size_in_their_order():
    spec = decoding.PixelSpec(resize=32, crop=(28, 28), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        for shape in [(3, 40, 50), (3, 64, 48), (3, 40, 50), (3, 32, 32), (3, 64, 48)]
    ]
    got = decoding.batch_pixels(images, spec)
    want = torch.stack([decoding.to_pixels(im, spec) for im in images])
    assert got.shape == (5, 3, 28, 28)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mask_4d", [False, True])
def test_padding_a_batch_to_a_graph_shape_keeps_its_vectors(bert_dir, mask_4d):
    """CUDA graphs run batches padded to a power-of-two rows and a multiple of the length
    step: the real rows' vectors must not move (the padding is masked out)."""
    from fusionrank.encoders.graphs import pow2_rows

    assert [pow2_rows(n) for n in (1, 2, 3, 5, 8, 200, 256)] == [1, 2, 4, 8, 8, 256, 256]
    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)))
    enc.mask_4d = mask_4d
    batch = enc.collate(enc.tokenize(["a b c", "x", "a much longer text about nothing at all"]))
    padded = enc._graph_shape(batch)
    assert padded["input_ids"].shape == (4, 16) and padded["attention_mask"][3].tolist() == [1] + [0] * 15
    with torch.inference_mode():
        got = enc._forward(padded)[:3]
        want = enc._forward(batch)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(InvalidArgumentError, match="CUDA graphs"):
        enc.use_cuda_graphs()  # on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_forward_replays_the_eager_vectors(bert_dir):
    enc = TextEncoder(TextEncoderConfig(model=str(bert_dir)), device="cuda")
    batch = enc.collate(enc.tokenize(["a b c", "x", "a much longer text about nothing at all"]))
    want = enc.forward(batch).clone()
    enc.use_cuda_graphs()
    for _ in range(3):
        torch.testing.assert_close(enc.forward(batch), want, atol=1e-5, rtol=1e-4)
    assert enc.graphed is not None and len(enc.graphed.graphs) == 1
