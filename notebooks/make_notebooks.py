"""Writes the notebooks from the cells below (edit here, then run this script; a test
fails when the committed ``.ipynb`` files differ from what it writes).

Each notebook reads ``FUSIONRANK_NOTEBOOK_FAST=1`` (set by the test suite) to run on
reduced settings; unset, it runs the full configuration.

    .venv/bin/python notebooks/make_notebooks.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import os
from pathlib import Path

import fusionrank as fr

FAST = os.environ.get("FUSIONRANK_NOTEBOOK_FAST") == "1"  # the test suite runs us on reduced settings
ROOT = Path(os.environ.get("FUSIONRANK_DATA", "../data")).resolve()
print("data root:", ROOT, "| fast:", FAST)"""

QUICKSTART = [
    new_markdown_cell(
        "# 01 · Quickstart: load, split, fit, recommend, evaluate\n\n"
        "MovieLens-100K, a per-user random 8:1:1 split, two baselines and one neural model, "
        "evaluated by full ranking over all items (training items excluded). Every model has "
        "the same contract: `fit(split)`, `recommend(user_ids, k)`, `save` / `fr.load_model`."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
ds = fr.load_dataset("ml-100k", root=ROOT)  # fetched into ROOT if missing
split = fr.split(ds, "ratio", seed=2020)
print(ds)
print(split)
split.train.head()"""
    ),
    new_code_cell(
        """\
models = {
    "pop": fr.build_model("pop"),
    "ease": fr.build_model("ease", reg=250.0),
    "bpr": fr.build_model("bpr", epochs=3 if FAST else 200, progress=False),
}
results = {name: fr.evaluate(model.fit(split), split, ks=(10, 20)) for name, model in models.items()}
for name, result in results.items():
    print(f"{name:5s} ndcg@10 {result.metrics['ndcg@10']:.4f}  recall@10 {result.metrics['recall@10']:.4f}")
assert results["ease"].metrics["ndcg@10"] > results["pop"].metrics["ndcg@10"]"""
    ),
    new_code_cell(
        """\
models["ease"].recommend(["1", "7"], k=5)  # external ids; items the user saw are excluded"""
    ),
    new_markdown_cell(
        "Save a model and reload it: the same scores come back.\n\n"
        "(`fusionrank train --model bpr --out runs/bpr` does the same from the shell.)"
    ),
    new_code_cell(
        """\
import tempfile
import numpy as np

with tempfile.TemporaryDirectory() as tmp:
    models["bpr"].save(Path(tmp) / "bpr")
    again = fr.load_model(Path(tmp) / "bpr")
users = np.arange(5)
np.testing.assert_allclose(again.score(users), models["bpr"].score(users), rtol=1e-6)
print("reloaded: identical scores")"""
    ),
    new_markdown_cell("Every registered model, with its config class (settings are validated by name):"),
    new_code_cell(
        """\
{name: config.__name__ for name, config in fr.list_models().items()}"""
    ),
]

COLD_START = [
    new_markdown_cell(
        "# 02 · Cold start: new items from their text, new users from side features, other domains\n\n"
        "Each protocol is a split: `cold-items` holds out 20% of items with all their interactions "
        "(headline: only those items are ranked, for the users who had them), `cold-users` holds out "
        "10% of users (served from age, gender and occupation), `cross-domain` hides the target-domain "
        "history of 20% of the users active in both domains. The models are fitted and evaluated the "
        "same way as any other."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
from fusionrank.evaluation.table import format_table

ds = fr.load_dataset("ml-100k", root=ROOT)
fr.embed_content(ds, ["text"])  # the content models read the catalogue's MiniLM vectors


def table(kind, models):
    split = fr.split(ds, kind, seed=2020)
    rows = []
    for name, settings in models:
        result = fr.evaluate(fr.build_model(name, **settings).fit(split), split, ks=(10,))
        rows.append({"protocol": kind, "model": name, "ndcg@10": result.metrics["ndcg@10"],
                     "recall@10": result.metrics["recall@10"]})
    print(format_table(rows, list(rows[0])))
    return {r["model"]: r["ndcg@10"] for r in rows}


cold_items = table("cold-items", [("random", {}), ("content-knn", {}), ("ease-content", {}),
                                  ("hybrid", {"epochs": 2 if FAST else 100, "progress": False})])
assert cold_items["ease-content"] > cold_items["random"]"""
    ),
    new_code_cell(
        """\
cold_users = table("cold-users", [("pop", {}), ("demographic-pop", {}),
                                  ("profile", {"epochs": 2 if FAST else 5, "progress": False})])
cross = table("cross-domain", [("pop", {}),
                               ("cross-domain", {"epochs": 3 if FAST else 60, "progress": False})])"""
    ),
    new_markdown_cell(
        "A user nobody has seen, known only by side features, through the profile model's cold-start path:"
    ),
    new_code_cell(
        """\
import pandas as pd

split = fr.split(ds, "cold-users", seed=2020)
profile = fr.build_model("profile", epochs=2 if FAST else 5, progress=False).fit(split)
newcomer = pd.DataFrame({"user_id": ["newcomer"], "age": [31], "gender": ["F"], "occupation": ["writer"]})
profile.recommend(["newcomer"], k=5, user_features=newcomer)"""
    ),
    new_markdown_cell(
        "From the shell: `fusionrank evaluate --split cold-items --model hybrid`, "
        "`fusionrank recommend --run DIR --user 1 --new-items new.csv` (items unseen in training, "
        "ranked from their text), and `--feature age=25 --feature gender=F --feature occupation=writer` "
        "for a new user."
    ),
]

HYBRID = [
    new_markdown_cell(
        "# 03 · Hybrid ranking: candidates, features, LightGBM, explanations\n\n"
        "The same stages as `fusionrank run configs/ml100k.yaml`, from Python: single models → "
        "top-N candidates per source → the train-only feature table → LightGBM lambdarank "
        "(labels from valid, early stopping on held-out valid users) → full-ranking test metrics."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
import tempfile
from fusionrank.pipelines.config import parse_run_config
from fusionrank.pipelines.run import run_pipeline

out = tempfile.mkdtemp() if FAST else "../runs"
raw = {
    "name": "notebook",
    "dataset": "ml-100k",
    "root": str(ROOT),
    "out": out,
    "modalities": ["text"] if FAST else ["text", "kg"],
    "models": {"pop": {}, "itemknn": {}, "ease": {}, "bpr": {"epochs": 5 if FAST else 200},
               "cross-domain": {"epochs": 3 if FAST else 60}},
    "retrieval": {"n": 50 if FAST else 100, "sources": ["ease", "bpr", "itemknn", "cross-domain"]},
    "ablation": not FAST,
}
config = parse_run_config(raw, "notebook")
result = run_pipeline(config, log=print)"""
    ),
    new_code_cell(
        """\
from fusionrank.pipelines.stages.report import print_summary

print(print_summary(result.metrics))
print("candidate recall:", {s: round(v["union"], 3) for s, v in result.recall.items()})"""
    ),
    new_markdown_cell("Feature importance (gain) and the features behind one user's top items."),
    new_code_cell(
        """\
result.importance.head(10)"""
    ),
    new_code_cell(
        """\
from fusionrank.pipelines.recommend import recommend

recommend(result.folder, "1", 5, ROOT, explain=True)"""
    ),
    new_code_cell(
        """\
from IPython.display import Image, display

for name in ("metrics_by_model", "warm_vs_cold", "feature_importance"):
    display(Image(filename=str(result.folder / "plots" / f"{name}.png")))"""
    ),
]

