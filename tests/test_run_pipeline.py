"""``fusionrank run`` end to end on a small dataset: stages, cache, report, protocol."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fusionrank.collab.mf import BPR
from fusionrank.columns import ITEM_IDX, PART, TEST, TRAIN, USER_IDX
from fusionrank.data.idmap import IdMap
from fusionrank.data.splits import Split, SplitConfig
from fusionrank.io import mark_done, read_json
from fusionrank.pipelines.cli import app
from fusionrank.pipelines.config import ConfigError, load_run_config, parse_run_config
from fusionrank.pipelines.run import run_pipeline
from fusionrank.pipelines.stages.features import retrieve_source
from fusionrank.pipelines.stages.inputs import RunSource
from fusionrank.retrieval.index import IndexConfig, faiss_available

runner = CliRunner()


def _config(tiny_root, tmp_path, **extra):
    raw = {
        "name": "t",
        "dataset": "tiny",
        "root": str(tiny_root),
        "out": str(tmp_path / "runs"),
        "modalities": [],
        "models": {
            "pop": {},
            "itemknn": {"k": 10},
            "ease": {"reg": 10.0},
            "bpr": {"epochs": 3},
        },
        "retrieval": {"n": 15, "sources": ["ease", "itemknn", "bpr"]},
        "ranker": {"n_estimators": 40, "min_child_samples": 5, "early_stopping_rounds": 10},
        "evaluation": {"ks": [5, 10]},
        "ablation": True,
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_writes_metrics_report_plots_and_reuses_stages(tiny_root, tmp_path):
    path = _config(tiny_root, tmp_path)
    lines: list[str] = []
    out = run_pipeline(load_run_config(path), log=lines.append)
    folder = tmp_path / "runs" / "t"
    metrics = read_json(folder / "metrics.json")
    assert set(metrics["models"]) == {"pop", "itemknn", "ease", "bpr", "ltr"}
    assert 0 <= metrics["models"]["ltr"]["metrics"]["ndcg@10"] <= 1
    assert 0 < metrics["candidate_recall"]["test"]["union"] <= 1
    assert any(r["variant"] == "without group sources" for r in metrics["ablation"])
    for name in (
        "report.md",
        "report.html",
        "plots/metrics_by_model.png",
        "plots/ndcg_at_k.png",
        "plots/warm_vs_cold.png",
        "plots/feature_importance.png",
        "ranker/model-0.txt",
    ):
        assert (folder / name).stat().st_size > 0, name
    report = (folder / "report.md").read_text()
    assert "## Protocol" in report and "Ablation" in report
    assert (folder / "plots/metrics_by_model.png").read_bytes()[:4] == b"\x89PNG"
    assert out.importance["gain"].sum() > 0
    # a rerun reuses every stage; a ranker change redoes only the ranker
    lines.clear()
    run_pipeline(load_run_config(path), log=lines.append)
    assert sum("cached" in line for line in lines) == 6  # 4 models, features, ranker
    lines.clear()
    again = run_pipeline(load_run_config(path, {"ranker.learning_rate": 0.1}), log=lines.append)
    assert sum("cached" in line for line in lines) == 5
    assert again.metrics["models"]["ease"] == out.metrics["models"]["ease"]


def test_test_interactions_never_reach_features_or_ranker(tiny_root, tmp_path):
    """Moving test interactions to other items changes nothing but the test metrics."""
    cfg = parse_run_config(yaml.safe_load(_config(tiny_root, tmp_path).read_text()) | {"ablation": False})
    first = run_pipeline(cfg, log=lambda m: None)
    folder = tiny_root / "tiny" / "splits" / SplitConfig().name
    table = pd.read_parquet(folder / "split.parquet")
    test = table[PART] == TEST
    items = sorted(table["item_id"].unique())
    table.loc[test, "item_id"] = [
        items[(items.index(i) + 7) % len(items)] for i in table.loc[test, "item_id"]
    ]
    table.to_parquet(folder / "split.parquet", index=False)
    mark_done(folder, SplitConfig().name)  # a saved split whose test part differs, not a damaged one
    cfg2 = dataclasses.replace(cfg, out=str(tmp_path / "runs2"))
    second = run_pipeline(cfg2, log=lambda m: None)
    f1 = pd.read_parquet(first.folder / "features" / "features_test.parquet")
    f2 = pd.read_parquet(second.folder / "features" / "features_test.parquet")
    pd.testing.assert_frame_equal(f1, f2)
    v1 = pd.read_parquet(first.folder / "features" / "features_valid.parquet")
    v2 = pd.read_parquet(second.folder / "features" / "features_valid.parquet")
    pd.testing.assert_frame_equal(v1, v2)
    assert (first.folder / "ranker" / "model-0.txt").read_text() == (
        second.folder / "ranker" / "model-0.txt"
    ).read_text()
    assert first.metrics["models"]["ltr"]["metrics"] != second.metrics["models"]["ltr"]["metrics"]
    assert {USER_IDX, ITEM_IDX} <= set(f1.columns) and "label" not in f1.columns


def test_config_errors_name_the_file_and_key(tmp_path, tiny_root):
    path = _config(tiny_root, tmp_path, ranker={"learnig_rate": 0.1})
    with pytest.raises(ConfigError, match=r"run.yaml: ranker.learnig_rate: unknown setting"):
        load_run_config(path)
    path = _config(tiny_root, tmp_path, retrieval={"sources": ["lightgcn"]})
    with pytest.raises(ConfigError, match="retrieval.sources: 'lightgcn' is not among models"):
        load_run_config(path)
    with pytest.raises(ConfigError, match="models.nope: unknown model 'nope'"):
        parse_run_config({"name": "x", "dataset": "d", "models": {"nope": {}}})
    with pytest.raises(ConfigError, match=r"models.bpr: epochz: unknown setting"):
        parse_run_config({"name": "x", "dataset": "d", "models": {"bpr": {"epochz": 3}}})
    with pytest.raises(ConfigError, match="retrieval.n: expected an integer"):
        parse_run_config({"name": "x", "dataset": "d", "models": {"pop": {}}, "retrieval": {"n": "many"}})
    with pytest.raises(ConfigError, match="dataset: required"):
        parse_run_config({"name": "x", "models": {"pop": {}}})
    with pytest.raises(ConfigError, match="dataset.columns"):
        parse_run_config(
            {"name": "x", "models": {"pop": {}}, "dataset": {"interactions": "e.csv", "columns": 3}}
        )
    res = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "no such config file" in res.output


def test_cli_run_prints_the_table(tiny_root, tmp_path):
    path = _config(tiny_root, tmp_path, ablation=False)
    res = runner.invoke(app, ["run", str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "ltr" in res.output and "vs " in res.output and "report:" in res.output


@pytest.mark.parametrize("linear_tree", [False, True], ids=["constant-leaves", "linear-leaves"])
def test_recommend_from_a_run_explains_with_ranker_contributions(tiny_root, tmp_path, linear_tree):
    from fusionrank.pipelines.recommend import recommend
    from fusionrank.ranker.lgbm import LTRRanker

    ranker = {
        "n_estimators": 40,
        "min_child_samples": 5,
        "early_stopping_rounds": 10,
        "linear_tree": linear_tree,
    }
    config = load_run_config(_config(tiny_root, tmp_path, ablation=False, ranker=ranker))
    out = run_pipeline(config, log=lambda m: None)
    table = recommend(out.folder, "u3", 5, tiny_root, explain=True)
    assert table.attrs["source"] == "LightGBM ranker" and len(table) == 5
    assert table["score"].is_monotonic_decreasing
    # the reasons are the largest contributions of that row
    fitted = LTRRanker.load(out.folder / "ranker")
    assert fitted.config.linear_tree is linear_tree
    rows = pd.read_parquet(out.folder / "features" / "features_test.parquet")
    u = IdMap.load(out.folder / "users.parquet").to_index(["u3"])[0]
    mine = rows[rows[USER_IDX] == u].reset_index(drop=True)
    best = int(np.argmax(fitted.predict(mine)))
    contrib = fitted.contributions(mine.iloc[[best]]).drop(columns="bias").iloc[0]
    top_feature = contrib.abs().idxmax()
    assert table.loc[0, "why"].startswith(f"{top_feature} ")
    res = runner.invoke(
        app, ["recommend", "--run", str(out.folder), "--user", "u3", "--root", str(tiny_root), "--explain"]
    )
    assert res.exit_code == 0 and "why" in res.output
    # a run folder whose saved config has a setting this version does not know (written
    # by another version) is refused in one line that names the key and what to do
    config = json.loads((out.folder / "config.json").read_text())
    config["features"]["rank_depth"] = 100
    (out.folder / "config.json").write_text(json.dumps(config))
    args = ["recommend", "--run", str(out.folder), "--user", "u3", "--root", str(tiny_root)]
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1, res.output
    assert "features.rank_depth: unknown setting" in res.output and "fusionrank run CONFIG" in res.output


def test_recommend_new_items_from_text(tiny_root, tmp_path):
    from fusionrank.data.errors import DataError
    from fusionrank.pipelines.recommend import recommend

    out = run_pipeline(load_run_config(_config(tiny_root, tmp_path, ablation=False)), log=lambda m: None)
    path = tmp_path / "new.csv"
    path.write_text("item_id,movie_title,class\nn1,Film number 3 again,Drama Sci-Fi\nn2,Another one,Comedy\n")
    table = recommend(out.folder, "u3", 2, tiny_root, new_items=path)
    from fusionrank.registry import DEFAULT_MODELS

    new_items_model = DEFAULT_MODELS["new items"][0]
    assert set(table["item_id"]) == {"n1", "n2"} and new_items_model in table.attrs["source"]
    assert table["title"].tolist()[0] in {"Film number 3 again", "Another one"}
    assert table.attrs["warnings"] == []  # both rows give genres the catalogue knows
    path.write_text("item_id,movie_title,class\nn1,Film number 3 again,\nn2,Another one,Comedy\n")
    (warning,) = recommend(out.folder, "u3", 2, tiny_root, new_items=path).attrs["warnings"]
    assert warning.startswith("new.csv row 1, column class: no genres given")
    path.write_text("item_id,movie_title,class\nn1,Fine,Drama\nn2,,\n")
    with pytest.raises(DataError, match=r"row 2"):
        recommend(out.folder, "u3", 2, tiny_root, new_items=path)
    with pytest.raises(ValueError, match="no history"):
        recommend(out.folder, "ghost", 2, tiny_root, new_items=tmp_path / "new.csv")


@pytest.mark.skipif(not faiss_available(), reason="FAISS is an optional extra")
def test_faiss_retrieval_in_the_pipeline_matches_exact(tiny_root, tmp_path):
    """BPR's candidates through a FAISS flat index (bias folded in) equal exact top-k."""
    cfg = load_run_config(_config(tiny_root, tmp_path))
    out = run_pipeline(dataclasses.replace(cfg, ablation=False), log=lambda m: None)
    bpr = BPR.load(out.folder / "models" / "bpr" / "model")
    split = Split.load(tiny_root / "tiny" / "splits" / SplitConfig().name)
    train = split.matrix(TRAIN)
    users = np.arange(split.n_users)
    exact = retrieve_source(bpr, users, 10, train, cfg.retrieval.index)
    flat = retrieve_source(bpr, users, 10, train, IndexConfig(kind="flat"))
    pd.testing.assert_frame_equal(
        exact.reset_index(drop=True), flat.astype(exact.dtypes.to_dict()).reset_index(drop=True)
    )


