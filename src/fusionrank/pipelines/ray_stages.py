"""``fusionrank run`` with ``engine: ray``: the per-user stages in Ray actors.

The driver keeps every decision and every file: it fits (or reuses) the models, lists the
chunks of users, writes each chunk's feature rows as one row group, and evaluates. The
work per chunk moves: a pool of actors (one CPU each) loads the run's inputs once from the
run folder with the driver's own functions (:mod:`fusionrank.pipelines.inputs`: dataset,
split, content vectors, each model's saved weights), and computes a chunk's candidates and
feature rows with the local engine's own code (:class:`fusionrank.pipelines.candidates.StageChunks`). Results
come back in chunk order (``ActorPool.map``), so the tables are the same as the local
engine's. The ranker's test predictions go the same way, one row group of the test table
per call, each actor loading the saved booster.

On a cluster, the run folder and the data folder must be at the same paths on every node
(shared storage): actors read the stage outputs the driver wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusionrank.columns import ITEM_IDX, USER_IDX
from fusionrank.pipelines.config import RunConfig
from fusionrank.recommender import Stage


class FeatureActor:
    """Loads a run's inputs once; computes one chunk of a stage's feature rows per call."""

    def __init__(self, config: RunConfig, folder: str, stage: Stage) -> None:
        import torch

        from fusionrank.features.table import FeatureBuilder
        from fusionrank.pipelines.candidates import StageChunks, feature_context
        from fusionrank.pipelines.inputs import open_inputs, saved_models

        torch.set_num_threads(1)
        inputs = open_inputs(config)
        models = saved_models(config, Path(folder))
        builder = FeatureBuilder(
            feature_context(inputs.split, inputs.data, models, inputs.content, config.features.item_item),
            config.features,
        )
        self.work = StageChunks(config, inputs.split, models, builder, stage)

    def run(self, rows: np.ndarray) -> tuple[pd.DataFrame, dict[str, int]]:
        return self.work(rows)


class PredictActor:
    """Loads the saved ranker once; scores one row group of a feature table per call."""

    def __init__(self, ranker_dir: str, table: str) -> None:
        from fusionrank.features.shards import ShardedTable
        from fusionrank.ranker.lgbm import LTRRanker

        self.ranker = LTRRanker.load(ranker_dir)
        self.table = ShardedTable(table)

    def run(self, group: int) -> np.ndarray:
        rows = self.table.read_group(group, [USER_IDX, ITEM_IDX, *self.ranker.features])
        return np.asarray(self.ranker.predict(rows), dtype=np.float32)


def actor_count(config: RunConfig, n_tasks: int) -> int:
    """``ray.actors`` (default: one per CPU of the cluster), never more than the tasks."""
    import ray

    n = config.ray.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, min(n, n_tasks))


def _pool(config: RunConfig, actor: type, *args: Any, n_tasks: int) -> Any:
    """An ``ActorPool`` of :func:`actor_count` actors, one CPU each."""
    import ray
    from ray.util import ActorPool

    remote: Any = ray.remote(num_cpus=1)(actor)
    return ActorPool([remote.remote(*args) for _ in range(actor_count(config, n_tasks))])


def features_on_ray(
    config: RunConfig, folder: Path, stage: Stage, chunks: list[np.ndarray], log: Callable[[str], None]
) -> Iterator[tuple[pd.DataFrame, dict[str, int]]]:
    """Each chunk's feature rows and candidate hits, computed in Ray actors, in chunk order.
    Runs on the Ray of this process (``fusionrank run`` starts or joins it)."""
    from fusionrank.ray_support import ray_session

    with ray_session(config.ray.address, quiet=True):
        log(f"  {stage}: {len(chunks)} chunks of users on {actor_count(config, len(chunks))} Ray actors")
        pool = _pool(config, FeatureActor, config, str(folder.resolve()), stage, n_tasks=len(chunks))
        yield from pool.map(lambda a, rows: a.run.remote(rows), chunks)


def predictions_on_ray(config: RunConfig, ranker_dir: Path, table: Path, n_groups: int) -> list[np.ndarray]:
    """The saved ranker's scores of every row group of ``table``, computed in Ray actors."""
    from fusionrank.ray_support import ray_session

    with ray_session(config.ray.address, quiet=True):
        pool = _pool(config, PredictActor, str(ranker_dir.resolve()), str(table.resolve()), n_tasks=n_groups)
        return list(pool.map(lambda a, g: a.run.remote(g), range(n_groups)))
