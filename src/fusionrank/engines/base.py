"""The engine contract: where a stage's chunk work and the ranker's boosting run.

A stage describes its work as a :class:`Work` (a picklable recipe that builds the function
of a stream of chunks once per worker) and a list of chunks; an :class:`Engine` maps it
over the chunks and hands the results back. Domain code never asks which engine it runs on:
the choice is made once per run or job (:func:`fusionrank.engines.get_engine`), the way a
``concurrent.futures.Executor`` is chosen once and then only ``map`` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd

C = TypeVar("C")
R = TypeVar("R")

ChunkFn = Callable[[Iterable[C]], Iterator[R]]
"""The function of a stream of chunks: one result per chunk, in the chunks' order."""


@dataclass(frozen=True)
class Work(Generic[C, R]):
    """A chunk computation an engine can run anywhere.

    ``build`` is called once per worker (in this process, or in a remote actor: then it is
    pickled, so it must be a picklable callable such as a class or a ``functools.partial``
    of module-level functions) and returns the :data:`ChunkFn`. ``here`` is the same
    function already built in this process (a model the driver loaded anyway); the local
    engine uses it instead of building a second copy, remote workers never see it."""

    build: Callable[[], ChunkFn[C, R]]
    here: ChunkFn[C, R] | None = field(default=None, compare=False)
    threads: int | None = None
    """Threads each remote worker may use (None: the node's CPUs shared among the workers)."""
    gpus: float = 0
    """GPUs each remote worker reserves (a fraction shares a GPU)."""


@dataclass
class MapStats:
    """Where and when the results of the last :meth:`Engine.map` came back."""

    workers: int = 1
    """Workers the chunks were spread over."""
    nodes: dict[str, int] = field(default_factory=dict)
    """Chunks computed on each node (by node id); empty for the local engine."""
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the map started, chunk position) of each result, in arrival order."""


@dataclass(frozen=True)
class RankTable:
    """A learning-to-rank table for a booster: features, labels, query-group sizes."""

    x: pd.DataFrame
    y: np.ndarray
    group: np.ndarray
    users: np.ndarray
    """The user of each row (sorted; a group is one user)."""


@dataclass(frozen=True)
class BoosterFit:
    """A trained LightGBM booster, its round count (the best one when it stopped early) and
    the stopping set's NDCG at ``eval_at`` there (NaN without a stopping set)."""

    booster: Any
    iterations: int
    stop_score: float


@runtime_checkable
class Engine(Protocol):
    """Where work runs. ``with engine:`` holds its resources (a Ray instance) for a run or a
    job; :meth:`map` and :meth:`train_booster` also work outside such a block."""

    name: str
    stats: MapStats
    """Of the last :meth:`map`."""

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...

    def check_device(self, device: str) -> None:
        """Refuse, in one line, a torch device this engine cannot give its workers."""

    def placement(self, n_chunks: int, work: Work[Any, Any] | None = None) -> str:
        """Where ``n_chunks`` chunks would run, for a log line ("" when in this process)."""

    def map(self, work: Work[C, R], chunks: Sequence[C], *, ordered: bool = True) -> Iterator[R]:
        """``work`` over ``chunks``: results in chunk order, or as they come with
        ``ordered=False``. Fills :attr:`stats`."""

    def train_booster(
        self,
        params: dict[str, Any],
        train: RankTable,
        stop: RankTable | None,
        rounds: int,
        early_stopping_rounds: int,
        *,
        workers: int = 1,
        storage: str | None = None,
    ) -> BoosterFit:
        """A LightGBM booster with ``params`` on ``train``; early stopping on ``stop``'s
        NDCG at ``params["eval_at"]`` when given. ``workers`` and ``storage`` are the
        data-parallel workers and checkpoint folder of engines that distribute boosting."""

    def summary(self, rows: Sequence[int], unit: str) -> str | None:
        """A line on where the last map ran and how fast (``rows`` per chunk), or None."""
