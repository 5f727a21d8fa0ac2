"""Every registered model keeps the one model contract: the shipped conformance kit
(:class:`fusionrank.testing.RecommenderTests`) runs on each name in ``fr.list_models()``,
with the project's fast settings and what each model is expected to do (cold users,
data-independent references). The checks themselves live in the kit, so a user runs the
same ones on their own model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import fusionrank as fr
from fusionrank.settings import SettingsError
from fusionrank.testing import ModelSpec, RecommenderTests, planted_dataset

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
    "ials": {"factors": 8, "iterations": 3},
}
COLD_USER_MODELS = {"profile", "demographic-pop"}
IGNORES_DATA = {"random"}  # a seeded reference: the same scores whatever it is fitted on


class TestEveryRegisteredModel(RecommenderTests):
    """The kit once per registered name (test ids end in ``[name]``); each model is fitted
    once for all the checks that only read it."""

    @pytest.fixture(scope="class", params=sorted(fr.list_models()))
    def model_spec(self, request: pytest.FixtureRequest) -> ModelSpec:
        name = request.param
        return ModelSpec(
            name, FAST.get(name, {}), cold_users=name in COLD_USER_MODELS, ignores_data=name in IGNORES_DATA
        )


def test_the_project_tables_name_registered_models():
    """A misspelt name would silently test that model with its slow defaults, or expect the
    wrong unknown-user behaviour of it."""
    assert {*FAST, *COLD_USER_MODELS, *IGNORES_DATA} <= set(fr.list_models())


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    first = planted_dataset(folder / "a", seed=0)
    other = planted_dataset(folder / "b", seed=1)
    return fr.split(first, "ratio", seed=1), fr.split(other, "ratio", seed=1)


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
