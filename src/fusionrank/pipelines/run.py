"""``fusionrank run CONFIG``: single models -> candidates -> features -> LightGBM ranker ->
evaluation and report, each stage cached under ``<out>/<name>/``.

Protocol (also written into the report):

- every single model is fitted on **train**; models with a training loop stop early on
  **valid**;
- the ranker's labels are the **valid** interactions: candidates and features for the
  label stage come from the train-fitted models with train items excluded;
- early stopping of the ranker uses a held-out share of those valid users;
- at test time the same models, features (train history) and ranker score candidates
  with train and valid items excluded; **test** interactions are read only by the
  evaluator. Models that read history as a sequence (SASRec) read valid items as history
  at test time, exactly as their single-model evaluation does.

The stages live in :mod:`fusionrank.pipelines.stages` (embed, models, features, ranker,
report), each a function of its own section of the config and typed inputs; this module
only orders them, chooses the engines once, and writes what the run measured.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fusionrank.columns import TEST, TRAIN, VALID
from fusionrank.data.splits import TEMPORAL_KINDS, Split, SplitView
from fusionrank.engines import Engine, get_engine
from fusionrank.io import remove_stale_temporaries, sha256_file, write_json
from fusionrank.pipelines.cache import stage_key
from fusionrank.pipelines.config import RunConfig
from fusionrank.pipelines.lock import folder_lock
from fusionrank.pipelines.stages.embed import embed_content
from fusionrank.pipelines.stages.features import FeatureInputs, FeatureSettings, TableJob, features_stage
from fusionrank.pipelines.stages.inputs import RunSource, SavedModel, content_arrays
from fusionrank.pipelines.stages.models import FittedModel, model_stage, refit_settings
from fusionrank.pipelines.stages.ranker import RankerSettings, headroom, ranker_stage
from fusionrank.recommender import Stage

LTR = "ltr"
Log = Callable[[str], None]


@dataclass
class RunOutput:
    """What a run wrote and measured."""

    folder: Path
    metrics: dict[str, Any]
    """The ``metrics.json`` payload."""
    per_user: dict[str, pd.DataFrame]
    importance: pd.DataFrame
    ablation: list[dict[str, Any]]
    recall: dict[str, dict[str, float]]
    time_s: float = 0.0
    """Wall time of the whole run (also in ``timings.json``, kept apart from the metrics)."""


class _StageClock:
    """Wall seconds of each stage, in order (``timings.json``'s ``stages_s``), and the
    process's peak RSS so far at the end of each (``peak_rss_mb``: the stage where it
    jumps is the one that holds the most)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = now - self._last
        self.peaks[stage] = round(peak_rss_mb(), 1)
        self._last = now


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM) in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def run_pipeline(
    config: RunConfig, force: bool = False, log: Log = print, progress: bool = False
) -> RunOutput:
    """Run (or reuse) every stage of ``config``; writes ``<out>/<name>/`` and returns its results.
    ``log`` gets one line per stage; ``progress`` shows the models' training bars. A second
    run into the same folder while this one runs is refused (:class:`RunLockedError`)."""
    folder = Path(config.out) / config.name
    engine = get_engine(config.engine, config.ray.options(), quiet=not progress)
    same = config.ranker.engine == config.engine  # one engine (one Ray) when both name the same
    ranker_engine = (
        engine if same else get_engine(config.ranker.engine, config.ray.options(), quiet=not progress)
    )
    with folder_lock(folder, log):
        remove_stale_temporaries(folder, recursive=False)  # the report's, if a run was killed there
        with engine, ranker_engine:  # held for the whole run
            return _run_locked(config, folder, force, log, progress, engine, ranker_engine)


def protocol_views(config: RunConfig, split: Split) -> list[SplitView]:
    """The views of the split the protocol fits models on besides the split itself: train +
    valid (``refit``), and the out-of-fold folds of stacked labels (on a split that follows
    time, every fold but the first, which has nothing before it to fit on; the first
    ``fold_tables`` of them, fitted on valid too with ``fold_fit: train+valid``)."""
    protocol = config.protocol
    views = [SplitView("refit")] if protocol.refit else []
    if protocol.labels == "stacked":
        first = 1 if split.config.kind in TEMPORAL_KINDS else 0
        folds = range(first, protocol.folds)[: protocol.fold_tables]
        with_valid = protocol.fold_fit == "train+valid"
        views += [SplitView("fold", k, protocol.folds, config.split.seed, with_valid) for k in folds]
    return views


