"""``fusionrank data synth``: a synthetic dataset shaped like real logs, stored through the
own-data path, with its planted ceiling (the oracle) in ``synth.json``.

Sizes are small (2,000 users x 1,000 items x 20,000 events: a mean of 10 per user and ten
items in the top 1%); the statistics bands below hold at this size and are what the
generator's defaults give at larger ones (see the module docstring of
``fusionrank.data.synth``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import fusionrank as fr
from fusionrank.data.dataset import import_dataset
from fusionrank.data.synth import (
    SynthConfig,
    activity_counts,
    oracle_metrics,
    synth_dataset,
    synth_manifest,
    synthesize,
)
from fusionrank.pipelines.cli import app

runner = CliRunner()
SIZE = {"users": 2000, "items": 1000, "interactions": 20_000}
IMAGES = 24
TABLES = ("interactions.parquet", "items.parquet", "users.parquet")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root holding the synthetic dataset ``syn`` (with images)."""
    folder = tmp_path_factory.mktemp("synth")
    synth_dataset("syn", root=folder, images=IMAGES, **SIZE)
    return folder


@pytest.fixture(scope="module")
def ds(root) -> fr.Dataset:
    return fr.load_dataset("syn", root)


def test_counts_match_the_request_exactly(ds):
    inter = ds.interactions
    assert len(inter) == SIZE["interactions"]  # exact: every user's count is drawn, then filled
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert inter["user_id"].nunique() == SIZE["users"]  # every user has events
    assert len(ds.items) == SIZE["items"] and len(ds.users) == SIZE["users"]
    assert set(inter["user_id"]) <= set(ds.users["user_id"])
    assert set(inter["item_id"]) <= set(ds.items["item_id"])
    per_user = inter.groupby("user_id").size()
    assert per_user.min() >= SynthConfig(**SIZE).min_per_user and per_user.max() <= SIZE["items"]


def test_popularity_and_activity_look_like_real_logs(ds, root):
    per_item = ds.interactions["item_id"].value_counts().to_numpy()  # sorted, descending
    top = SIZE["items"] // 100
    share = per_item[:top].sum() / per_item.sum()
    assert 0.15 <= share <= 0.35  # MovieLens-20M: ~20-30% (see the module docstring)
    per_user = ds.interactions.groupby("user_id").size().to_numpy()
    median = np.median(per_user)
    assert per_user.mean() > 1.1 * median and per_user.max() > 5 * median  # a long right tail
    logs = np.log(per_user)
    skew = ((logs - logs.mean()) ** 3).mean() / logs.std() ** 3
    assert skew < ((per_user - per_user.mean()) ** 3).mean() / per_user.std() ** 3 / 3  # log-normal-ish
    stats = synth_manifest("syn", root)["statistics"]
    assert stats["top1pct_item_share"] == pytest.approx(share)
    assert stats["events_per_user"]["p50"] == median and stats["interactions"] == SIZE["interactions"]


def test_timestamps_span_the_period_with_drift(ds):
    config = SynthConfig(**SIZE)
    t = ds.interactions["timestamp"].to_numpy()
    assert t.min() >= config.start_seconds and t.max() <= config.start_seconds + config.period_days * 86400
    assert t.max() - t.min() > 0.9 * config.period_days * 86400
    # items released later are consumed later: the log drifts
    mean_time = ds.interactions.groupby("item_id")["timestamp"].mean()
    year = ds.items.set_index("item_id")["year"].reindex(mean_time.index)
    assert np.corrcoef(year.to_numpy(), mean_time.to_numpy())[0, 1] > 0.5


def test_catalogue_users_and_profile(ds):
    profile = ds.profile
    assert profile.text == "{title}. {description}" and profile.genres == "genres"
    assert profile.user_features == ("age", "gender", "country") and "age" in profile.user_buckets
    items = ds.items
    assert items["title"].str.len().min() > 0 and items["description"].str.split().str.len().min() >= 12
    assert items["genres"].nunique() == SynthConfig(**SIZE).categories
    assert set(ds.users["gender"]) == {"F", "M"} and ds.users["age"].between(13, 80).all()


