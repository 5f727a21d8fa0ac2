import json

from typer.testing import CliRunner

from fusionrank.pipelines.cli import app

runner = CliRunner()


def test_evaluate_prints_a_table_and_writes_the_contract(tiny_root, tmp_path):
    out = tmp_path / "m.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--dataset",
            "tiny",
            "--model",
            "pop",
            "--model",
            "ease",
            "--root",
            str(tiny_root),
            "--json",
            str(out),
            "--set",
            "reg=5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ndcg@10" in res.output and "ease" in res.output
    payload = json.loads(out.read_text())["models"]
    assert payload["ease"]["config"] == {"reg": 5.0, "max_items": None, "top_items": None}
    for m in payload.values():
        assert {"dataset", "split", "model", "metrics", "timings"} <= set(m)
        assert m["dataset"] == "tiny" and 0 <= m["metrics"]["ndcg@10"] <= 1
        assert m["timings"]["fit_s"] >= 0


def test_evaluate_errors_are_clear(tiny_root):
    res = runner.invoke(app, ["evaluate", "--dataset", "tiny", "--model", "nope", "--root", str(tiny_root)])
    assert res.exit_code == 2 and "unknown model 'nope'" in res.output
    res = runner.invoke(app, ["evaluate", "--dataset", "missing", "--root", str(tiny_root)])
    assert res.exit_code == 2 and "fusionrank data fetch" in res.output


def test_data_fetch_rejects_unknown_dataset(tmp_path):
    res = runner.invoke(app, ["data", "fetch", "ml-1m", "--root", str(tmp_path)])
    assert res.exit_code != 0


def test_settings_are_checked(tiny_root):
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--dataset",
            "tiny",
            "--model",
            "ease",
            "--root",
            str(tiny_root),
            "--set",
            "ease.regg=5",
        ],
    )
    assert res.exit_code == 2 and "regg: unknown setting" in res.output
    res = runner.invoke(
        app, ["evaluate", "--dataset", "tiny", "--model", "pop", "--root", str(tiny_root), "--set", "reg=5"]
    )
    assert res.exit_code == 2 and "no requested model has a setting 'reg'" in res.output


def test_cold_start_protocols_run_from_the_cli_on_ml100k(ml100k_root, tmp_path):
    out = tmp_path / "cold.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--split",
            "cold-items",
            "--model",
            "random",
            "--model",
            "content-knn",
            "--root",
            str(ml100k_root),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    models = json.loads(out.read_text())["models"]
    assert models["content-knn"]["config"]["modalities"] == ["text"]
    assert 0.1 < models["content-knn"]["metrics"]["ndcg@10"] < 0.25  # MiniLM "title year genres"
    assert models["random"]["metrics"]["ndcg@10"] < models["content-knn"]["metrics"]["ndcg@10"]
    assert "all_items" in models["random"] and models["random"]["split"] == "cold-items"
    mixed = models["random"]["all_items"]
    assert mixed["cold_truth_share"] == 1.0  # the cold-items test holds the cold items' interactions
    assert 0.15 < mixed["cold_share@10"] < 0.3  # random scores: about the cold items' 20% of the catalogue
    res = runner.invoke(
        app,
        ["evaluate", "--split", "cold-items", "--warm-test", "0.1", "--model", "random"]
        + ["--root", str(ml100k_root), "--json", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "cold share@10" in res.output and "cold truth share" in res.output
    payload = json.loads(out.read_text())
    mixed = payload["all_items"]
    assert 0.6 < mixed["cold_truth_share"] < 0.8  # 20% of the items with all their rows, 10% of the rest
    assert 0.15 < mixed["cold_share@10"] < 0.3  # random scores do not follow the truth's share
    res = runner.invoke(app, ["evaluate", "--warm-test", "0.1", "--root", str(ml100k_root)])
    assert res.exit_code != 0 and "warm_test_ratio applies to cold-items splits only" in res.output
    for split, model in (("cross-domain", "pop"), ("cold-users", "demographic-pop")):
        res = runner.invoke(
            app,
            ["evaluate", "--split", split, "--model", model, "--root", str(ml100k_root), "--json", str(out)],
        )
        assert res.exit_code == 0, res.output
        assert 0.2 < json.loads(out.read_text())["metrics"]["ndcg@10"] < 0.8
    res = runner.invoke(
        app,
        ["evaluate", "--split", "cold-users", "--model", "ease", "--root", str(ml100k_root), "--set", "k=3"],
    )
    assert res.exit_code == 2 and "no requested model has a setting 'k'" in res.output


def test_recommend_from_history_and_from_side_features(tiny_root, tmp_path):
    run = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "tiny",
            "--model",
            "bpr",
            "--root",
            str(tiny_root),
            "--out",
            str(run),
            "--epochs",
            "2",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    from fusionrank.pipelines.recommend import recommend

    known = recommend(run, "u3", 5, tiny_root)
    assert known.attrs["source"] == "history" and len(known) == 5
    assert (run / "item_vectors" / "manifest.json").exists() and (run / "source.json").exists()
    inter = (tiny_root / "tiny" / "tiny.inter").read_text().splitlines()[1:]
    seen = {line.split("\t")[1] for line in inter if line.startswith("u3\t")}
    assert not seen & set(known["item_id"])  # training items are never recommended
    res = runner.invoke(
        app,
        [
            "recommend",
            "--run",
            str(run),
            "--user",
            "newcomer",
            "-k",
            "3",
            "--root",
            str(tiny_root),
            "--feature",
            "age=31",
            "--feature",
            "gender=F",
            "--feature",
            "occupation=writer",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "side features" in res.output and "title" in res.output
    res = runner.invoke(app, ["recommend", "--run", str(run), "--user", "ghost", "--root", str(tiny_root)])
    assert res.exit_code == 2 and "side features" in res.output and "age" in res.output