def _run_locked(
    config: RunConfig,
    folder: Path,
    force: bool,
    log: Log,
    progress: bool,
    engine: Engine,
    ranker_engine: Engine,
) -> RunOutput:
    from fusionrank.pipelines.stages.report import write_report

    t_start = time.perf_counter()
    clock = _StageClock()
    source = RunSource(config.dataset, config.root, config.split)
    data, split = source.open()
    modalities = config.content_modalities(data.profile)  # of the content features
    needed = {*modalities, *(m for spec in config.models.values() for m in spec.modalities())}
    folders = embed_content(data, needed, progress, log)
    content = content_arrays({m: folders[m] for m in modalities}, split)
    split_key = stage_key(
        data.name,
        config.dataset,
        config.split,
        {p: len(split.part(p)) for p in (TRAIN, VALID, TEST)},
        split.n_users,
        split.n_items,
    )
    content_keys = {m: sha256_file(f / "manifest.json")[:16] for m, f in folders.items()}
    clock.lap("split and content")
    protocol = config.protocol

    def fit_all(view: SplitView, chosen: dict[str, dict[str, Any]] | None = None) -> dict[str, FittedModel]:
        return {
            name: model_stage(
                name,
                spec,
                config.split.seed,
                config.evaluation,
                split,
                split_key,
                content_keys,
                folder,
                force,
                log,
                progress,
                view,
                None if chosen is None else chosen[name],
            )
            for name, spec in config.models.items()
        }

    log("models:")
    fitted = fit_all(SplitView())
    chosen = {name: refit_settings(f.model) for name, f in fitted.items()}
    views = protocol_views(config, split)
    variants = {view: fit_all(view, chosen) for view in views}  # refit, out-of-fold folds
    test_view = SplitView("refit") if protocol.refit else SplitView()
    measured = variants.get(test_view, fitted)  # every single model under the ranker's protocol
    metrics = {name: f.metrics for name, f in measured.items()}
    per_user = {name: f.per_user for name, f in measured.items()}
    clock.lap("models")
    log("candidates and features:")
    feat_key = stage_key(
        "features",
        {n: f.key for n, f in fitted.items()},
        {view.name: {n: f.key for n, f in fits.items()} for view, fits in variants.items()},
        protocol,
        config.retrieval,
        config.sources,
        config.features,
        {m: content_keys[m] for m in content},
    )
    settings = FeatureSettings(config.retrieval, config.features, config.sources, config.split.seed)

    def job(name: str, stage: Stage, view: SplitView, fits: dict[str, FittedModel]) -> TableJob:
        models_dir = folder / ("models" if view.kind == "split" else f"models_{view.name}")
        inputs = FeatureInputs(
            source,
            {m: str(folders[m].resolve()) for m in modalities},
            {
                n: SavedModel(spec.cls, str((models_dir / n / "model").resolve()))
                for n, spec in config.models.items()
            },
            view,
        )
        return TableJob(name, stage, view.of(split), {n: f.model for n, f in fits.items()}, inputs)

    jobs = [job(VALID, VALID, SplitView(), fitted)]
    jobs += [job(view.name, VALID, view, variants[view]) for view in views if view.kind == "fold"]
    jobs.append(job(TEST, TEST, test_view, measured))
    tables = features_stage(settings, jobs, content, feat_key, folder, force, log, progress, engine)
    clock.lap("features")
    log("ranker:")
    rank_key = stage_key("ranker", feat_key, config.ranker, config.evaluation, config.ablation)
    ranking = RankerSettings(config.ranker, config.evaluation, config.ablation, tuple(config.models))
    ranked = ranker_stage(
        ranking, tables.labels, tables.test, split, rank_key, folder, force, log, engine, ranker_engine
    )
    ranker, result = ranked.ranker, ranked.result
    metrics[LTR] = {
        "model": LTR,
        "metrics": result.metrics,
        "best_iteration": ranker.best_iteration,
        "stop_ndcg@10": ranker.stop_score,
        "dropped_groups": ranker.dropped_groups,
        "candidates": ranker.depth,
        "depth_scores": ranker.depth_scores,
        "features": ranker.features,
        **({"tuning": ranked.tuning, "settings": dataclasses.asdict(ranker.config)} if ranked.tuning else {}),
    }
    test_split = test_view.of(split)
    pool = {
        VALID: headroom(tables.labels[VALID], split.matrix(VALID), split.matrix(TRAIN), config.evaluation),
        TEST: headroom(tables.test, split.matrix(TEST), test_split.matrix(TRAIN, VALID), config.evaluation),
    }
    per_user[LTR] = result.per_user
    timings = {
        "models": {name: m.pop("timings", {}) for name, m in metrics.items()},
        "cached": sorted(name for name, f in fitted.items() if f.cached)
        + (["ranker"] if ranked.cached else []),
    }
    payload = {  # numbers only: two runs of one config and seed write the same bytes
        "dataset": data.name,
        "split": dataclasses.asdict(config.split),
        "protocol": protocol.name,
        "models": metrics,
        "candidate_recall": tables.recall,
        "candidate_only": tables.only,
        "candidate_headroom": pool,
        **({"ann_recall": tables.ann_recall} if tables.ann_recall else {}),
        "ablation": ranked.ablation,
    }
    write_json(folder / "metrics.json", payload)
    write_json(folder / "config.json", config.to_json())
    split.users.save(folder / "users.parquet")
    split.items.save(folder / "items.parquet")
    output = RunOutput(folder, payload, per_user, ranker.importance(), ranked.ablation, tables.recall)
    clock.lap("ranker")
    write_report(output, config, split, Path(config.peers) if config.peers else None)
    clock.lap("report")
    output.time_s = time.perf_counter() - t_start
    write_json(
        folder / "timings.json",
        {"total_s": output.time_s, "stages_s": clock.laps, "peak_rss_mb": clock.peaks, **timings},
    )
    return output
