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

The stages live in :mod:`~fusionrank.pipelines.models_stage`,
:mod:`~fusionrank.pipelines.candidates` and :mod:`~fusionrank.pipelines.ranker_stage`.
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

from fusionrank.columns import TEST, TRAIN, USER_IDX, VALID
from fusionrank.engines import Engine, get_engine
from fusionrank.features.shards import ShardedTable
from fusionrank.io import begin_stage, mark_done, read_json, remove_stale_temporaries, sha256_file, write_json
from fusionrank.pipelines.cache import is_fresh, stage_key
from fusionrank.pipelines.candidates import candidates_and_features
from fusionrank.pipelines.config import RunConfig
from fusionrank.pipelines.inputs import open_inputs
from fusionrank.pipelines.lock import folder_lock
from fusionrank.pipelines.models_stage import model_stage
from fusionrank.pipelines.ranker_stage import ablation_rows, fit_ranker, label_table, ranker_metrics
from fusionrank.ranker.lgbm import LTRRanker

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


def _run_locked(
    config: RunConfig,
    folder: Path,
    force: bool,
    log: Log,
    progress: bool,
    engine: Engine,
    ranker_engine: Engine,
) -> RunOutput:
    from fusionrank.pipelines.report import write_report

    t_start = time.perf_counter()
    clock = _StageClock()
    inputs = open_inputs(config, progress, log)
    data, split, content = inputs.data, inputs.split, inputs.content
    split_key = stage_key(
        data.name,
        config.dataset,
        config.split,
        {p: len(split.part(p)) for p in (TRAIN, VALID, TEST)},
        split.n_users,
        split.n_items,
    )
    content_keys = {m: sha256_file(f / "manifest.json")[:16] for m, f in inputs.folders.items()}
    clock.lap("split and content")
    log("models:")
    fitted = {
        name: model_stage(name, config, split, split_key, content_keys, folder, force, log, progress)
        for name in config.models
    }
    models = {name: f.model for name, f in fitted.items()}
    metrics = {name: f.metrics for name, f in fitted.items()}
    per_user = {name: f.per_user for name, f in fitted.items()}
    clock.lap("models")
    log("candidates and features:")
    feat_key = stage_key(
        "features",
        {n: f.key for n, f in fitted.items()},
        config.retrieval,
        config.sources,
        config.features,
        {m: content_keys[m] for m in content},
    )
    tables = candidates_and_features(
        config, split, data, models, content, feat_key, folder, force, log, progress, engine
    )
    recall = tables.recall
    clock.lap("features")
    log("ranker:")
    columns = ShardedTable(tables.valid).feature_names()
    rank_key = stage_key("ranker", feat_key, config.ranker, config.evaluation, config.ablation)
    rdir = folder / "ranker"
    cached = not force and is_fresh(rdir, rank_key)
    if cached:
        log("  cached")
        ranker = LTRRanker.load(rdir)
        ablation = read_json(rdir / "ablation.json")
    else:
        begin_stage(rdir)
        valid = label_table(tables.valid, config.ranker)
        log(f"  training on {valid[USER_IDX].nunique():,} label users, {len(valid):,} rows")
        ranker = fit_ranker(config, valid, columns, ranker_engine)
        ranker.save(rdir)
    result = ranker_metrics(ranker, tables.test, split, config, engine)
    log(
        f"  {len(columns)} features, {ranker.best_iteration} trees,"
        f" test ndcg@10 {result.metrics['ndcg@10']:.4f}"
    )
    if not cached:
        ndcg = result.metrics["ndcg@10"]
        ablation = (
            ablation_rows(config, split, valid, tables.test, ranker, ndcg, log, engine, ranker_engine)
            if config.ablation
            else []
        )
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
    timings = {
        "models": {name: m.pop("timings", {}) for name, m in metrics.items()},
        "cached": sorted(name for name, f in fitted.items() if f.cached) + (["ranker"] if cached else []),
    }
    payload = {  # numbers only: two runs of one config and seed write the same bytes
        "dataset": data.name,
        "split": dataclasses.asdict(config.split),
        "models": metrics,
        "candidate_recall": recall,
        **({"ann_recall": tables.ann_recall} if tables.ann_recall else {}),
        "ablation": ablation,
    }
    write_json(folder / "metrics.json", payload)
    write_json(folder / "config.json", config.to_json())
    split.users.save(folder / "users.parquet")
    split.items.save(folder / "items.parquet")
    output = RunOutput(folder, payload, per_user, ranker.importance(), ablation, recall)
    clock.lap("ranker")
    write_report(output, config, split, Path(config.peers) if config.peers else None)
    clock.lap("report")
    output.time_s = time.perf_counter() - t_start
    write_json(
        folder / "timings.json",
        {"total_s": output.time_s, "stages_s": clock.laps, "peak_rss_mb": clock.peaks, **timings},
    )
    return output
