"""The conformance kit: every registered model keeps the one model contract.

For each name in ``fr.list_models()``: the config round-trips through the settings
validator; ``fit(split)`` gives float32 scores of shape (users, items) with batch scores
equal to single-user scores; save/load keeps the scores identical; the same seed gives the
same scores; a refit on other data really refits; ``recommend`` returns external ids with
seen items excluded; an unknown user gets a clear error or the model's cold-start path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import fusionrank as fr
from fusionrank.data.profile import DatasetProfile
from fusionrank.encoders.vectors import write_vector_folder
from fusionrank.settings import SettingsError, build_settings

N_USERS, N_ITEMS, BLOCKS = 48, 32, 4
FAST = {
    "bpr": {"epochs": 3, "dim": 8},
    "neumf": {"epochs": 2, "dim": 8, "hidden": [16, 8]},
    "lightgcn": {"epochs": 3, "dim": 8},
    "sasrec": {"epochs": 2, "dim": 16, "inner": 32, "max_len": 10},
    "hybrid": {"epochs": 2, "hidden": 16},
    "two-tower": {"epochs": 2, "dim": 8, "hidden": 16},
    "profile": {"epochs": 2},
    "cross-domain": {"epochs": 2, "dim": 8},
    "emcdr": {"epochs": 5, "hidden": 8},
    "itemknn": {"k": 10},
    "userknn": {"k": 10},
    "rp3beta": {"k": 10},
    "ease": {"reg": 10.0},
}
COLD_USER_MODELS = {"profile", "demographic-pop"}
IGNORES_DATA = {"random"}  # a seeded reference: the same scores whatever it is fitted on


def planted_dataset(folder, seed: int) -> fr.Dataset:
    """Users of taste t like block t's items and some of block t + 2's; items of blocks 0-1
    are in domain A, 2-3 in domain B; content is the block plus noise; side features follow
    the taste."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for u in range(N_USERS):
        taste = u % BLOCKS
        for i in range(N_ITEMS):
            block = i % BLOCKS
            if (block == taste and rng.random() < 0.6) or (
                block == (taste + 2) % BLOCKS and rng.random() < 0.3
            ):
                t += int(rng.integers(1, 50))
                rows.append((f"u{u}", f"i{i}", float(t)))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    genres = [["Action", "Comedy", "Drama", "Sci-Fi"][i % BLOCKS] for i in range(N_ITEMS)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "genre": genres})
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "age": [20 + 10 * (u % BLOCKS) for u in range(N_USERS)],
            "job": [["a", "b", "c", "d"][u % BLOCKS] for u in range(N_USERS)],
        }
    )
    content = np.eye(BLOCKS, dtype=np.float32)[np.arange(N_ITEMS) % BLOCKS]
    content = content + 0.2 * rng.normal(size=content.shape).astype(np.float32)
    write_vector_folder(
        folder / "text", items["item_id"], content, encoder="planted", weights={}, normalised=False
    )
    profile = DatasetProfile.from_json(
        {
            "genres": "genre",
            "domains": {"A": ["Action", "Comedy"], "B": ["Drama", "Sci-Fi"]},
            "user_features": ["age", "job"],
            "user_buckets": {"age": [25, 35, 45]},
            "vectors": {"text": str(folder / "text")},
        }
    )
    return fr.Dataset.from_files(
        events, items, users, columns={"timestamp": "timestamp"}, profile=profile, cache_dir=folder
    )


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    first = planted_dataset(folder / "a", seed=0)
    other = planted_dataset(folder / "b", seed=1)
    return fr.split(first, "ratio", seed=1), fr.split(other, "ratio", seed=1)


def build(name: str) -> fr.Recommender:
    settings = dict(FAST.get(name, {}))
    if "progress" in {f.name for f in dataclasses.fields(fr.list_models()[name])}:
        settings["progress"] = False
    return fr.build_model(name, **settings)


@pytest.mark.parametrize("name", sorted(fr.list_models()))
def test_every_model_keeps_the_contract(name, splits, tmp_path):
    split, other = splits
    model = build(name)
    config_class = fr.list_models()[name]
    assert build_settings(config_class, dataclasses.asdict(model.config), owner=name) == model.config
    model.fit(split)
    users = np.arange(split.n_users)
    scores = np.asarray(model.score(users))
    assert scores.shape == (split.n_users, split.n_items) and scores.dtype == np.float32
    np.testing.assert_allclose(model.score(users[5:6]), scores[5:6], rtol=1e-5, atol=1e-6)  # batch == single
    finite = np.isfinite(scores)
    assert finite.any(axis=1).all(), "every user gets some scored items"

    # save -> load keeps the scores, the name and the config
    folder = model.save(tmp_path / "model")
    loaded = fr.load_model(folder)
    assert type(loaded) is type(model) and loaded.name == name and loaded.config == model.config
    np.testing.assert_array_equal(np.asarray(loaded.score(users)), scores)
    recs = model.recommend(["u3", "u7"], k=5)
    pd.testing.assert_frame_equal(loaded.recommend(["u3", "u7"], k=5), recs)

    # recommend: external ids, ranks 1..k per user in the order asked, seen items excluded
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert list(dict.fromkeys(recs["user_id"])) == ["u3", "u7"]
    assert recs.groupby("user_id")["rank"].apply(list).tolist() == [[1, 2, 3, 4, 5]] * 2
    seen = set(split.train.loc[split.train["user_id"] == "u3", "item_id"])
    seen |= set(split.valid.loc[split.valid["user_id"] == "u3", "item_id"])
    assert not seen & set(recs.loc[recs["user_id"] == "u3", "item_id"])
    assert recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()

    # an unknown user: a clear error naming the model, or the cold-start path
    if name in COLD_USER_MODELS:
        with pytest.raises(fr.UnknownUserError, match="side features"):
            model.recommend(
                ["nobody"], k=3, user_features=pd.DataFrame({"user_id": ["else"], "age": [30], "job": ["b"]})
            )
        cold = model.recommend(
            ["nobody"], k=3, user_features=pd.DataFrame({"user_id": ["nobody"], "age": [30], "job": ["b"]})
        )
        assert len(cold) == 3 and set(cold["user_id"]) == {"nobody"}
    else:
        with pytest.raises(fr.UnknownUserError, match=f"{name}.*no cold-start path"):
            model.recommend(["nobody"], k=3)

    # the same seed gives the same scores; a refit on other data really refits
    np.testing.assert_array_equal(np.asarray(build(name).fit(split).score(users)), scores)
    if name not in IGNORES_DATA:
        refit = np.asarray(model.fit(other).score(users))
        assert not np.array_equal(refit, scores)
    result = fr.evaluate(build(name).fit(split), split, ks=(5,))
    assert 0 <= result.metrics["ndcg@5"] <= 1 and len(result.per_user) == result.n_users


