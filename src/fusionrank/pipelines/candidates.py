"""The ``features`` stage of ``fusionrank run``: each source's candidates, their union, and
the (user, candidate) feature table for the label stage (valid) and the test stage.

Nothing here reads test interactions: candidates and features come from the train-fitted
models and the training history; valid interactions only label the label stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import TEST, TRAIN, USER_ID, VALID
from fusionrank.data.dataset import Dataset
from fusionrank.data.errors import DataError
from fusionrank.data.splits import Split
from fusionrank.features.table import FeatureContext, attach_labels, build_features
from fusionrank.io import begin_stage, mark_done, read_json, write_json
from fusionrank.pipelines.cache import is_fresh
from fusionrank.pipelines.config import RunConfig
from fusionrank.pipelines.models_stage import write_parquet
from fusionrank.recommender import Recommender
from fusionrank.retrieval.candidates import (
    candidate_recall_by_source,
    candidates_frame,
    source_candidates,
    union_candidates,
)
from fusionrank.retrieval.index import IndexConfig, VectorIndex

Log = Callable[[str], None]


def retrieve_source(
    model: Recommender, users: np.ndarray, n: int, exclude: sp.csr_matrix, index: IndexConfig
) -> pd.DataFrame:
    """Top-n of one source: through the vector index when one is set and the model has
    user and item vectors whose inner product is its score, else by exact scoring."""
    if index.kind != "exact":
        u_vec, i_vec = model.user_vectors(), model.item_vectors()
        if u_vec is not None and i_vec is not None:
            idx, _ = VectorIndex(i_vec, index).search(u_vec[users], n, exclude[users])
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
    split: Split,
    data: Dataset,
    models: dict[str, Recommender],
    content: dict[str, np.ndarray],
    item_item: str,
) -> FeatureContext:
    """Training-only inputs of the feature table, from the dataset's profile and the models."""
    genres = domains = side = None
    if data.profile.genres:
        genres, _ = split.genres()
    try:
        domains = split.item_domains().astype(str)
    except DataError:  # the dataset has no domains: no cross-domain features
        domains = None
    if data.users is not None:
        table = data.users.assign(**{USER_ID: data.users[USER_ID].astype(str)}).set_index(USER_ID)
        side = side_feature_frame(table.reindex(split.users.ids))
    weights = models[item_item].item_similarity() if item_item in models else None
    if weights is not None and not isinstance(weights, np.ndarray):  # sparse (ItemKNN, RP3beta): densify
        weights = np.asarray(weights.todense())
    return FeatureContext(
        train=split.matrix(TRAIN),
        sources={name: m.score for name, m in models.items()},
        interactions=split.train,
        content=content,
        genres=genres,
        user_side=side,
        domains=domains,
        item_item=weights,
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
    """Candidates and features for the label stage (valid) and the test stage, cached."""
    out = folder / "features"
    if not force and is_fresh(out, key):
        log("  candidates and features: cached")
        return (
            pd.read_parquet(out / "features_valid.parquet"),
            pd.read_parquet(out / "features_test.parquet"),
            read_json(out / "candidate_recall.json"),
        )
    begin_stage(out)
    train = split.matrix(TRAIN)
    exclude = {VALID: train, TEST: split.matrix(TRAIN, VALID)}
    truth = {VALID: split.matrix(VALID), TEST: split.matrix(TEST)}
    tables, recall = {}, {}
    users = np.flatnonzero(np.diff(train.indptr) > 0)
    sources = {name: models[name] for name in config.sources}  # retrieval; every model is a feature
    ctx = feature_context(split, data, models, content, config.features.item_item)
    for stage in (VALID, TEST):
        for m in models.values():
            m.at_stage(stage)
        per_source = {
            s: retrieve_source(m, users, config.retrieval.n, exclude[stage], config.retrieval.index)
            for s, m in sources.items()
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
        m.at_stage(TEST)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(tables[VALID], out / "features_valid.parquet")
    write_parquet(tables[TEST], out / "features_test.parquet")
    write_json(out / "candidate_recall.json", recall)
    mark_done(out, key)
    return tables[VALID], tables[TEST], recall
