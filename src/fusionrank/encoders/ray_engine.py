"""Batch embedding on Ray: the local engine's job, with the model run by a pool of Ray actors.

The driver (:func:`fusionrank.encoders.engine.embed_catalogue`) keeps all the bookkeeping of
the local engine: it opens the catalogue, checks the ids, records the job's fingerprint
(``job.json``), lists the shards still to do, writes each finished shard (``finish_shard``:
the one vectors writer) and, last, the manifest. Only the model work moves. A Ray Data
dataset of the pending shards' descriptors (one block per shard) goes through
``map_batches`` with :class:`ShardEmbedder`, a callable class: each actor loads the encoder
once and embeds one shard per call with the local engine's own feeding code
(``embed_text``/``embed_images``: same preprocessing, same bad-row rules), returning the
shard's vectors and bad rows. The driver writes shards as they come back, in any order.
The engine is no part of the fingerprint: a job started on one engine resumes on the other.

Where Ray runs: :func:`fusionrank.ray_support.ray_in_background` (local instance, joined
cluster or the running one), started by the driver before it loads the model for the
fingerprint, so that Ray's start-up overlaps that load. On a cluster, the catalogue, the
images and the model weights must be at the same paths on every node; the output folder
only on the driver's.

Faults: Ray Data restarts a dead actor and retries its shard, up to
:attr:`RayOptions.restarts` times (Ray's own default, forever, would loop on a shard that
kills its worker every time); then the job fails naming the shards that did not come back.
An exception raised by the encoder fails the job as it does locally. A rerun resumes from
the shards written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fusionrank.encoders.embed_config import EmbedConfig
from fusionrank.encoders.job import Shard


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs (none of it changes the vectors)."""

    address: str | None = None
    """Cluster to join (``host:port`` or ``ray://host:port``); None: ``$RAY_ADDRESS`` when
    set, else a local Ray instance started for the job."""
    actors: int | None = None
    """Actors, each with its own copy of the encoder (never more than the shards to do);
    None: one per CPU of the cluster, or with GPUs one per ``gpus_per_actor`` GPUs."""
    gpus_per_actor: float = 0
    """GPUs each actor reserves (with ``device="cuda"``); a fraction shares a GPU."""
    restarts: int = 3
    """Times a dead actor is restarted and its shard retried before the job fails."""
    exit_at: tuple[str, int, int] | None = None
    """Test seam (the fault tests): ``(counter file, shard index, times)``. The first
    ``times`` actor calls that reach that shard count themselves in the file and exit the
    process at once, as a crashed worker would."""

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"--actors must be >= 1, got {self.actors}")
        if self.restarts < 0:
            raise ValueError(f"restarts must be >= 0, got {self.restarts}")
        if self.gpus_per_actor < 0:
            raise ValueError(f"--gpus-per-actor must be >= 0, got {self.gpus_per_actor}")

    def check(self, config: EmbedConfig) -> None:
        """Refuse device settings that Ray cannot honour, in one line."""
        cuda = config.device.startswith("cuda")
        if cuda and not self.gpus_per_actor:
            raise ValueError(
                "--device cuda on the ray engine needs --gpus-per-actor (e.g. 1): "
                "Ray gives GPUs only to actors that reserve them"
            )
        if self.gpus_per_actor and not cuda:
            raise ValueError("--gpus-per-actor needs --device cuda")


