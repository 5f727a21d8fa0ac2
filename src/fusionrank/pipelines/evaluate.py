"""Fit a model on a saved split and evaluate it by full ranking (the ``evaluate`` stage)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fusionrank.collab.base import Recommender
from fusionrank.collab.ease import EASE
from fusionrank.collab.itemknn import ItemKNN
from fusionrank.collab.neighbours import RP3beta, UserKNN
from fusionrank.collab.pop import Pop
from fusionrank.columns import TEST, TRAIN, VALID
from fusionrank.data.dataset import default_root, load_dataset
from fusionrank.data.splits import Split, SplitConfig, prepare_split
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

BASELINES: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "userknn": UserKNN,
    "rp3beta": RP3beta,
    "ease": EASE,
}
"""The CLI's ``--model`` choices for the fit-and-score baselines."""


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["reg=500", "k=50"]`` -> ``{"reg": 500, "k": 50}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def settings_for(name: str, cls: type[Recommender], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides that apply to model ``name``: ``name.key=v`` always, plain ``key=v`` when the
    model's config has that field."""
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    out = {k: v for k, v in overrides.items() if "." not in k and k in known}
    for key, value in overrides.items():
        prefix, _, field = key.partition(".")
        if field and prefix == name:
            if field not in known:
                raise ValueError(f"{name} has no setting {field!r}; it has {sorted(known)}")
            out[field] = value
    return out


def build_model(name: str, overrides: dict[str, Any] | None = None) -> Recommender:
    """Instantiate a baseline by its CLI name with config overrides."""
    if name not in BASELINES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(BASELINES)}")
    cls = BASELINES[name]
    return cls(dataclasses.replace(cls.config_class(), **settings_for(name, cls, overrides or {})))


def check_overrides(models: list[str], overrides: dict[str, Any]) -> None:
    """Refuse a setting that no requested model has (a typo would otherwise be ignored)."""
    for key in overrides:
        prefix, _, field = key.partition(".")
        if field:
            if prefix not in models:
                raise ValueError(f"setting {key!r} names model {prefix!r}, which is not requested")
            continue
        if not any(
            key in {f.name for f in dataclasses.fields(BASELINES[m].config_class)}
            for m in models
            if m in BASELINES
        ):
            raise ValueError(f"no requested model has a setting {key!r}")


def evaluate_model_on_split(
    model: Recommender, split: Split, model_name: str, eval_config: EvalConfig | None = None
) -> dict[str, Any]:
    """Fit on train, report validation metrics (train excluded) and test metrics (train and
    valid excluded). Returns the metrics JSON of the design contract."""
    train = split.matrix(TRAIN)
    t0 = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    popularity = np.asarray(train.sum(axis=0)).ravel()
    t1 = time.perf_counter()
    valid = (
        evaluate_ranking(model.score, split.matrix(VALID), train, eval_config, popularity=popularity)
        if len(split.valid)
        else None
    )
    t2 = time.perf_counter()
    test = evaluate_ranking(
        model.score, split.matrix(TEST), split.matrix(TRAIN, VALID), eval_config, popularity=popularity
    )
    t3 = time.perf_counter()
    return {
        "dataset": split.meta.get("dataset"),
        "split": split.config.kind,
        "seed": split.config.seed,
        "model": model_name,
        "config": dataclasses.asdict(model.config),
        "metrics": test.metrics,
        "valid_metrics": valid.metrics if valid else {},
        "n_users": {"test": test.n_users, "valid": valid.n_users if valid else 0},
        "timings": {"fit_s": fit_s, "evaluate_valid_s": t2 - t1, "evaluate_s": t3 - t2},
    }


def run_evaluate(
    dataset: str,
    models: list[str],
    split: SplitConfig,
    root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    eval_config: EvalConfig | None = None,
) -> dict[str, dict[str, Any]]:
    """Load (or make) the split and evaluate each named model on it; keyed by model name."""
    unknown = [m for m in models if m not in BASELINES]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; expected one of {sorted(BASELINES)}")
    check_overrides(models, overrides or {})
    root = Path(root) if root is not None else default_root()
    data = load_dataset(dataset, root)
    saved = prepare_split(data, split, root)
    return {
        name: evaluate_model_on_split(build_model(name, overrides), saved, name, eval_config)
        for name in models
    }
