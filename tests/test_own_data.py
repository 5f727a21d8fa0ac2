"""The user's own data end to end: ``fusionrank data import``, then every command by
``--dataset NAME``, and ``fusionrank run`` on a YAML that points at the files, with text
and images (a tiny ResNet and a tiny CLIP built from configs, loaded through the same code
as real weights)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from test_api import own_files
from typer.testing import CliRunner

import fusionrank as fr
from fusionrank.encoders.tiny import save_tiny_clip, save_tiny_resnet
from fusionrank.pipelines.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = own_files(tmp_path_factory.mktemp("own"), "csv", n_users=60, n_items=36)
    save_tiny_resnet(folder / "r18.safetensors")
    save_tiny_clip(folder / "clip")
    return folder


def test_import_then_every_command_uses_the_name(files, tmp_path):
    root = tmp_path / "data"
    args = [
        "data",
        "import",
        "--name",
        "shop",
        "--root",
        str(root),
        "--interactions",
        str(files / "events.csv"),
    ]
    args += ["--items", str(files / "items.csv"), "--columns", "user=uid,item=sku,timestamp=ts"]
    args += ["--text", "{title}. {description}", "--image", "image_path", "--image-root", str(files / "imgs")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    stored = json.loads((root / "shop" / "dataset.json").read_text())
    assert stored["profile"]["text"] == "{title}. {description}"
    assert stored["profile"]["image_root"] == str((files / "imgs").resolve())
    ds = fr.load_dataset("shop", root)
    assert ds.name == "shop" and len(ds.items) == 36 and ds.home == root / "shop"
    out = tmp_path / "m.json"
    res = runner.invoke(
        app, ["evaluate", "--dataset", "shop", "--root", str(root), "--model", "ease", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["dataset"] == "shop"
    res = runner.invoke(
        app,
        ["train", "--dataset", "shop", "--root", str(root), "--model", "bpr", "--epochs", "2", "--quiet"]
        + ["--out", str(tmp_path / "bpr")],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", "--run", str(tmp_path / "bpr"), "--user", "3", "-k", "3"])
    assert res.exit_code == 0 and "sku-" in res.output, res.output
    res = runner.invoke(
        app,
        ["embed", "--dataset", "shop", "--root", str(root), "--encoder", "image", "--model", "resnet18"]
        + [
            "--weights",
            str(files / "r18.safetensors"),
            "--workers",
            "0",
            "--out",
            str(tmp_path / "img"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "img" / "manifest.json").read_text())["rows"] == 36


def test_bad_own_data_stops_at_import(files, tmp_path):
    events = pd.read_csv(files / "events.csv", dtype=str)
    events.loc[6, "uid"] = ""
    events.to_csv(tmp_path / "events.csv", index=False)
    args = ["data", "import", "--name", "bad", "--root", str(tmp_path / "data"), "--interactions"]
    res = runner.invoke(app, [*args, str(tmp_path / "events.csv"), "--columns", "user=uid,item=sku"])
    assert res.exit_code == 2 and "events.csv, row 7, column 'uid': empty id" in res.output
    assert not (tmp_path / "data" / "bad").exists()
    res = runner.invoke(app, [*args, str(files / "events.csv"), "--columns", "user=uid,item=sku,when=ts"])
    assert res.exit_code == 2 and "when: unknown setting" in res.output


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_run_on_own_files_with_text_and_images(fmt, tmp_path):
    files = own_files(tmp_path / "files", fmt, n_users=60, n_items=36)
    save_tiny_resnet(files / "r18.safetensors")
    save_tiny_clip(files / "clip")
    config = {
        "name": "shop",
        "out": str(tmp_path / "runs"),
        "dataset": {
            "interactions": f"events.{fmt}",
            "items": f"items.{fmt}",
            "columns": {"user": "uid", "item": "sku", "timestamp": "ts"},
            "text": "{title}. {description}",
            "image": "image_path",
            "image_root": "imgs",
            "cache_dir": "cache",
            "profile": {
                "encoders": {
                    "image": {"model": "resnet18", "weights": "r18.safetensors", "workers": 0},
                    "clip": {"model": "clip", "workers": 0},
                }
            },
        },
        "modalities": ["text", "image", "clip"],
        "models": {
            "pop": {},
            "ease": {"reg": 10.0},
            "bpr": {"epochs": 3},
            "hybrid": {"epochs": 2, "hidden": 16, "modalities": ["text", "image"]},
        },
        "retrieval": {"n": 20},
        "ranker": {"n_estimators": 30, "min_child_samples": 5, "early_stopping_rounds": 5},
        "evaluation": {"ks": [5, 10]},
        "ablation": False,
    }
    path = files / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    res = runner.invoke(app, ["run", str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "shop"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        set(metrics["models"]) == {"pop", "ease", "bpr", "hybrid", "ltr"} and metrics["dataset"] == "events"
    )
    features = pd.read_parquet(run / "features" / "features_test.parquet")
    assert {"cos_text", "cos_image", "cos_clip", "score_hybrid"} <= set(features.columns)
    for name in ("report.md", "report.html", "config.json", "users.parquet", "items.parquet"):
        assert (run / name).stat().st_size > 0, name
    for png in ("metrics_by_model", "ndcg_at_k", "warm_vs_cold", "feature_importance"):
        assert (run / "plots" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("pop", "ease", "bpr", "hybrid"):
        assert fr.load_model(run / "models" / name / "model").name == name
        assert json.loads((run / "models" / name / "metrics.json").read_text())["model"] == name
    vectors = sorted(p.name.split("-")[0] for p in (files / "cache" / "vectors").iterdir())
    assert vectors == ["clip", "image", "text"]
    manifest = json.loads(next((files / "cache" / "vectors").glob("image-*/manifest.json")).read_text())
    assert manifest["rows"] == 36 and manifest["weights"]["path"].endswith("r18.safetensors")
    res = runner.invoke(app, ["recommend", "--run", str(run), "--user", "3", "-k", "3", "--explain"])
    assert res.exit_code == 0 and "why" in res.output, res.output