def test_unknown_settings_name_the_key_and_the_model():
    with pytest.raises(SettingsError, match=r"bpr: layers: unknown setting"):
        fr.build_model("bpr", layers=3)
    with pytest.raises(SettingsError, match=r"lightgcn: epochs: expected an integer"):
        fr.build_model("lightgcn", epochs="many")
    with pytest.raises(SettingsError, match="negatives: expected one of"):
        fr.build_model("bpr", negatives="hard")
    with pytest.raises(ValueError, match="unknown model 'gru4rec'"):
        fr.build_model("gru4rec")
    assert fr.build_model("neumf", dim=16).config.mlp_dim == 16


def test_a_user_model_plugs_in_by_dotted_path(splits, tmp_path):
    split, _ = splits
    model = fr.build_model("tests_plugin.MostRecent", boost=2.0)
    assert fr.evaluate(model.fit(split), split, ks=(5,)).metrics["ndcg@5"] >= 0
    folder = model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="refusing to import"):
        fr.load_model(folder)
    from tests_plugin import MostRecent

    np.testing.assert_array_equal(
        fr.load_model(folder, MostRecent).score(np.arange(3)), model.score(np.arange(3))
    )


def test_evaluate_refuses_a_model_fitted_on_another_split(splits):
    from helpers import split_of

    split, _ = splits
    model = fr.build_model("pop").fit(split_of(np.eye(3)))
    with pytest.raises(ValueError, match="another split"):
        fr.evaluate(model, split)
    with pytest.raises(RuntimeError, match="not fitted"):
        fr.evaluate(fr.build_model("pop"), split)


def test_every_registered_model_is_a_source_of_the_ranking_pipeline(splits, tmp_path):
    """One contract: any registered model can be fitted, scored, retrieved from and turned
    into features by ``fusionrank run`` (here all of them at once, on own Parquet files)."""
    from fusionrank.pipelines.config import ConfigError, parse_run_config
    from fusionrank.pipelines.run import run_pipeline

    data = splits[0].dataset
    data.interactions.to_parquet(tmp_path / "events.parquet")
    data.items.to_parquet(tmp_path / "items.parquet")
    data.users.to_parquet(tmp_path / "users.parquet")
    models = {}
    for name in sorted(fr.list_models()):
        settings = dict(FAST.get(name, {}))
        if "progress" in {f.name for f in dataclasses.fields(fr.list_models()[name])}:
            settings["progress"] = False
        models[name] = settings
    raw = {
        "name": "all",
        "out": str(tmp_path / "runs"),
        "dataset": {
            "interactions": "events.parquet",
            "items": "items.parquet",
            "users": "users.parquet",
            "columns": {"timestamp": "timestamp"},
            "profile": data.profile.to_json(),
            "cache_dir": "cache",
        },
        "modalities": ["text"],
        "models": models,
        "retrieval": {"n": 10},
        "ranker": {"n_estimators": 20, "min_child_samples": 5, "early_stopping_rounds": 5},
        "evaluation": {"ks": [5, 10]},
        "ablation": False,
    }
    with pytest.raises(ConfigError, match="evaluation.ks: .*include 10"):
        parse_run_config({**raw, "evaluation": {"ks": [5]}}, "all.yaml", tmp_path)
    out = run_pipeline(parse_run_config(raw, "all.yaml", tmp_path), log=lambda m: None)
    assert set(out.metrics["models"]) == {*models, "ltr"}
    assert set(out.recall["test"]) == {*models, "union"}
    features = pd.read_parquet(out.folder / "features" / "features_test.parquet")
    for name in models:
        assert {f"score_{name}", f"z_{name}", f"rank_{name}"} <= set(features.columns), name
    # the cross-domain sources score their target domain only: missing elsewhere, never -inf
    split = splits[0]
    target = split.item_domains()[features["item_idx"].to_numpy()] == "B"
    for name in ("cross-domain", "emcdr"):
        assert features.loc[~target, f"score_{name}"].isna().all()
        assert np.isfinite(features.loc[target, f"score_{name}"]).all()
    assert 0 <= out.metrics["models"]["ltr"]["metrics"]["ndcg@5"] <= 1
