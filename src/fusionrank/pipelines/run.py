"""``fusionrank run CONFIG``: single models -> candidates -> features -> LightGBM ranker ->
evaluation and report, each stage cached under ``runs/<name>/``.

Protocol (also written into the report):

- every single model is fitted on **train**; neural models stop early on **valid**;
- the ranker's labels are the **valid** interactions: candidates and features for the
  label stage come from the train-fitted models with train items excluded;
- early stopping of the ranker uses a held-out share of those valid users;
- at test time the same models, features (train history) and ranker score candidates
  with train and valid items excluded; **test** interactions are read only by the
  evaluator. SASRec alone reads valid items as history at test time, exactly as its
  single-model evaluation does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.collab.base import Recommender
from fusionrank.collab.ease import EASE
from fusionrank.collab.sasrec import SASRec
from fusionrank.collab.torch_base import TorchRecommender
from fusionrank.columns import ITEM_IDX, TEST, TRAIN, USER_ID, USER_IDX, VALID
from fusionrank.data.dataset import Dataset, default_root, load_dataset
from fusionrank.data.side import genre_matrix, item_domains
from fusionrank.data.splits import Split, prepare_split
from fusionrank.evaluation.ranking import EvalResult, ScoreFn, evaluate_ranking
from fusionrank.features.table import (
    FeatureContext,
    attach_labels,
    build_features,
    feature_columns,
    feature_group,
)
from fusionrank.fusion.cold_items import ContentRecommender
from fusionrank.fusion.content import Content, align, ensure_vectors, fuse_modalities
from fusionrank.io import atomic_path, read_json, sha256_file, write_json
from fusionrank.pipelines.cache import is_fresh, mark_done, stage_key
from fusionrank.pipelines.config import RunConfig
from fusionrank.ranker.lgbm import LTRRanker
from fusionrank.retrieval.candidates import (
    candidate_recall_by_source,
    candidates_frame,
    source_candidates,
    union_candidates,
)
from fusionrank.retrieval.index import VectorIndex, mips_vectors

LTR = "ltr"
Log = Callable[[str], None]


@dataclass
class RunOutput:
    folder: Path
    metrics: dict[str, Any]
    """The ``metrics.json`` payload."""
    per_user: dict[str, pd.DataFrame]
    importance: pd.DataFrame
    ablation: list[dict[str, Any]]
    recall: dict[str, dict[str, float]]


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a table under a temporary name, then rename it into place."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


# --- single models -------------------------------------------------------------------
def build_run_model(
    name: str, settings: dict[str, Any], train: dict[str, Any], seed: int, progress: bool = False
) -> Recommender:
    """A single model of the run by name (the names of :data:`~fusionrank.pipelines.config.RUN_MODELS`)."""
    from fusionrank.pipelines.cold_start import config_with_overrides
    from fusionrank.pipelines.evaluate import BASELINES
    from fusionrank.pipelines.train import COLLAB_MODELS, build_collab

    if name in BASELINES:
        cls = BASELINES[name]
        return cls(config_with_overrides(cls, settings, seed))
    if name in COLLAB_MODELS:
        return build_collab(name, settings, {"seed": seed, "progress": progress, **train})
    if name == "hybrid":
        from fusionrank.fusion.cold_items import Hybrid

        return Hybrid(config_with_overrides(Hybrid, {"progress": progress, **settings}, seed))
    raise ValueError(f"unknown run model {name!r}")


def _fit(model: Recommender, split: Split, content: np.ndarray | None) -> Recommender:
    train = split.matrix(TRAIN)
    if isinstance(model, TorchRecommender):
        model.fit(train, split.matrix(VALID), interactions=split.train)
    elif isinstance(model, ContentRecommender):
        if content is None:
            raise ValueError("the hybrid model needs content vectors (set modalities)")
        model.fit(train, Content(content, np.abs(content).sum(axis=1) > 0, ()))
    else:
        model.fit(train)
    return model


def _set_stage(model: Recommender, split: Split, stage: str) -> None:
    """SASRec reads its history from interactions: train for labels, train + valid for test."""
    if isinstance(model, SASRec):
        frames = [split.train] if stage == VALID else [split.train, split.valid]
        model.set_history(pd.concat(frames))


def _evaluate(score: ScoreFn, split: Split, config: RunConfig) -> EvalResult:
    train = split.matrix(TRAIN)
    return evaluate_ranking(
        score,
        split.matrix(TEST),
        split.matrix(TRAIN, VALID),
        config.evaluation,
        popularity=np.asarray(train.sum(axis=0)).ravel(),
    )


def model_stage(
    name: str,
    config: RunConfig,
    split: Split,
    split_key: str,
    content: np.ndarray | None,
    content_key: str,
    folder: Path,
    force: bool,
    log: Log,
    progress: bool = False,
) -> tuple[Recommender, dict[str, Any], pd.DataFrame, str]:
    spec = config.models[name]
    key = stage_key("model", name, spec, split_key, content_key if name == "hybrid" else "")
    out = folder / "models" / name
    if not force and is_fresh(out, key):
        log(f"  {name}: cached")
        model = Recommender.load(out / "model")
        return model, read_json(out / "metrics.json"), pd.read_parquet(out / "per_user.parquet"), key
    log(f"  {name}: fitting")
    model = build_run_model(name, spec.settings, spec.train, config.split.seed, progress)
    t0 = time.perf_counter()
    _fit(model, split, content)
    fit_s = time.perf_counter() - t0
    _set_stage(model, split, TEST)
    result = _evaluate(model.score, split, config)
    metrics = {"model": name, "metrics": result.metrics, "timings": {"fit_s": fit_s}}
    if isinstance(model, TorchRecommender):
        metrics["best_epoch"] = model.history.best_epoch
    model.save(out / "model")
    write_parquet(result.per_user, out / "per_user.parquet")
    write_json(out / "metrics.json", metrics)
    mark_done(out, key)
    return model, metrics, result.per_user, key


# --- candidates and features ---------------------------------------------------------
def retrieve_source(
    model: Recommender, users: np.ndarray, n: int, exclude: sp.csr_matrix, config: RunConfig
) -> pd.DataFrame:
    """Top-n of one source; embedding models go through the vector index when one is set."""
    index_cfg = config.retrieval.index
    if index_cfg.kind != "exact" and isinstance(model, TorchRecommender) and hasattr(model, "item_bias"):
        u_vec, i_vec = mips_vectors(model.user_embeddings(), model.item_embeddings(), model.item_bias())
        idx, _ = VectorIndex(i_vec, index_cfg).search(u_vec[users], n, exclude[users])
        return candidates_frame(users, idx)
    return source_candidates(model.score, users, n, exclude)


def side_feature_frame(table: pd.DataFrame, max_levels: int = 64) -> pd.DataFrame:
    """User side columns as ranker features: numbers stay numbers, columns with few
    distinct values become categorical, the rest (ids, zip codes) are left out."""
    side = pd.DataFrame(index=range(len(table)))
    for col in table.columns:
        values = table[col].reset_index(drop=True)
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum():
            side[col] = numeric.astype(np.float32)
        elif values.nunique() <= max_levels:
            side[col] = values.astype(str).astype("category")
    return side


def feature_context(
    split: Split, data: Dataset, models: dict[str, Recommender], content: dict[str, np.ndarray]
) -> FeatureContext:
    """Training-only inputs of the feature table."""
    train = split.matrix(TRAIN)
    genres = domains = side = None
    if data.items is not None and "class" in data.items.columns:
        genres, _ = genre_matrix(data.items, split.items)
        dom = item_domains(data.items)
        domains = np.array([dom.get(i, "") for i in split.items.ids])
    if data.users is not None:
        table = data.users.assign(**{USER_ID: data.users[USER_ID].astype(str)}).set_index(USER_ID)
        table = table.reindex(split.users.ids)
        side = side_feature_frame(table)
    ease = next((m for m in models.values() if isinstance(m, EASE)), None)
    return FeatureContext(
        train=train,
        sources={name: m.score for name, m in models.items()},
        interactions=split.train,
        content=content,
        genres=genres,
        user_side=side,
        domains=domains,
        item_item=ease.weights if ease is not None else None,
    )


def candidates_and_features(
    config: RunConfig,
    split: Split,
    data: Dataset,
    models: dict[str, Recommender],
    content: dict[str, np.ndarray],
    key: str,
    folder: Path,
    force: bool,
    log: Log,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Candidates and features for the label stage (valid) and the test stage."""
    out = folder / "features"
    if not force and is_fresh(out, key):
        log("  candidates and features: cached")
        return (
            pd.read_parquet(out / "features_valid.parquet"),
            pd.read_parquet(out / "features_test.parquet"),
            read_json(out / "candidate_recall.json"),
        )
    train = split.matrix(TRAIN)
    exclude = {VALID: train, TEST: split.matrix(TRAIN, VALID)}
    truth = {VALID: split.matrix(VALID), TEST: split.matrix(TEST)}
    tables, recall = {}, {}
    users = np.flatnonzero(np.diff(train.indptr) > 0)
    ctx = feature_context(split, data, models, content)
    for stage in (VALID, TEST):
        for m in models.values():
            _set_stage(m, split, stage)
        per_source = {
            s: retrieve_source(models[s], users, config.retrieval.n, exclude[stage], config)
            for s in config.retrieval.sources
        }
        recall[stage] = candidate_recall_by_source(per_source, truth[stage])
        cands = union_candidates(per_source)
        log(
            f"  {stage}: {len(cands):,} candidates for {len(users):,} users,"
            f" recall {recall[stage]['union']:.3f}"
        )
        table = build_features(cands, ctx, exclude[stage], config.features)
        tables[stage] = attach_labels(table, truth[VALID]) if stage == VALID else table
    for m in models.values():
        _set_stage(m, split, TEST)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(tables[VALID], out / "features_valid.parquet")
    write_parquet(tables[TEST], out / "features_test.parquet")
    write_json(out / "candidate_recall.json", recall)
    mark_done(out, key)
    return tables[VALID], tables[TEST], recall