def test_split_views_refit_and_fold_the_training_interactions(tiny_root):
    from fusionrank.data.dataset import load_dataset
    from fusionrank.data.splits import SplitView, fold_of, prepare_split

    split = prepare_split(load_dataset("tiny", tiny_root), SplitConfig(kind="ratio", seed=1))
    refit = SplitView("refit").of(split)
    assert len(refit.train) == len(split.train) + len(split.valid) and len(refit.valid) == 0
    assert refit.users is split.users and refit.test is split.test
    folds = fold_of(split.train, 3, seed=1, temporal=False)
    per_user = (
        pd.Series(folds).groupby(split.train[USER_IDX].to_numpy()).agg(lambda f: np.bincount(f, minlength=3))
    )
    assert all(c.max() - c.min() <= 1 for c in per_user)  # near-equal parts per user
    view = SplitView("fold", 1, 3, seed=1).of(split)
    assert len(view.train) + len(view.valid) == len(split.train) and len(view.valid) == (folds == 1).sum()
    timed = prepare_split(load_dataset("tiny", tiny_root), SplitConfig(kind="temporal-ratio", seed=1))
    later = SplitView("fold", 2, 3).of(timed)  # fits on the two earlier parts, labels the last
    first_held = later.valid.groupby(USER_IDX)["timestamp"].min()
    last_fit = later.train.groupby(USER_IDX)["timestamp"].max()
    both = first_held.index.intersection(last_fit.index)
    assert (last_fit[both] <= first_held[both]).all()
    with pytest.raises(ValueError, match="fold 3 of 3"):
        SplitView("fold", 3, 3)