OWN_DATA = [
    new_markdown_cell(
        "# 04 · Your own data: an event log and a catalogue with text\n\n"
        "`fr.Dataset.from_files` reads CSV, TSV, Parquet or JSONL (or DataFrames) with a column "
        "mapping; timestamps may be numbers, ISO-8601 text or datetimes. Every bad row stops with "
        "the file, the row and the column. Here a small shop is made up on the spot."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
import tempfile
import numpy as np
import pandas as pd

folder = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
kinds = ["tea", "coffee", "cocoa"]
items = pd.DataFrame({
    "sku": [f"sku-{i}" for i in range(60)],
    "title": [f"{kinds[i % 3].title()} blend {i}" for i in range(60)],
    "description": [f"A {['green', 'dark roast', 'sweet'][i % 3]} {kinds[i % 3]}." for i in range(60)],
})
events = []
for user in range(1, 201):
    likes = [i for i in range(60) if i % 3 == user % 3]
    for i in rng.choice(likes, size=8, replace=False):
        when = pd.Timestamp("2025-01-01") + pd.Timedelta(hours=int(rng.integers(0, 5000)))
        events.append({"customer": str(user), "sku": f"sku-{i}", "time": when.isoformat()})
pd.DataFrame(events).to_csv(folder / "events.csv", index=False)
items.to_csv(folder / "items.csv", index=False)

ds = fr.Dataset.from_files(
    interactions=folder / "events.csv",
    items=folder / "items.csv",
    columns={"user": "customer", "item": "sku", "timestamp": "time"},
    text="{title}. {description}",
    cache_dir=folder / "cache",
)
ds"""
    ),
    new_code_cell(
        """\
split = fr.split(ds, "temporal-ratio", seed=1)
fr.embed_content(ds, ["text"])  # content-knn reads the items' text vectors
for name in ("pop", "ease", "content-knn"):
    result = fr.evaluate(fr.build_model(name).fit(split), split, ks=(10,))
    print(f"{name:12s} ndcg@10 {result.metrics['ndcg@10']:.4f}")"""
    ),
    new_code_cell(
        """\
fr.build_model("ease").fit(split).recommend(["1", "2"], k=3)"""
    ),
    new_markdown_cell(
        "The same files run the whole pipeline: `dataset:` in a run config takes the same fields "
        "(paths relative to the config file), and `fusionrank data import --name shop ...` stores "
        "them under the data folder so that every command can use `--dataset shop`."
    ),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_cold_start.ipynb": COLD_START,
    "03_hybrid_ranking.ipynb": HYBRID,
    "04_own_data.ipynb": OWN_DATA,
}


def notebook(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` with stable cell ids (so regenerating changes nothing)."""
    cells = [nbformat.from_dict(dict(c)) for c in NOTEBOOKS[name]]
    for k, cell in enumerate(cells):
        cell["id"] = f"{Path(name).stem}-{k:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def write(folder: Path = HERE) -> list[Path]:
    """Write every notebook into ``folder``; returns the paths."""
    paths = []
    for name in NOTEBOOKS:
        nbformat.write(notebook(name), folder / name)
        paths.append(folder / name)
    return paths


if __name__ == "__main__":
    for path in write():
        print("wrote", path)