def _pool(ray: Any, options: RayOptions, n_shards: int) -> tuple[int, int]:
    """(actors, CPUs per actor) on this cluster. Each actor's torch uses its CPUs."""
    total = ray.cluster_resources()
    cpus, gpus = int(total.get("CPU", 0)), float(total.get("GPU", 0))
    g = options.gpus_per_actor
    if g and gpus < g:
        raise ValueError(f"--gpus-per-actor {g:g}: the Ray cluster has {gpus:g} GPU(s)")
    actors = options.actors or (int(gpus // g) if g else max(1, cpus))
    actors = max(1, min(actors, n_shards))
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    per_actor = max(1, min(cpus // actors, max(node_cpus, default=1)))
    return actors, per_actor


def _absolute(config: EmbedConfig) -> EmbedConfig:
    """The config with its local paths made absolute (actors may run in another folder)."""
    changes: dict[str, Any] = {}
    for name in ("model", "weights", "clip_pretrained", "image_root"):
        value = getattr(config, name)
        if value and (name == "image_root" or Path(value).expanduser().exists()):
            changes[name] = str(Path(value).expanduser().resolve())
    return dataclasses.replace(config, **changes)


def _same_weights(a: dict, b: dict) -> bool:
    """Identities agree but for where the files lie (caches differ between nodes)."""
    return {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}


ACTORS_START_S = 600
"""How long the job waits for its whole pool of actors before the first shard is sent (so
one early actor does not take every shard of a short job), and fails with Ray's "Timed out
while starting actors" when the cluster cannot provide them."""

RESULT_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("rows", pa.large_list(pa.int64())),
        ("vectors", pa.large_binary()),
        ("error_rows", pa.large_list(pa.int64())),
        ("error_reasons", pa.large_list(pa.large_string())),
        ("node", pa.large_string()),
    ]
)
"""One row per shard: catalogue rows with a vector, the vectors (float32, row-major), the
bad rows with their reasons, and the Ray node that embedded it."""


class ShardEmbedder:
    """A Ray Data actor: loads the encoder once, then embeds one shard per call."""

    def __init__(
        self,
        catalogue: str,
        config: EmbedConfig,
        n_rows: int,
        identity: dict,
        dim: int,
        threads: int,
        exit_at: tuple[str, int, int] | None = None,
    ) -> None:
        import ray
        import torch

        from fusionrank.encoders.catalogue import open_catalogue
        from fusionrank.encoders.embed_config import build_encoder

        torch.set_num_threads(threads)
        if config.device.startswith("cuda"):  # the GPU(s) Ray gave this actor are cuda:0...
            config = dataclasses.replace(config, device="cuda")
        self.config, self.exit_at = config, exit_at
        self.node = str(ray.get_runtime_context().get_node_id())
        self.encoder = build_encoder(config)
        mine = json.loads(json.dumps(self.encoder.identity))
        if not _same_weights(mine, identity) or self.encoder.dim != dim:
            raise RuntimeError(
                f"a Ray worker loaded other weights than the driver ({mine} vs {identity}); "
                "the model must be the same file on every node"
            )
        self.table = open_catalogue(Path(catalogue))  # memory-mapped; once per actor
        if len(self.table) != n_rows:
            raise RuntimeError(
                f"a Ray worker reads {len(self.table)} rows in {catalogue}, the driver {n_rows}; "
                "the catalogue must be the same file on every node"
            )

    def __call__(self, batch: pa.Table) -> pa.Table:
        from tqdm.auto import tqdm

        from fusionrank.encoders.batches import embed_images, embed_text

        out: dict[str, list] = {name: [] for name in RESULT_SCHEMA.names}
        for desc in batch.to_pylist():
            shard = Shard(int(desc["index"]), int(desc["start"]), int(desc["stop"]))
            self._maybe_exit(shard.index)
            id_errors = {int(r): str(m) for r, m in json.loads(desc["id_errors"])}
            finished: list[Shard] = []
            feed = embed_text if self.config.modality == "text" else embed_images
            feed(
                self.table, [shard], self.encoder, self.config, id_errors, tqdm(disable=True), finished.append
            )
            if len(finished) != 1 or finished[0] is not shard:
                raise RuntimeError(f"shard {shard.index} did not finish")
            rows = sorted(shard.vectors)
            vecs = (
                np.stack([shard.vectors[r] for r in rows]).astype(np.float32, copy=False)
                if rows
                else np.empty((0, self.encoder.dim), np.float32)
            )
            bad = sorted(shard.errors)
            out["index"].append(shard.index)
            out["rows"].append(rows)
            out["vectors"].append(np.ascontiguousarray(vecs).tobytes())
            out["error_rows"].append([r for r, _ in bad])
            out["error_reasons"].append([m for _, m in bad])
            out["node"].append(self.node)
        return pa.Table.from_pydict(out, schema=RESULT_SCHEMA)

    def _maybe_exit(self, index: int) -> None:
        """The test seam of :attr:`RayOptions.exit_at` (one call runs a shard at a time)."""
        if self.exit_at is None or self.exit_at[1] != index:
            return
        counter = Path(self.exit_at[0])
        times = int(counter.read_text()) if counter.exists() else 0
        if times >= self.exit_at[2]:
            return
        counter.write_text(str(times + 1))
        os._exit(1)


def _results(block: pa.Table, dim: int) -> Iterator[tuple[int, Shard, str]]:
    """The shards of one result block, with their vectors and errors, and their node."""
    for rec in block.to_pylist():
        rows = rec["rows"]
        vecs = np.frombuffer(rec["vectors"], dtype=np.float32)
        if vecs.size != len(rows) * dim:
            raise RuntimeError(f"shard {rec['index']}: {vecs.size} values for {len(rows)} rows of dim {dim}")
        shard = Shard(int(rec["index"]), 0, 0)
        shard.vectors = dict(zip(rows, vecs.reshape(len(rows), dim)))
        shard.errors = list(zip(rec["error_rows"], rec["error_reasons"]))
        yield shard.index, shard, rec["node"]


@dataclass
class RayReport:
    """Where and how fast a Ray embed job ran."""

    nodes: dict[str, int]
    """Shards embedded by each Ray node (by node id)."""
    first_back_s: float | None = None
    """Seconds from the driver asking for Ray to the first shard coming back: what is left
    of Ray's start-up, the actors' start and model load, and one shard's work."""
    steady_items_per_s: float | None = None
    """Rows per second once every actor has returned a shard (None with too few shards)."""

    def summary(self) -> str:
        """The engine's ``ray:`` log line."""
        spread = ", ".join(f"{count} on {node[:8]}" for node, count in sorted(self.nodes.items()))
        line = f"ray: {sum(self.nodes.values())} shards on {len(self.nodes)} node(s) ({spread})"
        if self.first_back_s is not None:
            line += f"; first shard back after {self.first_back_s:.1f}s"
        if self.steady_items_per_s is not None:
            line += f", then {self.steady_items_per_s:.1f} items/s"
        return line


def embed_on_ray(
    get_ray: Callable[[], Any],
    catalogue: Path,
    n_rows: int,
    pending: list[Shard],
    config: EmbedConfig,
    id_errors: dict[int, str],
    identity: dict,
    dim: int,
    options: RayOptions,
    done: Callable[[Shard], None],
) -> RayReport:
    """Embed the ``pending`` shards on the Ray that ``get_ray`` returns (a
    :func:`~fusionrank.ray_support.ray_in_background` session, started while the driver
    loaded the model); each finished shard (its ``vectors`` and ``errors`` filled in) goes to
    ``done`` on the driver as soon as it comes back. Returns which nodes did the work and
    how fast."""
    nodes: dict[str, int] = {}
    if not pending:
        return RayReport(nodes)
    by_shard: dict[int, list[tuple[int, str]]] = {s.index: [] for s in pending}
    for r, message in id_errors.items():
        if r // config.shard_size in by_shard:
            by_shard[r // config.shard_size].append((r, message))
    items = [
        {
            "index": s.index,
            "start": s.start,
            "stop": s.stop,
            "id_errors": json.dumps(sorted(by_shard[s.index])),
        }
        for s in pending
    ]
    left = {s.index: s for s in pending}
    t0, back = time.perf_counter(), []  # (seconds since t0, rows) of each shard come back
    ray = get_ray()
    actors, cpus = _pool(ray, options, len(pending))
    context = ray.data.DataContext.get_current()
    bars, wait = context.enable_progress_bars, context.wait_for_min_actors_s
    context.enable_progress_bars = False  # the engine's own bar counts items
    context.wait_for_min_actors_s = ACTORS_START_S  # every actor up before the first shard
    loggers = {"ray.data._internal.progress": logging.ERROR}  # "progress bars disabled"
    if config.quiet:
        loggers["ray.data"] = logging.WARNING  # no "starting execution" lines either
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)
    try:
        with warnings.catch_warnings():  # no named parameter for the restarts yet (pyproject caps Ray)
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardEmbedder,
                fn_constructor_kwargs={
                    "catalogue": str(catalogue.resolve()),
                    "config": _absolute(config),
                    "n_rows": n_rows,
                    "identity": identity,
                    "dim": dim,
                    "threads": cpus,
                    "exit_at": options.exit_at,
                },
                batch_size=1,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus,
                num_gpus=options.gpus_per_actor or None,
                max_restarts=options.restarts,
                max_task_retries=options.restarts,
            )
        try:
            for block in results.iter_batches(batch_size=None, batch_format="pyarrow"):
                for index, result, node in _results(block, dim):
                    shard = left.pop(index, None)
                    if shard is None:  # a retried shard that came back twice
                        continue
                    nodes[node] = nodes.get(node, 0) + 1
                    back.append((time.perf_counter() - t0, shard.stop - shard.start))
                    shard.vectors, shard.errors = result.vectors, result.errors
                    done(shard)
        except ray.exceptions.ActorDiedError as exc:
            raise RuntimeError(
                f"a Ray worker died {options.restarts + 1} times embedding shard(s) among "
                f"{sorted(left)[:10]} (restarts: {options.restarts}); the shards written are kept "
                f"and a rerun resumes ({type(exc).__name__})"
            ) from exc
    finally:
        context.enable_progress_bars, context.wait_for_min_actors_s = bars, wait
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    if left:
        raise RuntimeError(f"Ray returned no result for shard(s) {sorted(left)}")
    return _report(nodes, back, actors)


def _report(nodes: dict[str, int], back: list[tuple[float, int]], actors: int) -> RayReport:
    """The job's report; the steady rate counts the rows come back after the first
    ``actors`` shards (by then every actor has started) over the time they took."""
    first = back[0][0] if back else None
    steady = None
    if len(back) > actors and back[-1][0] > back[actors - 1][0]:
        steady = sum(rows for _, rows in back[actors:]) / (back[-1][0] - back[actors - 1][0])
    return RayReport(nodes, first, steady)