def test_a_fold_fitted_with_valid_holds_valid_as_history_never_as_labels(tiny_root):
    from fusionrank.data.dataset import load_dataset
    from fusionrank.data.splits import SplitView, prepare_split

    split = prepare_split(load_dataset("tiny", tiny_root), SplitConfig(kind="ratio", seed=1))
    plain = SplitView("fold", 1, 4, seed=1).of(split)
    view = SplitView("fold", 1, 4, seed=1, with_valid=True)
    seen = view.of(split)
    assert view.name == "fold1of4v" and SplitView("fold", 1, 4, seed=1).name == "fold1of4"
    pairs = lambda frame: set(zip(frame[USER_IDX], frame[ITEM_IDX]))  # noqa: E731
    assert pairs(seen.valid) == pairs(plain.valid)  # the same labels: one fold of train
    assert pairs(seen.train) == pairs(plain.train) | pairs(split.valid)  # valid joins the fit
    assert not pairs(seen.train) & pairs(seen.valid) and not pairs(seen.train) & pairs(split.test)
    assert len(seen.train) == len(split.train) + len(split.valid) - len(seen.valid)
    timed = prepare_split(load_dataset("tiny", tiny_root), SplitConfig(kind="temporal-ratio", seed=1))
    with pytest.raises(ValueError, match="follows it in time"):
        view.of(timed)
    with pytest.raises(ValueError, match="with_valid"):
        SplitView("refit", with_valid=True)


