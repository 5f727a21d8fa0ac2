"""The ``features`` stage of ``fusionrank run``: each source's candidates, their union, and
the (user, candidate) feature table for the label stage (valid) and the test stage.

Nothing here reads test interactions: candidates and features come from the train-fitted
models and the training history; valid interactions only label the label stage. The stage
reads its own section of the run (:class:`FeatureSettings`) and, for workers outside this
process, where the run's inputs are (:class:`FeatureInputs`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from fusionrank.capabilities import HasItemVectors, HasUserVectors, item_item_weights
from fusionrank.columns import ITEM_IDX, TEST, TRAIN, USER_ID, USER_IDX, VALID
from fusionrank.data.errors import DataError
from fusionrank.data.splits import Split, SplitView
from fusionrank.engines import ChunkFn, Engine, Work, get_engine
from fusionrank.features.shards import ShardWriter
from fusionrank.features.table import (
    FeatureBuilder,
    FeatureConfig,
    FeatureContext,
    SourceChunk,
    attach_labels,
)
from fusionrank.io import atomic_path, begin_stage, mark_done, read_json, write_json
from fusionrank.pipelines.cache import is_fresh
from fusionrank.pipelines.config import RetrievalConfig
from fusionrank.pipelines.stages.inputs import RunSource, SavedModel, content_arrays, saved_models
from fusionrank.recommender import Recommender, Stage
from fusionrank.retrieval.candidates import candidates_frame, source_candidates, union_candidates
from fusionrank.retrieval.index import IndexConfig, VectorIndex, resolve_kind
from fusionrank.scoring import chunk_scores

Log = Callable[[str], None]


@dataclass
class ChunkCounts:
    """What a chunk's candidates hold: each source's (and the union's) count of relevant
    pairs among its candidates, and each source's candidates no other source retrieved."""

    hits: dict[str, int]
    only: dict[str, int]


FeatureChunk = tuple[pd.DataFrame, ChunkCounts]
"""A chunk's feature rows (sorted by user) and its candidate counts."""


@dataclass(frozen=True)
class FeatureSettings:
    """The features stage's section of a run."""

    retrieval: RetrievalConfig
    features: FeatureConfig
    sources: tuple[str, ...]
    """Models whose top-n enter the union of candidates."""
    seed: int
    """Seed of the users sampled to check an approximate index's recall."""


@dataclass(frozen=True)
class FeatureInputs:
    """Where a worker outside this process finds what the driver holds in memory: the
    dataset and split (and the view of it the table is for), the content features' vectors
    folders, the models the run saved."""

    source: RunSource
    content: dict[str, str]
    """Vectors folder of each content modality of the features."""
    models: dict[str, SavedModel]
    view: SplitView = SplitView()


@dataclass
class TableJob:
    """One feature table of the stage: ``features_<name>.parquet``, the candidates and
    features of ``stage`` (``valid``: labelled by the view's valid part; ``test``) of a
    view of the split (its train is the history), scored by ``models``."""

    name: str
    stage: Stage
    split: Split
    models: dict[str, Recommender]
    inputs: FeatureInputs


def retrieve_source(
    model: Recommender, users: np.ndarray, n: int, exclude: sp.csr_matrix, index: IndexConfig
) -> pd.DataFrame:
    """Top-n of one source: through the vector index when one is set and the model has
    user and item vectors whose inner product is its score, else by exact scoring."""
    retriever = Retriever(model, n, index, exclude)
    if retriever.index is not None:
        return retriever.top(users)
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
    models: dict[str, Recommender],
    content: dict[str, np.ndarray],
    item_item: str | None,
) -> FeatureContext:
    """Training-only inputs of the feature table, from the dataset's profile and the models."""
    data = split.require_dataset("the feature table")
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
    weights = transfer_weights(models, item_item)
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


