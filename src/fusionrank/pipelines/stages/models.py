"""The ``models`` stage of ``fusionrank run``: each single model fitted on train, evaluated
on test by :func:`fusionrank.evaluate`, saved, and cached under ``<run>/models/<name>/``.
A model that reads content finds the vectors the embed stage made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fusionrank.data.splits import Split
from fusionrank.evaluation.evaluate import evaluate
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.io import atomic_path, begin_stage, mark_done, read_json, write_json
from fusionrank.pipelines.cache import is_fresh, stage_key
from fusionrank.pipelines.config import ModelSpec
from fusionrank.recommender import Recommender
from fusionrank.registry import load_model

Log = Callable[[str], None]


@dataclass
class FittedModel:
    """A run model, its metrics (the metrics contract) and per-user test values."""

    model: Recommender
    metrics: dict[str, Any]
    per_user: pd.DataFrame
    key: str
    cached: bool = False


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a table under a temporary name, then rename it into place."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def model_stage(
    name: str,
    spec: ModelSpec,
    seed: int,
    evaluation: EvalConfig,
    split: Split,
    split_key: str,
    content_keys: dict[str, str],
    folder: Path,
    force: bool,
    log: Log,
    progress: bool = False,
) -> FittedModel:
    """Fit, evaluate and save one model, or reuse it when its key is unchanged. The key
    holds the model's class and settings, the split, and the content it reads; ``seed``
    is the model's seed unless its settings give one."""
    cls = spec.model_class()
    content = {m: content_keys.get(m, m) for m in spec.modalities()}
    key = stage_key("model", name, spec.cls, spec.settings, split_key, content)
    out = folder / "models" / name
    if not force and is_fresh(out, key):
        log(f"  {name}: cached")
        model = load_model(out / "model", cls)
        return FittedModel(
            model, read_json(out / "metrics.json"), pd.read_parquet(out / "per_user.parquet"), key, True
        )
    log(f"  {name}: fitting")
    begin_stage(out)
    model = spec.build(name, seed, progress)
    model.fit(split)
    result = evaluate(model, split, evaluation.ks, metrics=evaluation.metrics)
    metrics = result.to_dict()
    model.save(out / "model")
    write_parquet(result.per_user, out / "per_user.parquet")
    write_json(out / "metrics.json", metrics)
    mark_done(out, key)
    return FittedModel(model, metrics, result.per_user, key)
