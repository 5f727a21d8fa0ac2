"""The ranker's booster trained on Ray Train: the Ray engine's ``train_booster``
(``ranker.engine: ray``).

Ray Train's ``LightGBMTrainer`` starts ``workers`` processes and sets up LightGBM's own
socket network between them (``ray.train.lightgbm.get_network_params``); each worker runs
``lgb.train`` with the data-parallel tree learner on its own part of the table
(``pre_partition``). The table is cut by user into contiguous blocks of whole query groups
with similar row counts (:func:`user_blocks`), so a user's candidates never span two
workers. The parts travel through Ray's object store, so the workers may sit on other
nodes. Every worker holds the whole stopping set, so all of them score the same model on
the same rows and stop at the same round. Worker 0 reports the booster as a checkpoint
(``model.txt``, LightGBM's own text format, under ``storage``); the driver loads it into
the same :class:`lightgbm.Booster` the local ranker saves.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from fusionrank.engines.base import BoosterFit, RankTable
from fusionrank.engines.ray_session import ray_session, ray_temp_dir
from fusionrank.errors import InvalidArgumentError

_runs = itertools.count(1)


def user_blocks(users: np.ndarray, parts: int) -> list[slice]:
    """Row slices of a user-sorted key column: ``parts`` blocks of whole users, each cut at
    the first user boundary at or after an equal share of the rows.

    >>> user_blocks(np.array([0, 0, 0, 1, 1, 2, 3, 3]), 2)
    [slice(0, 5, None), slice(5, 8, None)]
    """
    users = np.asarray(users)
    if len(users) and np.any(np.diff(users) < 0):
        raise InvalidArgumentError("rows must be sorted by user so that each user's rows are contiguous")
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.array([], int)
    if len(starts) < parts:
        raise InvalidArgumentError(
            f"ranker.workers is {parts} but only {len(starts)} users have rows to train on"
        )
    targets = np.arange(1, parts) * len(users) / parts
    nearest = np.clip(np.searchsorted(starts, targets), 1, len(starts) - 1)
    if np.any(np.diff(np.r_[0, nearest, len(starts)]) < 1):  # very uneven users: equal user counts
        nearest = np.linspace(0, len(starts), parts + 1).astype(int)[1:-1]
    bounds = [0, *starts[nearest].tolist(), len(users)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def _part(table: RankTable, rows: slice) -> tuple[Any, np.ndarray, np.ndarray]:
    """Features, labels and group sizes of a block of whole users."""
    _, counts = np.unique(table.users[rows], return_counts=True)
    return table.x.iloc[rows], table.y[rows], counts


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its part of the table, LightGBM's network, ``lgb.train``."""
    import ray
    import ray.train
    from ray.train.lightgbm import get_network_params

    rank = ray.train.get_context().get_world_rank()
    x, y, group = ray.get(config["parts"][rank])
    params = {**config["params"], "tree_learner": "data", "pre_partition": True, **get_network_params()}
    train = lgb.Dataset(x, y, group=group, params={"verbose": -1})
    valid_sets: list[lgb.Dataset] = []
    callbacks: list[Callable[..., Any]] = []
    if config["stop"] is not None:
        sx, sy, sg = ray.get(config["stop"])
        valid_sets = [lgb.Dataset(sx, sy, group=sg, reference=train)]
        callbacks = [lgb.early_stopping(config["early_stopping_rounds"], verbose=False)]
    booster = lgb.train(
        params,
        train,
        num_boost_round=config["rounds"],
        valid_sets=valid_sets,
        valid_names=["stop"][: len(valid_sets)],
        callbacks=callbacks,
    )
    best = int(booster.best_iteration or booster.current_iteration())
    score = float(booster.best_score.get("stop", {}).get(f"ndcg@{config['eval_at']}", math.nan))
    metrics = {"best_iteration": best, "stop_score": score, "rows": len(y), "users": len(group)}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            booster.save_model(os.path.join(folder, "model.txt"), num_iteration=best)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)


def train_on_ray(
    params: dict[str, Any],
    table: RankTable,
    *,
    rounds: int,
    stop: RankTable | None = None,
    early_stopping_rounds: int = 100,
    workers: int = 2,
    storage: str | None = None,
) -> BoosterFit:
    """Train a booster on ``workers`` Ray Train workers; returns it with its round count
    (the best one with ``stop``) and the stopping set's NDCG at ``params["eval_at"]`` there
    (NaN without).

    ``table`` must be sorted by user; ``params`` are LightGBM's (as the local trainer's);
    their ``num_threads`` is each worker's thread count (0: one, the CPU Ray gives it)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    cpus = max(1, int(params.get("num_threads") or 1))
    with ray_session(None, quiet=True) as ray:
        blocks = user_blocks(table.users, workers)
        config = {
            "parts": [ray.put(_part(table, b)) for b in blocks],
            "stop": None if stop is None else ray.put((stop.x, stop.y, stop.group)),
            "params": {**params, "num_threads": cpus},
            "rounds": rounds,
            "early_stopping_rounds": early_stopping_rounds,
            "eval_at": params["eval_at"][0],
        }
        trainer = LightGBMTrainer(
            _worker,
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus}),
            run_config=RunConfig(
                name=f"ranker-{os.getpid()}-{next(_runs)}",
                storage_path=storage or str(ray_temp_dir() / "train"),
            ),
        )
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        if result.checkpoint is None or result.metrics is None:
            raise RuntimeError("Ray Train returned no booster checkpoint")
        with result.checkpoint.as_directory() as folder:
            booster = lgb.Booster(model_file=str(Path(folder) / "model.txt"))
        if storage is None:  # our own scratch: the booster is in memory now
            shutil.rmtree(result.path, ignore_errors=True)
        return BoosterFit(booster, int(result.metrics["best_iteration"]), float(result.metrics["stop_score"]))
