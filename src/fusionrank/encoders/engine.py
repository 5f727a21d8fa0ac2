"""Resumable batch embedding of a whole catalogue into Parquet shards.

The catalogue is read through Arrow (memory-mapped), ``shard_size`` rows at a time. Each
shard is written atomically as ``vectors-NNNNN.parquet`` after its bad rows were written
to ``.errors/errors-NNNNN.parquet``; a shard file therefore means "this chunk is done",
and a rerun of the same command skips it. ``job.json`` records the settings that decide
the output; a rerun into the same folder with other settings is refused. When every shard
is done, the error parts are merged into ``errors.parquet`` and ``manifest.json`` is
written last. Invariant: rows in vectors + rows in errors = rows in the catalogue. Shards are
written by a background thread (:mod:`~fusionrank.encoders.writer`) while the model runs
the next ones.

The pieces: :mod:`~fusionrank.encoders.base` (the encoder contract),
:mod:`~fusionrank.encoders.registry` (encoders by name or dotted path),
:mod:`~fusionrank.encoders.embed_config` (the job's settings and its encoder's config),
:mod:`~fusionrank.encoders.catalogue` (reading, id checks), :mod:`~fusionrank.encoders.job`
(fingerprint, shards, manifest), :mod:`~fusionrank.encoders.batches` (text and image
feeding; :mod:`~fusionrank.encoders.device` and :mod:`~fusionrank.encoders.decode` for the
GPU: copies one batch ahead, JPEG decoding) and :mod:`~fusionrank.encoders.work` (the
shards' work in a worker). The driver keeps all the bookkeeping; the shards' model work
goes through the job's engine
(:mod:`fusionrank.engines`: this process, or Ray actors that each load the encoder once).
The engine is no part of the fingerprint, so a job started on one engine resumes on the
other.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from fusionrank.data.vectors import VectorSet
from fusionrank.encoders.base import Encoder
from fusionrank.encoders.batches import embed_shards, what_ran
from fusionrank.encoders.catalogue import check_ids, open_catalogue, shard_ids
from fusionrank.encoders.embed_config import EmbedConfig, build_encoder
from fusionrank.encoders.job import (
    EmbedSettingsError,
    Shard,
    check_encoder,
    check_job,
    errors_part,
    fingerprint,
    shard_path,
    write_manifest,
)
from fusionrank.encoders.precision import BF16_CPU_NOTE
from fusionrank.encoders.registry import encoder_class
from fusionrank.encoders.work import ShardEmbedder, absolute
from fusionrank.encoders.writer import ShardWriter
from fusionrank.engines import Engine, EngineName, Work, get_engine
from fusionrank.engines.ray_engine import RayOptions, WorkerDiedError
from fusionrank.errors import InvalidArgumentError
from fusionrank.io import read_json
from fusionrank.settings import build_settings

if TYPE_CHECKING:
    from fusionrank.data.dataset import Dataset

__all__ = [
    "EmbedConfig",
    "EmbedSettingsError",
    "RayOptions",
    "build_encoder",
    "embed",
    "embed_catalogue",
    "embed_config",
]


def embed_catalogue(
    catalogue: str | Path,
    out: str | Path,
    config: EmbedConfig,
    encoder: Encoder | None = None,
    log: Callable[[str], None] | None = None,
    engine: Engine | str = "local",
    ray_options: RayOptions | None = None,
) -> dict:
    """Embed every row of ``catalogue`` into ``out``; returns the manifest. Resumable.
    ``engine`` runs the shards' model work: an :class:`~fusionrank.engines.Engine`, or its
    name (``ray``: Ray actors, ``ray_options`` saying where and how many). ``encoder``: the
    config's encoder already loaded (else it is built from the config)."""
    catalogue, out = Path(catalogue), Path(out)
    log = log or (lambda m: print(m, file=sys.stderr))
    if isinstance(engine, str):
        engine = get_engine(engine, ray_options, quiet=config.quiet, strict=True)
    elif ray_options is not None:
        raise InvalidArgumentError("ray_options go with an engine name; this engine has its own")
    engine.check_device(config.device)
    table = open_catalogue(catalogue)
    id_errors = check_ids(table, config, catalogue)
    with ExitStack() as hold:
        if not (out / "manifest.json").exists():
            hold.enter_context(engine)  # the engine starts (Ray: in the background) while the model loads
        encoder = encoder if encoder is not None else build_encoder(config)
        check_encoder(encoder, config)
        if config.precision == "bf16" and not config.device.startswith("cuda"):
            log(BF16_CPU_NOTE)
        job = fingerprint(config, catalogue, encoder.identity, encoder.dim)
        out.mkdir(parents=True, exist_ok=True)
        check_job(out, job)
        if (out / "manifest.json").exists():
            log(f"{out} is complete; nothing to do")
            return read_json(out / "manifest.json")
        for stale in list(out.glob(".*.tmp-*")) + list((out / ".errors").glob(".*.tmp-*")):
            stale.unlink(missing_ok=True)
        n = len(table)
        shards = [
            Shard(i, s, min(s + config.shard_size, n)) for i, s in enumerate(range(0, n, config.shard_size))
        ]
        pending = [
            s
            for s in shards
            if not shard_path(out, s.index).exists() or not errors_part(out, s.index).exists()
        ]
        work = Work(
            build=partial(
                ShardEmbedder,
                str(catalogue.resolve()),
                absolute(config),
                n,
                job["weights"],
                encoder.dim,
                id_errors,
            ),
            here=partial(embed_shards, table, encoder, config, id_errors),
        )
        t0 = time.perf_counter()  # the job's clock: the model work, the engine's start-up, the writing
        bar = tqdm(
            total=sum(s.stop - s.start for s in pending),
            unit="item",
            desc=f"embed {config.encoder}",
            disable=config.quiet,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        try:
            with ShardWriter(out, encoder.dim) as writer:  # Parquet in a thread; its errors raise here
                for shard in engine.map(work, pending, ordered=False):
                    writer.submit(shard, shard_ids(table, config, shard.start, shard.stop))
                    bar.update(shard.stop - shard.start)
            counts = writer.counts
        except WorkerDiedError as exc:
            lost = [pending[p].index for p in exc.positions]
            raise WorkerDiedError(
                f"{exc.worker} died {exc.deaths} times embedding shard(s) among {lost[:10]} "
                f"(restarts: {exc.deaths - 1}); the shards written are kept and a rerun resumes",
                exc.positions,
                exc.deaths,
                exc.worker,
            ) from exc
        hold.close()  # the engine's shutdown counts in the job's time
        bar.close()
    summary = engine.summary([s.stop - s.start for s in pending], "shards")
    if summary:
        log(summary)
    manifest = write_manifest(out, shards, job, config, encoder, n, what_ran(encoder, config))
    elapsed = time.perf_counter() - t0
    rate = counts[0] / elapsed if elapsed > 0 else float("nan")
    log(
        f"embedded {counts[0]} items ({counts[1]} errors) in {elapsed:.1f}s ({rate:.1f} items/s) "
        f"this run; total {manifest['rows']} vectors, {manifest['errors']} errors -> {out}"
    )
    return manifest


MODALITY_SECTIONS = ("text", "image")
"""Encoder arguments that name a modality: ``embed_config(dataset, "text")`` embeds the
text, whichever encoder the profile's ``encoders.text`` section names."""


def embed_config(dataset: Dataset, encoder: str = "text", **overrides: Any) -> EmbedConfig:
    """The settings that embed ``dataset``'s catalogue with ``encoder`` (a modality, an
    encoder name or a dotted class path), from its profile and ``overrides``.

    The profile gives the text template or the image column and root, and the settings of
    ``profile.encoders[encoder]``; that section may name ``encoder: mypkg.MyEncoder`` to
    embed the modality with another encoder. ``text`` and ``image`` embed that modality;
    any other encoder embeds the images when it reads them and the dataset has an image
    column, else the text (CLIP: the images when there are some)."""
    profile = dataset.profile
    section = dict(profile.encoders.get(encoder, {}))
    name = str(section.pop("encoder", encoder))
    cls = encoder_class(name)
    if encoder in MODALITY_SECTIONS:
        modality = encoder
    elif "image" in cls.inputs and (profile.image or "text" not in cls.inputs):
        modality = "image"
    else:
        modality = "text"
    base: dict[str, Any] = {"encoder": name}
    if modality == "text":
        if not profile.text:
            raise InvalidArgumentError(
                f"dataset {dataset.name!r} has no text template in its profile (text=...)"
            )
        base["template"] = profile.text
    else:
        if not profile.image:
            raise InvalidArgumentError(
                f"dataset {dataset.name!r} has no image column in its profile (image=...)"
            )
        base.update(image_column=profile.image, image_root=profile.image_root)
    settings = {**base, **section, **overrides}
    return build_settings(EmbedConfig, settings, owner=f"{dataset.name} {encoder} encoder")


def embed(
    source: Dataset | str | Path,
    out: str | Path,
    encoder: str = "text",
    *,
    engine: EngineName = "local",
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    restarts: int | None = None,
    **settings: Any,
) -> VectorSet:
    """Embed a dataset's catalogue (or a catalogue file) into ``out``: the batch engine
    behind ``fusionrank embed``, with the same options: the job's (fields of
    :class:`EmbedConfig`: ``template``, ``fields``, ``image_column``, ``image_root``,
    ``batch_size``, ``shard_size``, ``device``, ``workers``, ``quiet`` ...) and the
    encoder's own (the built-ins': ``model``, ``weights``, ``clip_pretrained``, ``pooling``,
    ``precision`` (``fp32``, ``int8``, ``bf16``, ``fp16``), ``backend`` (``torch``,
    ``onnx``) ...). ``encoder`` is ``text``, ``image``, ``clip``, a registered name, or the
    dotted path of your own encoder class (:class:`~fusionrank.encoders.base.Encoder`),
    whose settings go by keyword the same way. For a dataset, the text template, image
    column and encoder settings default to its profile's. Resumable: rerun after an
    interruption.

    ``engine="ray"`` runs the encoder in a pool of Ray actors (``pip install
    'fusionrank[ray]'``): ``address`` of a cluster to join (default: ``$RAY_ADDRESS``, else
    a local instance started for the job), ``actors`` (default: one per CPU, or per
    ``gpus_per_actor`` GPUs), ``restarts`` (times a dead actor is restarted and its shard
    retried before the job fails; default 3). Same vectors, same folder; the engine does not enter the
    job's fingerprint, so either engine resumes a job the other started.

    >>> import tempfile, pandas as pd, fusionrank as fr
    >>> events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    >>> items = pd.DataFrame({"item_id": ["x", "y"], "title": ["Heat", "Up"], "plot": ["A heist.", ""]})
    >>> ds = fr.Dataset.from_files(events, items, text="{title}. {plot}", cache_dir=tempfile.mkdtemp())
    >>> vecs = fr.embed(ds, encoder="text", out=tempfile.mkdtemp(), quiet=True)
    >>> vecs.rows, vecs.dim
    (2, 384)
    """
    from fusionrank.data.dataset import Dataset

    if isinstance(source, Dataset):
        config = embed_config(source, encoder, **settings)
        catalogue = source.catalogue_file()
    else:
        config = build_settings(EmbedConfig, {"encoder": encoder, **settings}, owner="embed")
        catalogue = Path(source)
    given = {"address": address, "actors": actors, "gpus_per_actor": gpus_per_actor, "restarts": restarts}
    ray_options = None
    if any(v is not None for v in given.values()):
        ray_options = RayOptions(
            address=address,
            actors=actors,
            gpus_per_actor=gpus_per_actor or 0,
            restarts=RayOptions.restarts if restarts is None else restarts,
        )
    embed_catalogue(catalogue, out, config, engine=engine, ray_options=ray_options)
    return VectorSet.open(out)
