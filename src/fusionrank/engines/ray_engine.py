"""The Ray engine: the work runs in a pool of Ray actors, each of which builds it once
(loads its model, opens its inputs) and then computes one chunk per call; boosters are
trained by Ray Train's ``LightGBMTrainer`` (:mod:`fusionrank.engines.ray_train`).

Where Ray runs: :mod:`fusionrank.engines.ray_session` (the instance of this process, a
joined cluster, or a local instance started for the run or job). ``with engine:`` starts
it in a thread of its own (:func:`~fusionrank.engines.ray_session.ray_in_background`), so
that its start-up overlaps what the caller does meanwhile (loading a model); :meth:`map`
waits for it. On a cluster, every file the work reads must be at the same path on every
node; the driver writes all outputs.

Faults: a dead actor is restarted and its chunk retried :attr:`RayOptions.restarts` times
(Ray's own default, forever, would loop on a chunk that kills its worker every time); then
the map fails with :class:`WorkerDiedError` naming the chunks that did not come back. An
exception raised by the work fails the map as it does locally.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionrank.engines.base import BoosterFit, C, ChunkFn, MapStats, R, RankTable, Work
from fusionrank.engines.ray_session import ray_in_background, ray_session, require_ray
from fusionrank.errors import FusionRankError, InvalidArgumentError


class WorkerDiedError(FusionRankError, RuntimeError):
    """A chunk killed its worker more times than the restarts allow."""

    def __init__(self, message: str, positions: list[int], deaths: int, worker: str = "a Ray worker") -> None:
        super().__init__(message)
        self.positions, self.deaths, self.worker = positions, deaths, worker


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs (none of it changes the results)."""

    address: str | None = None
    """Cluster to join (``host:port`` or ``ray://host:port``); None: ``$RAY_ADDRESS`` when
    set, else a local Ray instance started for the job."""
    actors: int | None = None
    """Actors, each with its own copy of the work (never more than the chunks to do);
    None: one per CPU of the cluster, or with GPUs one per ``gpus_per_actor`` GPUs."""
    gpus_per_actor: float = 0
    """GPUs each actor reserves (with ``device="cuda"``); a fraction shares a GPU."""
    restarts: int = 3
    """Times a dead actor is restarted and its chunk retried before the job fails."""
    exit_at: tuple[str, int, int] | None = None
    """Test seam (the fault tests): ``(counter file, chunk position, times)``. The first
    ``times`` actor calls that reach that chunk count themselves in the file and exit the
    process at once, as a crashed worker would."""

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InvalidArgumentError(f"--actors must be >= 1, got {self.actors}")
        if self.restarts < 0:
            raise InvalidArgumentError(f"restarts must be >= 0, got {self.restarts}")
        if self.gpus_per_actor < 0:
            raise InvalidArgumentError(f"--gpus-per-actor must be >= 0, got {self.gpus_per_actor}")


@dataclass
class RayReport:
    """Where and how fast a map on Ray ran."""

    nodes: dict[str, int]
    """Chunks computed by each Ray node (by node id)."""
    first_back_s: float | None = None
    """Seconds from the driver asking for Ray to the first chunk coming back: what is left
    of Ray's start-up, the actors' start and set-up, and one chunk's work."""
    steady_items_per_s: float | None = None
    """Rows per second once every actor has returned a chunk (None with too few chunks)."""
    unit: str = "shards"

    def summary(self) -> str:
        """The engine's ``ray:`` log line."""
        spread = ", ".join(f"{count} on {node[:8]}" for node, count in sorted(self.nodes.items()))
        line = f"ray: {sum(self.nodes.values())} {self.unit} on {len(self.nodes)} node(s) ({spread})"
        if self.first_back_s is not None:
            line += f"; first {self.unit.rstrip('s')} back after {self.first_back_s:.1f}s"
        if self.steady_items_per_s is not None:
            line += f", then {self.steady_items_per_s:.1f} items/s"
        return line


def _report(
    nodes: dict[str, int], back: list[tuple[float, int]], actors: int, unit: str = "shards"
) -> RayReport:
    """The map's report; the steady rate counts the rows come back after the first
    ``actors`` chunks (by then every actor has started) over the time they took."""
    first = back[0][0] if back else None
    steady = None
    if len(back) > actors and back[-1][0] > back[actors - 1][0]:
        steady = sum(rows for _, rows in back[actors:]) / (back[-1][0] - back[actors - 1][0])
    return RayReport(nodes, first, steady, unit)