def test_stacked_labels_and_refit_before_test(tiny_root, tmp_path):
    path = _config(tiny_root, tmp_path, protocol={"labels": "stacked", "folds": 3, "refit": True})
    lines: list[str] = []
    out = run_pipeline(load_run_config(path), log=lines.append)
    folder = out.folder
    assert out.metrics["protocol"] == "stacked-3+refit"
    for view in ("refit", "fold0of3", "fold1of3", "fold2of3"):
        assert (folder / f"models_{view}" / "bpr" / "model" / "config.json").exists(), view
    for table in ("valid", "fold0of3", "fold1of3", "fold2of3", "test"):
        assert (folder / "features" / f"features_{table}.parquet").exists(), table
    assert set(out.metrics["candidate_recall"]) == {"valid", "fold0of3", "fold1of3", "fold2of3", "test"}
    # the single models are measured as refit on train + valid: what the refit folder says
    refit_ease = read_json(folder / "models_refit" / "ease" / "metrics.json")
    assert out.metrics["models"]["ease"]["metrics"] == refit_ease["metrics"]
    assert (
        out.metrics["models"]["ease"]["metrics"]
        != read_json(folder / "models" / "ease" / "metrics.json")["metrics"]
    )
    # bpr refits with the epochs it chose on valid, without early stopping
    chosen = read_json(folder / "models" / "bpr" / "model" / "config.json")["history"]["best_epoch"]
    refit_bpr = read_json(folder / "models_refit" / "bpr" / "model" / "config.json")
    assert refit_bpr["config"]["epochs"] == max(1, chosen) and refit_bpr["config"]["validation"] is False
    assert any("stacked labels" in line for line in lines)
    ltr = out.metrics["models"]["ltr"]
    assert 0 <= ltr["metrics"]["ndcg@10"] <= 1
    without = sum(
        int(
            (
                pd.read_parquet(folder / "features" / f"features_{t}.parquet")
                .groupby(USER_IDX)["label"]
                .sum()
                == 0
            ).sum()
        )
        for t in ("valid", "fold0of3", "fold1of3", "fold2of3")
    )
    assert ltr["dropped_groups"] == without
    headroom = out.metrics["candidate_headroom"]
    assert ltr["metrics"]["ndcg@10"] <= headroom["test"] <= 1
    assert "stacked-3+refit" in (folder / "report.md").read_text()