def transfer_weights(models: dict[str, Recommender], name: str | None) -> np.ndarray | sp.spmatrix | None:
    """The item-item weights of the cross-domain transfer feature: those of the run model
    ``name``, or by default the first run model whose weights are a full (dense) matrix.
    Neighbour lists (sparse, top-k per item) rarely link items across domains, so they are
    used only when named."""
    if name is not None:
        return item_item_weights(models[name])
    for model in models.values():
        weights = item_item_weights(model)
        if isinstance(weights, np.ndarray):
            return weights
    return None


@dataclass
class FeatureTables:
    """The feature stage's outputs: the label tables (the valid one first, then any
    out-of-fold ones) and the test table on disk."""

    labels: dict[str, Path]
    """Table name (``valid``, ``fold1of5`` ...) -> its labelled table."""
    test: Path
    recall: dict[str, dict[str, float]]
    """Candidate recall per source and of the union (``union``), per table."""
    only: dict[str, dict[str, int]]
    """Candidates each source retrieved and no other source did, per table."""
    ann_recall: dict[str, float] = field(default_factory=dict)
    """Recall@n of each source's approximate index against exact search (sampled users);
    empty when every source was searched exactly."""


def feature_chunk_size(config: FeatureConfig, n_items: int, n_sources: int, budget: int = 1 << 30) -> int:
    """Users per chunk: the configured count, lowered so that one chunk of every source's
    scores (float32, plus working copies) stays within ``budget`` bytes."""
    per_user = max(1, n_items * 4 * (n_sources + 3))
    return max(16, min(config.chunk_size, budget // per_user))


class Retriever:
    """One source's view of each chunk of users (:class:`SourceChunk`: its top-n and its
    scores of candidate pairs): from the chunk's scores of every item, or, when a vector
    index is set and the model has user and item vectors, from the index and inner products
    of those vectors only (the catalogue is never scored)."""

    def __init__(self, model: Recommender, n: int, index: IndexConfig, exclude: sp.csr_matrix) -> None:
        self.model, self.n, self.exclude = model, n, exclude
        self.index: VectorIndex | None = None
        if not (isinstance(model, HasUserVectors) and isinstance(model, HasItemVectors)):
            return  # scored exactly
        if resolve_kind(index, exclude.shape[1]) != "exact":
            self.item_vectors = np.ascontiguousarray(model.item_vectors(), np.float32)
            self.index = VectorIndex(self.item_vectors, index)
            self.user_vectors = np.ascontiguousarray(model.user_vectors(), np.float32)

    @property
    def approximate(self) -> bool:
        return self.index is not None and self.index.kind in ("hnsw", "ivf")

    def chunk(self, rows: np.ndarray) -> SourceChunk:
        """The source's view of the chunk of users ``rows``."""
        if self.index is None:
            return SourceChunk.from_scores(chunk_scores(self.model.score, rows, self.exclude, None), self.n)
        queries = self.user_vectors[rows]
        idx, vals = self.index.search(queries, self.n, self.exclude[rows])

        def pairs(local: np.ndarray, items: np.ndarray) -> np.ndarray:
            return np.einsum("nd,nd->n", queries[local], self.item_vectors[items]).astype(np.float32)

        return SourceChunk(np.asarray(idx, np.int64), np.asarray(vals, np.float32), pairs)

    def top(self, rows: np.ndarray) -> pd.DataFrame:
        """``user_idx, item_idx, rank`` of the source's top-n for users ``rows``."""
        return candidates_frame(rows, self.chunk(rows).items)


class StageChunks:
    """Candidates and feature rows of one stage (``valid``: labelled, or ``test``), one chunk
    of users per call: each model scores the chunk once; the retrieval sources' top-n of
    those scores form the candidates, the same scores give the source features. The one
    chunk computation of every engine."""

    def __init__(
        self,
        settings: FeatureSettings,
        split: Split,
        models: dict[str, Recommender],
        builder: FeatureBuilder,
        stage: Stage,
    ) -> None:
        for m in models.values():
            m.at_stage(stage)
        self.stage, self.models, self.builder = stage, models, builder
        self.exclude = split.matrix(TRAIN) if stage == VALID else split.matrix(TRAIN, VALID)
        self.truth = split.matrix(stage)
        retrieval = settings.retrieval
        self.sources = settings.sources
        self.retrievers = {
            name: Retriever(m, retrieval.n, retrieval.index, self.exclude) for name, m in models.items()
        }

    @classmethod
    def open(
        cls, settings: FeatureSettings, inputs: FeatureInputs, stage: Stage
    ) -> ChunkFn[np.ndarray, FeatureChunk]:
        """The chunk function of a worker outside this process: opens the run's inputs and
        the models the run folder saved, as the driver did."""
        split = inputs.view.of(inputs.source.open()[1])
        models = saved_models(inputs.models)
        context = feature_context(
            split, models, content_arrays(inputs.content, split), settings.features.item_item
        )
        return cls(settings, split, models, FeatureBuilder(context, settings.features), stage).stream

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[FeatureChunk]:
        """:meth:`__call__` over a stream of chunks (the engines' chunk function)."""
        for rows in chunks:
            yield self(rows)

    def __call__(self, rows: np.ndarray) -> FeatureChunk:
        """The chunk's feature rows (sorted by user) and its counts: each source's (and the
        union's) relevant pairs among its candidates, and the candidates only it retrieved."""
        views = {name: r.chunk(rows) for name, r in self.retrievers.items()}
        per_source = {s: candidates_frame(rows, views[s].items) for s in self.sources}
        cands = union_candidates(per_source)
        hits = {s: _hits(frame, self.truth, rows) for s, frame in per_source.items()}
        hits["union"] = _hits(cands, self.truth, rows)
        alone = cands["n_sources"].to_numpy() == 1
        only = {s: int((alone & cands[f"rank_{s}"].notna().to_numpy()).sum()) for s in per_source}
        table = self.builder.chunk(cands, rows, views)
        del views
        if self.stage == VALID:
            table = attach_labels(table, self.truth)
        return table, ChunkCounts(hits, only)


def ann_recall(retriever: Retriever, model: Recommender, users: np.ndarray, n_users: int, seed: int) -> float:
    """Recall@n of the approximate index against exact search on a seeded sample of users."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(users, size=min(n_users, len(users)), replace=False))
    exact = source_candidates(model.score, sample, retriever.n, retriever.exclude)
    approx = retriever.top(sample)
    n_items = retriever.exclude.shape[1]
    key = lambda f: f[USER_IDX].to_numpy(np.int64) * n_items + f[ITEM_IDX].to_numpy(np.int64)  # noqa: E731
    return float(np.isin(key(exact), key(approx)).mean()) if len(exact) else 1.0


def _hits(cands: pd.DataFrame, truth: sp.csr_matrix, rows: np.ndarray) -> int:
    """Relevant pairs of ``truth`` for users ``rows`` that are among ``cands``."""
    sub = sp.coo_matrix(truth[rows])
    if sub.nnz == 0:
        return 0
    n_items = truth.shape[1]
    have = cands[USER_IDX].to_numpy(np.int64) * n_items + cands[ITEM_IDX].to_numpy(np.int64)
    want = rows[sub.row].astype(np.int64) * n_items + sub.col
    return int(np.isin(want, have).sum())


def features_stage(
    settings: FeatureSettings,
    jobs: list[TableJob],
    content: dict[str, np.ndarray],
    key: str,
    folder: Path,
    force: bool,
    log: Log,
    progress: bool = False,
    engine: Engine | None = None,
) -> FeatureTables:
    """Candidates and features of every table ``jobs`` names (the labelled tables and the
    test table), cached.

    Streams in chunks of users: each model scores the chunk once; the retrieval sources'
    top-n of those scores form the candidates, the same scores give the source features,
    and the chunk's rows are appended to ``features_<name>.parquet`` as one row group.
    Memory is one chunk of scores per model, never users x items. The chunks run on
    ``engine`` (in this process, or in workers that open a job's ``inputs`` with
    :meth:`StageChunks.open`) and come back in order: the same tables."""
    out = folder / "features"
    paths = {job.name: out / f"features_{job.name}.parquet" for job in jobs}
    labels = [job.name for job in jobs if job.stage == VALID]
    test = next(job.name for job in jobs if job.stage == TEST)
    if not force and is_fresh(out, key):
        log("  candidates and features: cached")
        ann_file = out / "ann_recall.json"
        return FeatureTables(
            {name: paths[name] for name in labels},
            paths[test],
            read_json(out / "candidate_recall.json"),
            read_json(out / "candidate_only.json"),
            read_json(ann_file) if ann_file.exists() else {},
        )
    begin_stage(out)
    engine = engine or get_engine()
    recall: dict[str, dict[str, float]] = {}
    only: dict[str, dict[str, int]] = {}
    ann: dict[str, float] = {}
    cooccurrence: dict[SplitView, sp.csr_matrix] = {}  # one per training matrix: valid and test share it
    for job in jobs:
        recall[job.name], only[job.name], work, users = _table(
            job, settings, content, paths[job.name], log, progress, engine, cooccurrence
        )
        if job.stage == TEST:
            for s, r in work.retrievers.items():
                if r.approximate:
                    ann[s] = ann_recall(
                        r, job.models[s], users, settings.retrieval.ann_check_users, settings.seed
                    )
                    kind = r.index.kind if r.index else ""
                    log(f"  {s}: {kind} index, recall@{r.n} {ann[s]:.3f} against exact search")
        for m in job.models.values():
            m.at_stage(TEST)
    write_json(out / "candidate_recall.json", recall)
    write_json(out / "candidate_only.json", only)
    if ann:
        write_json(out / "ann_recall.json", ann)
    mark_done(out, key)
    return FeatureTables({name: paths[name] for name in labels}, paths[test], recall, only, ann)


def _table(
    job: TableJob,
    settings: FeatureSettings,
    content: dict[str, np.ndarray],
    path: Path,
    log: Log,
    progress: bool,
    engine: Engine,
    cooccurrence: dict[SplitView, sp.csr_matrix],
) -> tuple[dict[str, float], dict[str, int], StageChunks, np.ndarray]:
    """Write one job's table; its candidate recall, each source's candidates no other
    source retrieved, its chunk work, and its users. ``cooccurrence`` holds the history
    group's neighbours per view already computed (and gets this job's)."""
    split, models = job.split, job.models
    train = split.matrix(TRAIN)
    users = np.flatnonzero(np.diff(train.indptr) > 0)
    view = job.inputs.view
    builder = FeatureBuilder(
        feature_context(split, models, content, settings.features.item_item),
        settings.features,
        cooccurrence.get(view),
    )
    if builder.cooccurrence is not None:
        cooccurrence[view] = builder.cooccurrence
    chunk = feature_chunk_size(settings.features, split.n_items, len(models))
    chunks = [users[a : a + chunk] for a in range(0, len(users), chunk)]
    work = StageChunks(settings, split, models, builder, job.stage)
    hits = dict.fromkeys([*settings.sources, "union"], 0)
    only = dict.fromkeys(settings.sources, 0)
    rows_written = 0
    remote = Work(
        build=partial(StageChunks.open, settings, job.inputs, job.stage), here=work.stream, threads=1
    )
    where = engine.placement(len(chunks), remote)
    if where:
        log(f"  {job.name}: {len(chunks)} chunks of users on {where}")
    with atomic_path(path) as tmp, ShardWriter(tmp) as writer:
        results = engine.map(remote, chunks)
        bar = tqdm(
            results, total=len(chunks), desc=f"features ({job.name})", unit="chunk", disable=not progress
        )
        for table, counts in bar:
            for name, h in counts.hits.items():
                hits[name] += h
            for name, n in counts.only.items():
                only[name] += n
            writer.write(table)
            rows_written += len(table)
    n_truth = work.truth.nnz
    recall = {name: h / n_truth if n_truth else float("nan") for name, h in hits.items()}
    log(f"  {job.name}: {rows_written:,} candidates for {len(users):,} users, recall {recall['union']:.3f}")
    return recall, only, work, users