def test_text_is_tied_to_the_category(ds):
    # words drawn from a category's vocabulary occur (almost) only in that category: they make
    # up about a third of the description words (the rest: style and shared words)
    words = ds.items.assign(word=ds.items["description"].str.lower().str.split()).explode("word")
    counts = words.groupby(["word", "genres"]).size().unstack(fill_value=0)
    purity = counts.max(axis=1) / counts.sum(axis=1)
    share = counts.sum(axis=1)[purity > 0.9].sum() / counts.to_numpy().sum()
    assert 0.25 < share < 0.4


def test_images_are_real_pngs_with_colour_from_the_category(ds, root):
    with_image = ds.items[ds.items["image"].notna()]
    assert len(with_image) == IMAGES
    image_root = Path(ds.profile.image_root)
    assert image_root == (root / "syn" / "images").resolve() and ds.profile.image == "image"
    assert sorted(p.name for p in image_root.iterdir()) == sorted(with_image["image"])
    colours: dict[str, set] = {}
    for _, row in with_image.iterrows():
        path = image_root / row["image"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as img:
            img.load()
            assert img.size == (32, 32) and img.mode == "RGB"
            pixels = np.asarray(img).reshape(-1, 3)
        shape_colour = tuple(pixels[np.argmin(pixels.sum(axis=1))])  # the saturated shape
        colours.setdefault(row["genres"], set()).add(shape_colour)
    assert all(len(c) == 1 for c in colours.values())  # one colour per category
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)


def test_models_sit_between_popularity_and_the_oracle(ds, root):
    split = fr.split(ds, "ratio", seed=2020)
    ease = fr.evaluate(fr.build_model("ease").fit(split), split, ks=(10,)).metrics["ndcg@10"]
    pop = fr.evaluate(fr.build_model("pop").fit(split), split, ks=(10,)).metrics["ndcg@10"]
    oracle = synth_manifest("syn", root)["oracle"]
    assert (oracle["split"], oracle["seed"]) == ("ratio", 2020)
    assert pop < ease < oracle["metrics"]["ndcg@10"]
    assert ease > 1.5 * pop and oracle["metrics"]["ndcg@10"] > 1.2 * ease  # signal, and room above


def test_the_oracle_is_the_planted_ranking(ds, root):
    data = synthesize(SynthConfig(**SIZE, images=IMAGES))  # the same truth again, from the seed
    again = oracle_metrics(ds, data.truth)
    assert again == synth_manifest("syn", root)["oracle"]


def test_side_features_help_cold_users(ds):
    split = fr.split(ds, "cold-users", seed=2020)
    demo = fr.evaluate(fr.build_model("demographic-pop").fit(split), split, ks=(10,)).metrics["ndcg@10"]
    pop = fr.evaluate(fr.build_model("pop").fit(split), split, ks=(10,)).metrics["ndcg@10"]
    assert demo > 1.1 * pop


def test_users_prefer_their_favourite_category():
    data = synthesize(SynthConfig(users=500, items=300, interactions=6000))
    truth = data.truth
    users = data.interactions["user_id"].str[1:].astype(int).to_numpy()
    items = data.interactions["item_id"].str[1:].astype(int).to_numpy()
    in_favourite = (truth.item_category[items] == truth.user_category[users]).mean()
    base = np.mean([(truth.item_category == c).mean() for c in truth.user_category])
    assert in_favourite > 2 * base


def _digests(folder: Path) -> dict[str, str]:
    files = [folder / n for n in (*TABLES, "synth.json")] + sorted((folder / "images").glob("*.png"))
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    small = {"users": 300, "items": 200, "interactions": 3000, "images": 5}
    a = synth_dataset("a", root=tmp_path / "one", seed=7, **small).home
    b = synth_dataset("a", root=tmp_path / "two", seed=7, **small).home
    c = synth_dataset("a", root=tmp_path / "three", seed=8, **small).home
    assert a is not None and b is not None and c is not None
    assert _digests(a) == _digests(b)
    assert all(_digests(a)[n] != _digests(c)[n] for n in TABLES)


