"""The ``models`` stage of ``fusionrank run``: each single model fitted on train, evaluated
on test by :func:`fusionrank.evaluate`, saved, and cached under ``<run>/models/<name>/``.
A model that reads content finds the vectors the embed stage made."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fusionrank.data.splits import Split, SplitView
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
    view: SplitView = SplitView(),
    chosen: Mapping[str, Any] | None = None,
) -> FittedModel:
    """Fit, evaluate and save one model, or reuse it when its key is unchanged. The key
    holds the model's class and settings, the split, and the content it reads; ``seed``
    is the model's seed unless its settings give one.

    ``view`` says which part of ``split`` it fits on (:class:`~fusionrank.data.splits.SplitView`):
    the split (``models/<name>/``), train + valid (``models_refit/<name>/``, evaluated on
    test like the first) or an out-of-fold fold (``models_fold<k>of<n>/<name>/``, not
    evaluated: it only feeds the ranker's labels). ``chosen``: what the fit on the split chose
    on valid (:func:`refit_settings`): a model with a training loop trains that many epochs
    without early stopping, and a setting the model chose is given as its only value."""
    cls = spec.model_class()
    content = {m: content_keys.get(m, m) for m in spec.modalities()}
    key = stage_key("model", name, spec.cls, spec.settings, split_key, content, view, chosen)
    out = folder / ("models" if view.kind == "split" else f"models_{view.name}") / name
    measured = view.kind != "fold"
    if not force and is_fresh(out, key):
        log(f"  {name}{_where(view)}: cached")
        model = load_model(out / "model", cls)
        if not measured:
            return FittedModel(model, {}, pd.DataFrame(), key, True)
        return FittedModel(
            model, read_json(out / "metrics.json"), pd.read_parquet(out / "per_user.parquet"), key, True
        )
    log(f"  {name}{_where(view)}: fitting")
    begin_stage(out)
    model = spec.build(name, seed, progress, chosen)
    model.fit(view.of(split))
    metrics: dict[str, Any] = {}
    per_user = pd.DataFrame()
    if measured:
        result = evaluate(model, split, evaluation.ks, metrics=evaluation.metrics)
        metrics, per_user = result.to_dict(), result.per_user
        write_parquet(per_user, out / "per_user.parquet")
        write_json(out / "metrics.json", metrics)
    model.save(out / "model")
    mark_done(out, key)
    return FittedModel(model, metrics, per_user, key)


def best_epochs(model: Recommender) -> int | None:
    """The epoch count a model's training loop chose on valid, or None for a model without
    a loop. A loop that kept its start (epoch 0) is refitted with none where its config
    accepts 0 (``MIN_EPOCHS``: the hybrid keeps its ridge map), else with one epoch (an
    untrained start is random)."""
    if not model.history or "best_epoch" not in model.history:
        return None
    floor = int(getattr(type(model.config), "MIN_EPOCHS", 1))
    return max(floor, int(model.history["best_epoch"]))


def refit_settings(model: Recommender) -> dict[str, Any]:
    """What a refit on train + valid, or an out-of-fold fit, reuses of the fit on the split,
    so that nothing is chosen again on data whose valid part is gone or is another fold: the
    epoch count (:func:`best_epochs`, as ``epochs``) and the settings the model chose on
    valid (``history["chosen"]``, e.g. the hybrid's ``warm_blend`` and ``cold_scales``)."""
    epochs = best_epochs(model)
    chosen = dict((model.history or {}).get("chosen", {}))
    return {**({"epochs": epochs} if epochs is not None else {}), **chosen}


def _where(view: SplitView) -> str:
    return "" if view.kind == "split" else f" ({view.name})"
