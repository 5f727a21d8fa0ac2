"""The cold-start protocols of ``fusionrank evaluate``: cold items, cold users, cross-domain."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from fusionrank.columns import TEST, TRAIN, VALID
from fusionrank.data.dataset import default_root, load_dataset
from fusionrank.data.side import genre_matrix
from fusionrank.data.splits import SplitConfig, prepare_split
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.fusion.cold_items import ContentKNN, EASEContent, GenrePop, Hybrid, RandomScores, TwoTower
from fusionrank.fusion.content import load_content

COLD_ITEM_MODELS = {
    "hybrid": Hybrid,
    "two-tower": TwoTower,
    "random": RandomScores,
    "genre-pop": GenrePop,
    "content-knn": ContentKNN,
    "ease-content": EASEContent,
}


def config_with_overrides(cls, overrides: dict[str, Any] | None, seed: int):
    """``cls.config_class()`` with ``overrides`` (unknown names refused) and the seed set."""
    cfg = cls.config_class()
    fields = {f.name for f in dataclasses.fields(cfg)}
    overrides = dict(overrides or {})
    if "seed" in fields:
        overrides.setdefault("seed", seed)
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {sorted(unknown)}; it has {sorted(fields)}")
    return dataclasses.replace(cfg, **overrides)


def run_cold_items(
    dataset: str,
    model: str,
    seed: int = 2020,
    root: str | Path | None = None,
    modalities: tuple[str, ...] = ("text",),
    overrides: dict[str, Any] | None = None,
    eval_config: EvalConfig | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """20% of items held out with all their interactions. Headline metrics: protocol (a),
    ranking only the cold items for users who interacted with them; ``all_items``:
    protocol (b), ranking every item (training and validation items excluded)."""
    if model not in COLD_ITEM_MODELS:
        raise ValueError(f"unknown cold-items model {model!r}; expected one of {sorted(COLD_ITEM_MODELS)}")
    root = Path(root) if root is not None else default_root()
    data = load_dataset(dataset, root)
    split = prepare_split(data, SplitConfig(kind="cold-items", seed=seed), root)
    cls = COLD_ITEM_MODELS[model]
    config = config_with_overrides(cls, overrides, seed)
    kwargs = {}
    if cls is GenrePop:
        kwargs["genres"] = genre_matrix(data.items, split.items)[0]
    rec = cls(config, **kwargs)
    content = (
        load_content(root, dataset, split.items, modalities)
        if cls in (ContentKNN, EASEContent, Hybrid, TwoTower)
        else None
    )
    known = split.matrix(TRAIN, VALID)
    t0 = time.perf_counter()
    rec.fit(known, content)
    fit_s = time.perf_counter() - t0
    truth = split.matrix(TEST)
    cold = np.zeros(split.n_items, dtype=bool)
    cold[split.items.to_index(split.meta["cold_items"])] = True
    t1 = time.perf_counter()
    a = evaluate_ranking(rec.score, truth, None, eval_config, item_mask=cold)
    b = evaluate_ranking(rec.score, truth, known, eval_config)
    result = {
        "dataset": dataset,
        "split": "cold-items",
        "seed": seed,
        "model": model,
        "modalities": list(modalities) if content is not None else [],
        "config": dataclasses.asdict(config),
        "metrics": a.metrics,
        "all_items": b.metrics,
        "n_users": a.n_users,
        "n_cold_items": int(cold.sum()),
        "timings": {"fit_s": fit_s, "evaluate_s": time.perf_counter() - t1},
    }
    if out is not None:
        _save(Path(out), result, split.items.ids, getattr(rec, "_columns", None))
    return result


COLD_USER_MODELS = ("profile", "pop", "demographic-pop")


def run_cold_users(
    dataset: str,
    model: str,
    seed: int = 2020,
    root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    eval_config: EvalConfig | None = None,
) -> dict[str, Any]:
    """10% of users held out with all their interactions; they are served from side features."""
    from fusionrank.collab.pop import Pop
    from fusionrank.data.side import user_features
    from fusionrank.fusion.profiles import DemographicPop, Profile

    if model not in COLD_USER_MODELS:
        raise ValueError(f"unknown cold-users model {model!r}; expected one of {list(COLD_USER_MODELS)}")
    root = Path(root) if root is not None else default_root()
    data = load_dataset(dataset, root)
    if data.users is None:
        raise ValueError(f"{dataset} has no user table: cold users need side features")
    split = prepare_split(data, SplitConfig(kind="cold-users", seed=seed), root)
    features, _ = user_features(data.users, split.users)
    known = split.matrix(TRAIN, VALID)
    t0 = time.perf_counter()
    if model == "pop":
        rec, config = Pop().fit(known), {}
    else:
        cls = Profile if model == "profile" else DemographicPop
        cfg = config_with_overrides(cls, overrides, seed)
        rec, config = cls(cfg).fit(known, features), dataclasses.asdict(cfg)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = evaluate_ranking(rec.score, split.matrix(TEST), known, eval_config)
    return {
        "dataset": dataset,
        "split": "cold-users",
        "seed": seed,
        "model": model,
        "config": config,
        "metrics": res.metrics,
        "n_users": res.n_users,
        "timings": {"fit_s": fit_s, "evaluate_s": time.perf_counter() - t1},
    }


CROSS_DOMAIN_MODELS = ("cross-domain", "emcdr", "pop")


def run_cross_domain(
    dataset: str,
    model: str,
    seed: int = 2020,
    root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    eval_config: EvalConfig | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Users cold in the target domain (B) served from their source-domain (A) history;
    ranking over target-domain items only."""
    from fusionrank.fusion.cross_domain import (
        EMCDR,
        CrossDomain,
        TargetPop,
        make_cross_domain_split,
    )

    if model not in CROSS_DOMAIN_MODELS:
        raise ValueError(f"unknown cross-domain model {model!r}; expected one of {list(CROSS_DOMAIN_MODELS)}")
    root = Path(root) if root is not None else default_root()
    split = make_cross_domain_split(load_dataset(dataset, root), seed=seed)
    t0 = time.perf_counter()
    if model == "pop":
        rec, config = TargetPop().fit(split), {}
    else:
        cls = CrossDomain if model == "cross-domain" else EMCDR
        cfg = config_with_overrides(cls, overrides, seed)
        rec, config = cls(cfg).fit(split), dataclasses.asdict(cfg)
    fit_s = time.perf_counter() - t0
    target = split.domain == split.target
    t1 = time.perf_counter()
    res = evaluate_ranking(
        rec.score,
        split.matrix(split.test, split.target),
        None,
        eval_config,
        item_mask=target,
        users=split.test_users,
    )
    result = {
        "dataset": dataset,
        "split": "cross-domain",
        "seed": seed,
        "model": model,
        "config": config,
        "domains": {"source": split.source, "target": split.target},
        "metrics": res.metrics,
        "n_users": res.n_users,
        "n_target_items": int(target.sum()),
        "timings": {"fit_s": fit_s, "evaluate_s": time.perf_counter() - t1},
    }
    if out is not None:
        _save(Path(out), result, None, None)
    return result


def _save(out: Path, metrics: dict[str, Any], item_ids, columns) -> None:
    """metrics.json, and the model's item vectors (vectors contract) when it has them."""
    from fusionrank.encoders.vectors import write_vectors
    from fusionrank.io import write_json

    out.mkdir(parents=True, exist_ok=True)
    if columns is not None:
        vectors = np.ascontiguousarray(columns.T)
        write_vectors(out / "item_vectors" / "vectors-00000.parquet", item_ids, vectors)
        write_json(
            out / "item_vectors" / "manifest.json",
            {
                "encoder": f"fusion:{metrics['model']}",
                "weights": {"source": "trained here"},
                "dim": int(vectors.shape[1]),
                "normalised": False,
                "rows": int(vectors.shape[0]),
                "errors": 0,
                "shards": [{"file": "vectors-00000.parquet", "rows": int(vectors.shape[0])}],
            },
        )
    write_json(out / "metrics.json", metrics)
