"""The public Python API, exactly as the README shows it, on ml-100k and on the user's own
files (CSV and Parquet, ISO timestamps, text and images)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import fusionrank as fr


def own_files(folder, fmt: str = "parquet", n_users: int = 40, n_items: int = 30, seed: int = 0):
    """An event log (``uid, sku, ts`` with ISO-8601 times) and a catalogue with a title, a
    description and an image path per item (small PNGs whose colour follows the category)."""
    rng = np.random.default_rng(seed)
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    items = []
    for i in range(n_items):
        cat = i % 3
        Image.new("RGB", (24, 24), colours[cat]).save(folder / "imgs" / f"{i}.png")
        items.append(
            {
                "sku": f"sku-{i}",
                "title": f"{['Red', 'Green', 'Blue'][cat]} thing {i}",
                "description": f"A {['warm', 'fresh', 'cool'][cat]} product.",
                "image_path": f"{i}.png",
            }
        )
    events, t = [], pd.Timestamp("2024-01-01T00:00:00Z")
    for u in range(1, n_users + 1):
        taste = u % 3
        for i in rng.choice([i for i in range(n_items) if i % 3 == taste], size=6, replace=False):
            t += pd.Timedelta(minutes=int(rng.integers(1, 600)))
            events.append({"uid": str(u), "sku": f"sku-{i}", "ts": t.isoformat()})
        for i in rng.choice(n_items, size=2, replace=False):
            t += pd.Timedelta(minutes=int(rng.integers(1, 600)))
            events.append({"uid": str(u), "sku": f"sku-{i}", "ts": t.isoformat()})
    write = {"parquet": "to_parquet", "csv": "to_csv"}[fmt]
    kwargs = {"index": False}
    getattr(pd.DataFrame(events), write)(folder / f"events.{fmt}", **kwargs)
    getattr(pd.DataFrame(items), write)(folder / f"items.{fmt}", **kwargs)
    return folder


def the_snippet(ds: fr.Dataset) -> dict:
    """The README's Python API snippet after the dataset line, as written."""
    split = fr.split(ds, "ratio", seed=2020)  # every protocol of today by its name
    split.train, split.valid, split.test  # noqa: B018 - DataFrames with external user_id / item_id
    fr.list_models()  # name -> config class, for every model
    model = fr.build_model("lightgcn", dim=64)  # settings by keyword, validated
    model.fit(split)  # ONE contract for every model
    recs = model.recommend(["1", "7"], k=10)  # user_id, item_id, score, rank
    res = fr.evaluate(model, split, ks=(10, 20))  # typed result
    model.save("models/lgcn")
    m2 = fr.load_model("models/lgcn")  # identical scores
    vecs = fr.embed(ds, encoder="text", out="vectors/text")  # the batch engine
    return {"split": split, "model": model, "recs": recs, "res": res, "m2": m2, "vecs": vecs}


def check(out: dict, ds: fr.Dataset, tmp_path) -> None:
    split, model, recs, res, m2, vecs = (out[k] for k in ("split", "model", "recs", "res", "m2", "vecs"))
    for part in (split.train, split.valid, split.test):
        assert {"user_id", "item_id"} <= set(part.columns) and part["user_id"].map(type).eq(str).all()
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert recs.groupby("user_id").size().to_dict() == {"1": 10, "7": 10}
    seen = set(split.train.loc[split.train.user_id == "1", "item_id"]) | set(
        split.valid.loc[split.valid.user_id == "1", "item_id"]
    )
    assert not seen & set(recs.loc[recs.user_id == "1", "item_id"])
    assert set(res.metrics) >= {"ndcg@10", "ndcg@20", "recall@10"} and 0 < res.metrics["ndcg@10"] <= 1
    assert len(res.per_user) == res.n_users and "user_id" in res.per_user
    res.to_json(tmp_path / "metrics.json")
    saved = pd.read_json(tmp_path / "metrics.json", typ="series")
    assert saved["model"] == "lightgcn" and saved["dataset"] == ds.name
    users = np.arange(split.n_users)
    np.testing.assert_array_equal(m2.score(users), model.score(users))
    assert vecs.rows + vecs.manifest["errors"] == len(ds.items) and vecs.dim == 384


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_snippet_runs_as_written_on_own_files(fmt, tmp_path, monkeypatch):
    own_files(tmp_path, fmt)
    monkeypatch.chdir(tmp_path)
    ds = fr.Dataset.from_files(  # the user's own data
        interactions=f"events.{fmt}",  # csv/tsv/parquet/jsonl, through HF datasets as today
        items=f"items.{fmt}",
        users=None,  # optional side tables
        columns={"user": "uid", "item": "sku", "timestamp": "ts"},  # ts numeric or ISO-8601 / datetime
        text="{title}. {description}",  # item text template over catalogue columns (optional)
        image="image_path",
        image_root="imgs/",  # optional
    )
    assert ds.interactions["timestamp"].min() > pd.Timestamp("2024-01-01").timestamp() - 1
    check(the_snippet(ds), ds, tmp_path)


def test_the_snippet_runs_as_written_on_ml100k(ml100k_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONRANK_DATA", str(ml100k_root))
    monkeypatch.chdir(tmp_path)
    ds = fr.load_dataset("ml-100k")  # a shipped dataset, fetched if missing
    out = the_snippet(ds)
    check(out, ds, tmp_path)
    assert out["res"].metrics["ndcg@10"] > 0.25  # LightGCN on ml-100k (RecBole's: 0.273)


def test_own_data_errors_name_file_row_and_column(tmp_path):
    own_files(tmp_path, "csv")
    events = pd.read_csv(tmp_path / "events.csv")
    events.loc[4, "ts"] = "yesterday"
    events.to_csv(tmp_path / "bad.csv", index=False)
    columns = {"user": "uid", "item": "sku", "timestamp": "ts"}
    with pytest.raises(
        fr.DataError, match=r"bad.csv, row 5, column 'ts': value 'yesterday' is not a timestamp"
    ):
        fr.Dataset.from_files(tmp_path / "bad.csv", columns=columns)
    with pytest.raises(fr.DataError, match=r"column 'user_name'.*missing column for user"):
        fr.Dataset.from_files(tmp_path / "events.csv", columns={"user": "user_name", "item": "sku"})
    with pytest.raises(fr.SettingsError, match="columns: usr: unknown setting"):
        fr.Dataset.from_files(tmp_path / "events.csv", columns={"usr": "uid", "item": "sku"})
    with pytest.raises(fr.DataError, match=r"items.csv, column 'synopsis': the text setting names a column"):
        fr.Dataset.from_files(
            tmp_path / "events.csv", tmp_path / "items.csv", columns=columns, text="{synopsis}"
        )
    items = pd.read_csv(tmp_path / "items.csv").iloc[1:]
    items.to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(
        fr.DataError, match=r"events.csv, row \d+, column 'sku': item 'sku-0' is not in the catalogue"
    ):
        fr.Dataset.from_files(tmp_path / "events.csv", tmp_path / "fewer.csv", columns=columns)