# --- ranker ----------------------------------------------------------------------------
def dense_scores(table: pd.DataFrame, scores: np.ndarray, shape: tuple[int, int]) -> ScoreFn:
    """A score function over all items: candidates get the ranker score, others -inf."""
    full = np.full(shape, -np.inf, np.float32)
    full[table[USER_IDX].to_numpy(), table[ITEM_IDX].to_numpy()] = scores
    return lambda users: full[users]


def fit_ranker(config: RunConfig, valid: pd.DataFrame, columns: list[str]) -> LTRRanker:
    return LTRRanker(config.ranker).fit(valid, columns)


def ablation_rows(
    config: RunConfig,
    split: Split,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    full: LTRRanker,
    full_ndcg: float,
    log: Log,
) -> list[dict[str, Any]]:
    """Test NDCG@10 of the ranker refitted without each feature group and without each source,
    beside the NDCG@10 on its held-out stopping users (valid), the figure a choice may use."""
    columns = feature_columns(valid)
    rows = [
        {
            "variant": "all features",
            "dropped": "",
            "n_features": len(columns),
            "stop ndcg@10 (valid)": full.stop_score,
            "ndcg@10": full_ndcg,
        }
    ]
    variants = []
    for group in sorted({feature_group(c) for c in columns}):
        variants.append((f"without group {group}", group, [c for c in columns if feature_group(c) != group]))
    for source in config.models:
        mine = {f"score_{source}", f"z_{source}", f"rank_{source}"}
        if mine & set(columns):
            variants.append((f"without source {source}", source, [c for c in columns if c not in mine]))
    ease_only = [c for c in columns if c in {"score_ease", "z_ease", "rank_ease"}]
    if ease_only:
        variants.append(("EASE features only", "all but ease", ease_only))
    shape = (split.n_users, split.n_items)
    for label, dropped, cols in variants:
        if not cols:
            continue
        ranker = fit_ranker(config, valid, cols)
        ndcg = _evaluate(dense_scores(test, ranker.predict(test), shape), split, config).metrics["ndcg@10"]
        log(f"  ablation {label}: ndcg@10 {ndcg:.4f}")
        rows.append(
            {
                "variant": label,
                "dropped": dropped,
                "n_features": len(cols),
                "stop ndcg@10 (valid)": ranker.stop_score,
                "ndcg@10": ndcg,
            }
        )
    return rows