def test_images_do_not_change_the_events(tmp_path):
    small = {"users": 200, "items": 100, "interactions": 2000}
    plain = synthesize(SynthConfig(**small)).interactions
    pictured = synthesize(SynthConfig(**small, images=10)).interactions
    pd.testing.assert_frame_equal(plain, pictured)


def test_activity_counts_sum_exactly_and_respect_the_caps():
    rng = np.random.default_rng(3)
    counts = activity_counts(rng, 100, 20, 1900, sigma=2.0, minimum=5)  # most users hit the cap
    assert counts.sum() == 1900 and counts.min() >= 5 and counts.max() == 20
    assert activity_counts(rng, 10, 20, 200, sigma=1.0).tolist() == [20] * 10


def test_cli_generates_and_reports(tmp_path):
    args = ["data", "synth", "--name", "cli", "--users", "120", "--items", "60", "--interactions", "1500"]
    args += ["--seed", "5", "--root", str(tmp_path), "--quiet", "--set", "drift=0"]
    res = runner.invoke(app, [*args, "--images", "3"])
    assert res.exit_code == 0, res.output
    assert "oracle ndcg@10 (ratio, seed 2020)" in res.output
    manifest = json.loads((tmp_path / "cli" / "synth.json").read_text())
    assert manifest["settings"]["drift"] == 0 and manifest["settings"]["seed"] == 5
    assert len(fr.load_dataset("cli", tmp_path).interactions) == 1500
    assert len(list((tmp_path / "cli" / "images").glob("*.png"))) == 3
    res = runner.invoke(app, args)  # again, without images
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "cli" / "images").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--users", "10", "--items", "5", "--interactions", "51"], "exceed users x items (50)"),
        (["--users", "0", "--items", "5", "--interactions", "10"], "users must be at least 1"),
        (["--users", "10", "--items", "5", "--interactions", "20"], "fewer than users x min_per_user"),
        (["--users", "10", "--items", "8", "--interactions", "60", "--set", "nope=1"], "nope: unknown"),
        (["--users", "10", "--items", "8", "--interactions", "60", "--set", "seed=1"], "--seed option"),
        (["--users", "10", "--items", "8", "--interactions", "60", "--images", "9"], "images must be"),
        (["--users", "10", "--items", "8", "--interactions", "60", "--name", "ml-100k"], "plain name"),
    ],
)
def test_cli_bad_arguments_give_one_error_line(tmp_path, extra, message):
    args = ["data", "synth", "--name", "bad", "--root", str(tmp_path), "--quiet", *extra]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert not (tmp_path / "bad").exists()


def test_a_dataset_it_did_not_make_is_never_overwritten(tmp_path):
    events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    import_dataset("shop", events, root=tmp_path)
    args = ["data", "synth", "--name", "shop", "--root", str(tmp_path), "--quiet"]
    res = runner.invoke(app, [*args, "--users", "10", "--items", "8", "--interactions", "60"])
    assert res.exit_code == 2 and "did not make" in res.output
    assert len(fr.load_dataset("shop", tmp_path).interactions) == 2


def test_the_image_encoder_finds_the_images(tmp_path):
    from fusionrank.encoders.tiny import save_tiny_resnet

    synth_dataset("pics", root=tmp_path, users=50, items=30, interactions=600, images=12)
    weights = save_tiny_resnet(tmp_path / "r18.safetensors")
    args = [
        "embed",
        "--dataset",
        "pics",
        "--root",
        str(tmp_path),
        "--encoder",
        "image",
        "--model",
        "resnet18",
    ]
    args += ["--weights", str(weights), "--workers", "0", "--out", str(tmp_path / "img"), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "img" / "manifest.json").read_text())
    assert manifest["rows"] == 12 and manifest["errors"] == 18  # items without an image: one error row each