ACTORS_START_S = 600
"""How long a map waits for its whole pool of actors to start (each builds its work)
before it fails in one line: a cluster that cannot place them would otherwise wait forever."""


class _Worker:
    """A Ray actor: builds the work once, then computes one chunk per call."""

    def __init__(
        self, build: Callable[[], ChunkFn[Any, Any]], threads: int, exit_at: tuple[str, int, int] | None
    ) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)
        self.node = str(ray.get_runtime_context().get_node_id())
        self.exit_at = exit_at
        self.fn = build()

    def run(self, position: int, chunk: Any) -> tuple[int, str, Any]:
        self._maybe_exit(position)
        return position, self.node, next(iter(self.fn(iter([chunk]))))

    def _maybe_exit(self, position: int) -> None:
        """The test seam of :attr:`RayOptions.exit_at` (one call runs a chunk at a time)."""
        if self.exit_at is None or self.exit_at[1] != position:
            return
        counter = Path(self.exit_at[0])
        times = int(counter.read_text()) if counter.exists() else 0
        if times >= self.exit_at[2]:
            return
        counter.write_text(str(times + 1))
        os._exit(1)


class RayEngine:
    """Runs :class:`Work` in Ray actors and boosters on Ray Train (``pip install
    'fusionrank[ray]'``)."""

    name = "ray"

    def __init__(self, options: RayOptions | None = None, quiet: bool = True) -> None:
        require_ray()
        self.options = options or RayOptions()
        self.quiet = quiet
        self.stats = MapStats()
        self._depth = 0
        self._hold: ExitStack | None = None
        self._get_ray: Callable[[], Any] | None = None

    @classmethod
    def create(
        cls, options: RayOptions | None = None, *, quiet: bool = True, strict: bool = False
    ) -> RayEngine:
        """The engine :func:`~fusionrank.engines.get_engine` hands out."""
        if options is not None and not isinstance(options, RayOptions):
            raise InvalidArgumentError(f"the ray engine takes RayOptions, not {type(options).__name__}")
        return cls(options, quiet=quiet)

    def __enter__(self) -> RayEngine:
        if self._depth == 0:
            hold = ExitStack()
            self._get_ray = hold.enter_context(ray_in_background(self.options.address, self.quiet))
            self._hold = hold
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._hold is not None:
            hold, self._hold, self._get_ray = self._hold, None, None
            hold.__exit__(*exc)

    @contextmanager
    def _ray(self) -> Iterator[Any]:
        """The ``ray`` module: the engine's session when entered, else one for this call."""
        if self._get_ray is not None:
            yield self._get_ray()
            return
        with ray_session(self.options.address, self.quiet) as ray:
            yield ray

    def check_device(self, device: str) -> None:
        """Ray gives GPUs only to actors that reserve them."""
        cuda = device.startswith("cuda")
        if cuda and not self.options.gpus_per_actor:
            raise InvalidArgumentError(
                "--device cuda on the ray engine needs --gpus-per-actor (e.g. 1): "
                "Ray gives GPUs only to actors that reserve them"
            )
        if self.options.gpus_per_actor and not cuda:
            raise InvalidArgumentError("--gpus-per-actor needs --device cuda")

    def _pool(self, ray: Any, work: Work[Any, Any], n_chunks: int) -> tuple[int, int]:
        """(actors, CPUs per actor) on this cluster."""
        total = ray.cluster_resources()
        cpus, gpus = int(total.get("CPU", 0)), float(total.get("GPU", 0))
        g = self.options.gpus_per_actor
        if g and gpus < g:
            raise InvalidArgumentError(f"--gpus-per-actor {g:g}: the Ray cluster has {gpus:g} GPU(s)")
        actors = self.options.actors or (int(gpus // g) if g else max(1, cpus // (work.threads or 1)))
        actors = max(1, min(actors, n_chunks))
        if work.threads is not None:
            return actors, work.threads
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        return actors, max(1, min(cpus // actors, max(node_cpus, default=1)))

    def placement(self, n_chunks: int, work: Work[Any, Any] | None = None) -> str:
        with self._ray() as ray:
            actors, _ = self._pool(ray, work or Work(build=_nothing, threads=1), n_chunks)
        return f"{actors} Ray actors"

    def map(self, work: Work[C, R], chunks: Sequence[C], *, ordered: bool = True) -> Iterator[R]:
        """``work`` over ``chunks`` in a pool of actors (one chunk in flight per actor):
        results in chunk order, or as they come back with ``ordered=False``."""
        chunks = list(chunks)
        self.stats = MapStats()
        if not chunks:
            return
        t0 = time.perf_counter()
        options = self.options
        with self._ray() as ray:
            from ray.util import ActorPool

            actors, threads = self._pool(ray, work, len(chunks))
            self.stats.workers = actors
            remote: Any = ray.remote(
                num_cpus=threads,
                num_gpus=options.gpus_per_actor or None,
                max_restarts=options.restarts,
                max_task_retries=options.restarts,
            )(_Worker)
            handles = [remote.remote(work.build, threads, options.exit_at) for _ in range(actors)]
            self._wait_for(ray, handles, threads)
            pool = ActorPool(handles)
            submit = lambda actor, item: actor.run.remote(*item)  # noqa: E731
            items = list(enumerate(chunks))
            results = pool.map(submit, items) if ordered else pool.map_unordered(submit, items)
            left = set(range(len(chunks)))
            try:
                for position, node, result in results:
                    left.discard(position)
                    self.stats.nodes[node] = self.stats.nodes.get(node, 0) + 1
                    self.stats.arrivals.append((time.perf_counter() - t0, position))
                    yield result
            except ray.exceptions.RayActorError as exc:
                raise WorkerDiedError(
                    f"a Ray worker died {options.restarts + 1} times running chunk(s) among "
                    f"{sorted(left)[:10]} (restarts: {options.restarts}) ({type(exc).__name__})",
                    sorted(left),
                    options.restarts + 1,
                ) from exc
            finally:
                for handle in handles:
                    ray.kill(handle)

    def _wait_for(self, ray: Any, handles: list[Any], threads: int) -> None:
        """Wait until every actor has built its work: its error (a missing file, other
        weights than the driver's) is raised here, once, and a pool the cluster cannot
        place fails after :data:`ACTORS_START_S` seconds instead of waiting forever."""
        _, late = ray.wait(
            [h.__ray_ready__.remote() for h in handles], num_returns=len(handles), timeout=ACTORS_START_S
        )
        if late:
            for handle in handles:
                ray.kill(handle)
            gpus = f" and {self.options.gpus_per_actor:g} GPU(s)" if self.options.gpus_per_actor else ""
            raise InvalidArgumentError(
                f"Timed out while starting actors: {len(late)} of {len(handles)} Ray actors ({threads} "
                f"CPU(s){gpus} each) did not start within {ACTORS_START_S} s; ask for fewer --actors "
                "or a cluster with more resources"
            )
        try:
            ray.get([h.__ray_ready__.remote() for h in handles])
        except ray.exceptions.RayActorError as exc:
            for handle in handles:
                ray.kill(handle)
            cause = exc.__cause__ or exc
            raise WorkerDiedError(
                f"a Ray worker could not build its work: {str(cause).strip().splitlines()[-1]}",
                [],
                self.options.restarts + 1,
            ) from exc

    def train_booster(
        self,
        params: dict[str, Any],
        train: RankTable,
        stop: RankTable | None,
        rounds: int,
        early_stopping_rounds: int,
        *,
        workers: int = 2,
        storage: str | None = None,
    ) -> BoosterFit:
        """Ray Train's ``LightGBMTrainer`` with ``workers`` data-parallel workers, the table
        cut by whole users; ``params["num_threads"]`` threads each (0: one)."""
        from fusionrank.engines.ray_train import train_on_ray

        with self._ray():
            return train_on_ray(
                params,
                train,
                rounds=rounds,
                stop=stop,
                early_stopping_rounds=early_stopping_rounds,
                workers=workers,
                storage=storage,
            )

    def report(self, rows: Sequence[int], unit: str = "shards") -> RayReport:
        """The last map's report (``rows``: the rows of each chunk, by position)."""
        back = [(t, rows[position]) for t, position in self.stats.arrivals]
        return _report(self.stats.nodes, back, self.stats.workers, unit)

    def summary(self, rows: Sequence[int], unit: str) -> str | None:
        return self.report(rows, unit).summary() if self.stats.nodes else None


def _nothing() -> ChunkFn[Any, Any]:
    raise RuntimeError("placement only")
