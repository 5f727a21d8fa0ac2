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
    assert payload["ease"]["config"] == {"reg": 5}
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
    assert res.exit_code == 2 and "no setting 'regg'" in res.output
    res = runner.invoke(
        app, ["evaluate", "--dataset", "tiny", "--model", "pop", "--root", str(tiny_root), "--set", "reg=5"]
    )
    assert res.exit_code == 2 and "no requested model has a setting 'reg'" in res.output
