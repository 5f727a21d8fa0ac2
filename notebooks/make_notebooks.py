"""Writes the three notebooks from the cells below (edit here, then run this script).

Each notebook reads ``FUSIONRANK_NOTEBOOK_FAST=1`` (set by the test suite) to run on
reduced settings; unset, it runs the full configuration.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import os
from pathlib import Path

FAST = os.environ.get("FUSIONRANK_NOTEBOOK_FAST") == "1"  # the test suite runs us on reduced settings
ROOT = Path(os.environ.get("FUSIONRANK_DATA", "../data")).resolve()
print("data root:", ROOT, "| fast:", FAST)"""

QUICKSTART = [
    new_markdown_cell(
        "# 01 · Quickstart: load, train, evaluate\n\n"
        "MovieLens-100K, a per-user random 8:1:1 split, two baselines and one neural model, "
        "evaluated by full ranking over all items (training items excluded)."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
from fusionrank.data.dataset import load_dataset
from fusionrank.data.fetch import fetch_ml100k, is_fetched
from fusionrank.data.splits import SplitConfig, prepare_split

if not is_fetched(ROOT):
    fetch_ml100k(ROOT)
data = load_dataset("ml-100k", ROOT)
split = prepare_split(data, SplitConfig(kind="ratio", seed=2020), ROOT)
print(f"{split.n_users} users, {split.n_items} items; train/valid/test:",
      len(split.train), len(split.valid), len(split.test))"""
    ),
    new_code_cell(
        """\
from fusionrank.collab.ease import EASE
from fusionrank.collab.pop import Pop
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.pipelines.evaluate import evaluate_model_on_split
from fusionrank.pipelines.train import build_collab, fit_and_evaluate

config = EvalConfig(ks=(10, 20))
results = {
    "pop": evaluate_model_on_split(Pop(), split, "pop", config),
    "ease": evaluate_model_on_split(EASE(), split, "ease", config),
}
bpr = build_collab("bpr", train={"epochs": 3 if FAST else 100, "progress": False})
results["bpr"] = fit_and_evaluate(bpr, split, "bpr", config)"""
    ),
    new_code_cell(
        """\
from fusionrank.evaluation.table import format_table

rows = [{"model": name, **{m: r["metrics"][m] for m in ("ndcg@10", "recall@10", "mrr@10")}}
        for name, r in results.items()]
print(format_table(rows, list(rows[0])))
assert results["ease"]["metrics"]["ndcg@10"] > results["pop"]["metrics"]["ndcg@10"]"""
    ),
    new_markdown_cell(
        "Save a model and reload it: the same scores come back.\n\n"
        "(`fusionrank train --model bpr --out runs/bpr` does the same from the shell.)"
    ),
    new_code_cell(
        """\
import tempfile
import numpy as np
from fusionrank.collab.base import Recommender

with tempfile.TemporaryDirectory() as tmp:
    bpr.save(Path(tmp) / "bpr")
    again = Recommender.load(Path(tmp) / "bpr")
users = np.arange(5)
np.testing.assert_allclose(again.score(users), bpr.score(users), rtol=1e-6)
print("reloaded: identical scores")"""
    ),
]

COLD_START = [
    new_markdown_cell(
        "# 02 · Cold start: new items from their text, new users from side features\n\n"
        "Protocol (a) for cold items: 20% of items are held out with all their interactions and "
        "only they are ranked, for the users who interacted with them. Cold users: 10% of users "
        "are held out entirely and served from age, gender and occupation."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
from fusionrank.data.fetch import fetch_ml100k, is_fetched
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.evaluation.table import format_table
from fusionrank.pipelines.cold_start import run_cold_items, run_cold_users

if not is_fetched(ROOT):
    fetch_ml100k(ROOT)
config = EvalConfig(ks=(10,))
rows = []
for model, overrides in [("random", None), ("content-knn", None), ("ease-content", None),
                         ("hybrid", {"epochs": 2 if FAST else 100})]:
    m = run_cold_items("ml-100k", model, root=ROOT, modalities=("text",), overrides=overrides,
                       eval_config=config)
    rows.append({"protocol": "cold items (a)", "model": model, "ndcg@10": m["metrics"]["ndcg@10"],
                 "recall@10": m["metrics"]["recall@10"]})
print(format_table(rows, list(rows[0])))
by_model = {r["model"]: r["ndcg@10"] for r in rows}
assert by_model["ease-content"] > by_model["random"]"""
    ),
    new_code_cell(
        """\
rows = []
for model, overrides in [("pop", None), ("demographic-pop", None),
                         ("profile", {"epochs": 5} if FAST else None)]:
    m = run_cold_users("ml-100k", model, root=ROOT, overrides=overrides, eval_config=config)
    rows.append({"protocol": "cold users", "model": model, "ndcg@10": m["metrics"]["ndcg@10"]})
print(format_table(rows, list(rows[0])))"""
    ),
    new_markdown_cell(
        "From the shell: `fusionrank evaluate --split cold-items --model hybrid`, "
        "`fusionrank recommend --run DIR --user 1 --new-items new.csv` (items unseen in training, "
        "ranked from their text), and `--age 25 --gender F --occupation writer` for a new user."
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
from fusionrank.data.fetch import fetch_ml100k, is_fetched
from fusionrank.pipelines.config import parse_run_config
from fusionrank.pipelines.run import run_pipeline

if not is_fetched(ROOT):
    fetch_ml100k(ROOT)
out = tempfile.mkdtemp() if FAST else "../runs"
raw = {
    "name": "notebook",
    "dataset": "ml-100k",
    "root": str(ROOT),
    "out": out,
    "modalities": ["text"] if FAST else ["text", "kg"],
    "models": {"pop": {}, "itemknn": {}, "ease": {}, "bpr": {"train": {"epochs": 5 if FAST else 100}}},
    "retrieval": {"n": 50 if FAST else 100, "sources": ["ease", "bpr", "itemknn"]},
    "ablation": not FAST,
}
config = parse_run_config(raw, "notebook")
result = run_pipeline(config, log=print)"""
    ),
    new_code_cell(
        """\
from fusionrank.pipelines.report import print_summary

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


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("01_quickstart.ipynb", QUICKSTART)
    write("02_cold_start.ipynb", COLD_START)
    write("03_hybrid_ranking.ipynb", HYBRID)