# --- the whole run -----------------------------------------------------------------------
def load_modalities(
    root: Path, dataset: str, split: Split, modalities: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], str]:
    out, shas = {}, []
    for m in modalities:
        folder = ensure_vectors(root, dataset, m)
        out[m], _ = align(folder, split.items)
        shas.append(sha256_file(folder / "manifest.json"))
    return out, stage_key(modalities, shas)


def run_pipeline(
    config: RunConfig, force: bool = False, log: Log = print, progress: bool = False
) -> RunOutput:
    """Run (or reuse) every stage of ``config``; writes ``<out>/<name>/`` and returns its results.
    ``log`` gets one line per stage; ``progress`` shows the models' training bars."""
    from fusionrank.pipelines.report import write_report

    t_start = time.perf_counter()
    folder = Path(config.out) / config.name
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(config.root) if config.root else default_root()
    data = load_dataset(config.dataset, root)
    split = prepare_split(data, config.split, root)
    split_key = stage_key(
        config.dataset,
        config.split,
        {p: len(split.part(p)) for p in (TRAIN, VALID, TEST)},
        split.n_users,
        split.n_items,
    )
    log(f"content: {', '.join(config.modalities) or 'none'}")
    content, content_key = load_modalities(root, config.dataset, split, config.modalities)
    hybrid_content = fuse_modalities(list(content.values())) if content else None
    log("models:")
    models, metrics, per_user, keys = {}, {}, {}, {}
    for name in config.models:
        models[name], metrics[name], per_user[name], keys[name] = model_stage(
            name, config, split, split_key, hybrid_content, content_key, folder, force, log, progress
        )
    log("candidates and features:")
    feat_key = stage_key("features", keys, config.retrieval, config.features, content_key)
    valid, test, recall = candidates_and_features(
        config, split, data, models, content, feat_key, folder, force, log
    )
    log("ranker:")
    columns = feature_columns(valid)
    rank_key = stage_key("ranker", feat_key, config.ranker, config.evaluation, config.ablation)
    rdir = folder / "ranker"
    shape = (split.n_users, split.n_items)
    cached = not force and is_fresh(rdir, rank_key)
    if cached:
        log("  cached")
        ranker = LTRRanker.load(rdir)
        ablation = read_json(rdir / "ablation.json")
    else:
        ranker = fit_ranker(config, valid, columns)
        ranker.save(rdir)
    result = _evaluate(dense_scores(test, ranker.predict(test), shape), split, config)
    log(
        f"  {len(columns)} features, {ranker.best_iteration} trees,"
        f" test ndcg@10 {result.metrics['ndcg@10']:.4f}"
    )
    if not cached:
        ndcg = result.metrics["ndcg@10"]
        ablation = ablation_rows(config, split, valid, test, ranker, ndcg, log) if config.ablation else []
        write_json(rdir / "ablation.json", ablation)
        mark_done(rdir, rank_key)
    metrics[LTR] = {
        "model": LTR,
        "metrics": result.metrics,
        "best_iteration": ranker.best_iteration,
        "stop_ndcg@10": ranker.stop_score,
        "features": columns,
    }
    per_user[LTR] = result.per_user
    payload = {
        "dataset": config.dataset,
        "split": dataclasses.asdict(config.split),
        "models": metrics,
        "candidate_recall": recall,
        "ablation": ablation,
        "time_s": time.perf_counter() - t_start,
    }
    write_json(folder / "metrics.json", payload)
    write_json(folder / "config.json", dataclasses.asdict(config))
    split.users.save(folder / "users.parquet")
    split.items.save(folder / "items.parquet")
    output = RunOutput(folder, payload, per_user, ranker.importance(), ablation, recall)
    write_report(output, config, split)
    return output