def test_stacked_labels_from_some_folds_fitted_with_valid(tiny_root, tmp_path):
    protocol = {"labels": "stacked", "folds": 4, "fold_fit": "train+valid", "fold_tables": 2}
    path = _config(tiny_root, tmp_path, protocol=protocol, ablation=False)
    lines: list[str] = []
    out = run_pipeline(load_run_config(path), log=lines.append)
    folder = out.folder
    assert out.metrics["protocol"] == "stacked-2of4+valid"
    assert sorted(p.name for p in folder.glob("models_*")) == ["models_fold0of4v", "models_fold1of4v"]
    tables = sorted(p.name for p in (folder / "features").glob("features_*.parquet"))
    assert tables == [
        "features_fold0of4v.parquet",
        "features_fold1of4v.parquet",
        "features_test.parquet",
        "features_valid.parquet",
    ]
    # valid's interactions are history in a fold's table: never among its candidates
    split = RunSource("tiny", str(tiny_root), SplitConfig()).open()[1]
    valid_pairs = set(zip(split.valid[USER_IDX], split.valid[ITEM_IDX]))
    fold = pd.read_parquet(folder / "features" / "features_fold0of4v.parquet", columns=[USER_IDX, ITEM_IDX])
    assert valid_pairs and not valid_pairs & set(zip(fold[USER_IDX], fold[ITEM_IDX]))
    assert any("stacked labels" in line for line in lines)
    assert 0 <= out.metrics["models"]["ltr"]["metrics"]["ndcg@10"] <= 1
    report = (folder / "report.md").read_text()
    assert "stacked-2of4+valid" in report and "Fold models see valid" in report


@pytest.mark.parametrize(
    ("protocol", "split", "message"),
    [
        ({"labels": "stacked", "folds": 4, "fold_tables": 5}, {}, "fold_tables must be between 1 and folds"),
        ({"labels": "stacked", "fold_tables": 0}, {}, "fold_tables must be between 1 and folds"),
        ({"labels": "stacked", "fold_fit": "valid"}, {}, "fold_fit"),
        (
            {"labels": "stacked", "fold_fit": "train+valid"},
            {"kind": "temporal-ratio"},
            "protocol.fold_fit: train\\+valid would fit each fold on valid",
        ),
    ],
)
def test_bad_fold_settings_are_refused_in_one_line(tiny_root, tmp_path, protocol, split, message):
    path = _config(tiny_root, tmp_path, protocol=protocol, split=split)
    with pytest.raises(ValueError, match=message) as caught:
        load_run_config(path)
    assert "\n" not in str(caught.value)


