"""Train a collaborative model on a saved split, evaluate it on test, save it (the ``train`` stage)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusionrank.collab.lightgcn import LightGCN
from fusionrank.collab.mf import BPR
from fusionrank.collab.neumf import NeuMF
from fusionrank.collab.sasrec import SASRec
from fusionrank.collab.torch_base import TorchRecommender
from fusionrank.collab.trainer import TrainConfig
from fusionrank.columns import TEST, TRAIN, VALID
from fusionrank.data.dataset import default_root, load_dataset
from fusionrank.data.splits import Split, SplitConfig, prepare_split
from fusionrank.encoders.vectors import write_vectors
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.io import write_json

COLLAB_MODELS: dict[str, type[TorchRecommender]] = {
    "bpr": BPR,
    "neumf": NeuMF,
    "lightgcn": LightGCN,
    "sasrec": SASRec,
}
"""The CLI's ``--model`` choices for ``fusionrank train``."""

DIM_FIELDS = {
    "bpr": ("embedding_dim",),
    "lightgcn": ("embedding_dim",),
    "neumf": ("mf_dim", "mlp_dim"),
    "sasrec": ("hidden",),
}


def build_collab(
    name: str,
    settings: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    dim: int | None = None,
) -> TorchRecommender:
    """A model by CLI name with config overrides, training overrides and ``--dim``."""
    if name not in COLLAB_MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(COLLAB_MODELS)}")
    cls = COLLAB_MODELS[name]
    settings = dict(settings or {})
    if dim is not None:
        settings.update({f: dim for f in DIM_FIELDS[name]})
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"{name} has no setting {sorted(unknown)}; it has {sorted(known)}")
    train = {k: v for k, v in (train or {}).items() if v is not None}
    tknown = {f.name for f in dataclasses.fields(TrainConfig)}
    if set(train) - tknown:
        raise ValueError(f"unknown training settings {sorted(set(train) - tknown)}; known: {sorted(tknown)}")
    return cls(
        dataclasses.replace(cls.config_class(), **settings), dataclasses.replace(cls.default_train, **train)
    )


def fit_and_evaluate(
    model: TorchRecommender, split: Split, name: str, eval_config: EvalConfig | None = None
) -> dict[str, Any]:
    """Fit with early stopping on valid, evaluate on test; returns the metrics JSON."""
    train = split.matrix(TRAIN)
    model.fit(train, split.matrix(VALID) if len(split.valid) else None, interactions=split.train)
    if isinstance(model, SASRec):  # valid items are history at test time
        model.set_history(pd.concat([split.train, split.valid]))
    t0 = time.perf_counter()
    popularity = np.asarray(train.sum(axis=0)).ravel()
    test = evaluate_ranking(
        model.score, split.matrix(TEST), split.matrix(TRAIN, VALID), eval_config, popularity=popularity
    )
    h = model.history
    return {
        "dataset": split.meta.get("dataset"),
        "split": split.config.kind,
        "seed": split.config.seed,
        "model": name,
        "config": dataclasses.asdict(model.config),
        "train_config": dataclasses.asdict(model.train_config),
        "metrics": test.metrics,
        "valid_metrics": {model.train_config.valid_metric: h.best_valid} if h.valid else {},
        "epochs": h.epochs,
        "best_epoch": h.best_epoch,
        "timings": {
            "time_to_best_s": h.time_to_best_s,
            "total_s": h.total_s,
            "fit_s": h.total_s,
            "evaluate_s": time.perf_counter() - t0,
        },
    }


def save_run(model: TorchRecommender, split: Split, out: Path, metrics: dict[str, Any]) -> None:
    """Model (safetensors + JSON), embeddings in the vectors contract, metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model")
    split.users.save(out / "users.parquet")
    split.items.save(out / "items.parquet")
    try:
        items, users = model.item_embeddings(), model.user_embeddings()
    except NotImplementedError:
        items = users = None
    if items is not None:
        write_vectors(out / "item_vectors" / "vectors-00000.parquet", split.items.ids, items)
        write_vectors(out / "user_vectors" / "vectors-00000.parquet", split.users.ids, users)
        for kind, arr in (("item", items), ("user", users)):
            write_json(
                out / f"{kind}_vectors" / "manifest.json",
                {
                    "encoder": f"collab:{metrics['model']}",
                    "weights": {"path": str((out / "model").resolve())},
                    "dim": int(arr.shape[1]),
                    "normalised": False,
                    "rows": int(arr.shape[0]),
                    "errors": 0,
                    "shards": [{"file": "vectors-00000.parquet", "rows": int(arr.shape[0])}],
                    "id_column": f"{kind}_id" if kind == "user" else "item_id",
                },
            )
    write_json(out / "metrics.json", metrics)


def run_train(
    dataset: str,
    model: str,
    split: SplitConfig,
    out: str | Path | None = None,
    root: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    dim: int | None = None,
    eval_config: EvalConfig | None = None,
) -> dict[str, Any]:
    """``fusionrank train`` as a function; returns the metrics JSON."""
    recommender = build_collab(model, settings, train, dim)
    root = Path(root) if root is not None else default_root()
    saved = prepare_split(load_dataset(dataset, root), split, root)
    metrics = fit_and_evaluate(recommender, saved, model, eval_config)
    if out is not None:
        save_run(recommender, saved, Path(out), metrics)
    return metrics