def test_an_own_model_by_dotted_path_is_a_source_of_the_run(tiny_root, tmp_path):
    """A model defined outside the package (tests/tests_plugin.py), named by its dotted
    class path, is fitted, saved, reloaded and ranked from like a registered one."""
    models = {"ease": {"reg": 10.0}, "recent": {"class": "tests_plugin.MostRecent", "boost": 2.0}}
    retrieval = {"n": 15, "sources": ["ease", "recent"]}
    path = _config(tiny_root, tmp_path, models=models, retrieval=retrieval, ablation=False)
    out = run_pipeline(load_run_config(path), log=lambda m: None)
    assert out.metrics["models"]["recent"]["model"] == "recent"
    assert {"score_recent", "rank_recent"} <= set(out.metrics["models"]["ltr"]["features"])
    saved = read_json(out.folder / "models" / "recent" / "model" / "config.json")
    assert saved["class"] == "tests_plugin.MostRecent" and saved["config"] == {"boost": 2.0}
    again = run_pipeline(load_run_config(path), log=lambda m: None)  # reloads the saved model
    assert again.metrics == out.metrics


def test_the_ranker_settings_are_chosen_on_the_held_out_label_users(tiny_root, tmp_path):
    from fusionrank.ranker.lgbm import TUNING_GRID

    ranker = {"n_estimators": 40, "min_child_samples": 5, "early_stopping_rounds": 10, "tune": True}
    config = load_run_config(_config(tiny_root, tmp_path, ranker=ranker, ablation=False))
    out = run_pipeline(config, log=lambda m: None)
    ltr = out.metrics["models"]["ltr"]
    tried = ltr["tuning"]
    assert len(tried) == len(TUNING_GRID)
    best = max(tried, key=lambda t: t["held-out ndcg"])  # the half that did not stop it compares
    assert all(t["held-out ndcg"] != t["stop ndcg"] for t in tried)  # two different halves
    chosen = best["settings"] if isinstance(best["settings"], dict) else {}
    assert all(ltr["settings"][k] == v for k, v in chosen.items()) and ltr["settings"]["tune"] is False
    # the chosen settings are then fitted as an untuned ranker is: a run configured with them
    # (same models and features, cached) gives the same ranker
    plain = load_run_config(
        _config(tiny_root, tmp_path, ranker={**ranker, "tune": False, **chosen}, ablation=False)
    )
    again = run_pipeline(plain, log=lambda m: None).metrics["models"]["ltr"]
    assert again["metrics"] == ltr["metrics"] and again["best_iteration"] == ltr["best_iteration"]
    assert again["stop_ndcg@10"] == ltr["stop_ndcg@10"]


def test_the_candidate_depth_is_chosen_on_held_out_users_and_recommend_keeps_within_it(tiny_root, tmp_path):
    from fusionrank.pipelines.recommend import recommend

    ranker = {"n_estimators": 40, "min_child_samples": 5, "early_stopping_rounds": 10, "candidates": [15, 2]}
    config = load_run_config(_config(tiny_root, tmp_path, ranker=ranker, ablation=False))
    ltr = run_pipeline(config, log=lambda m: None).metrics["models"]["ltr"]
    scores = ltr["depth_scores"]
    assert set(scores) == {"15", "2"}
    assert ltr["candidates"] == (15 if scores["15"] >= scores["2"] else 2)  # ties: the first listed
    # with depth 2, a user's answer holds only candidates some source ranks in its top 2
    config = load_run_config(
        _config(tiny_root, tmp_path, ranker={**ranker, "candidates": [2]}, ablation=False)
    )
    shallow = run_pipeline(config, log=lambda m: None)
    assert shallow.metrics["models"]["ltr"]["candidates"] == 2
    table = recommend(shallow.folder, "u3", 10, tiny_root)
    assert np.isfinite(table["score"]).all() and 1 <= len(table) <= 10
    rows = pd.read_parquet(shallow.folder / "features" / "features_test.parquet")
    u = IdMap.load(shallow.folder / "users.parquet").to_index(["u3"])[0]
    mine = rows[rows[USER_IDX] == u]
    within = mine[mine.filter(like="rank_").min(axis=1) <= 2][ITEM_IDX]
    items = IdMap.load(shallow.folder / "items.parquet").to_index(table["item_id"].tolist())
    assert set(items) <= set(within)
