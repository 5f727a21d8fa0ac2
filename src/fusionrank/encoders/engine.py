"""Resumable batch embedding of a whole catalogue into Parquet shards.

The catalogue is read through Arrow (memory-mapped), ``shard_size`` rows at a time. Each
shard is written atomically as ``vectors-NNNNN.parquet`` after its bad rows were written
to ``.errors/errors-NNNNN.parquet``; a shard file therefore means "this chunk is done",
and a rerun of the same command skips it. ``job.json`` records the settings that decide
the output; a rerun into the same folder with other settings is refused. When every shard
is done, the error parts are merged into ``errors.parquet`` and ``manifest.json`` is
written last. Invariant: rows in vectors + rows in errors = rows in the catalogue.

The pieces: :mod:`~fusionrank.encoders.embed_config` (settings, encoders),
:mod:`~fusionrank.encoders.catalogue` (reading, id checks), :mod:`~fusionrank.encoders.job`
(fingerprint, shards, manifest) and :mod:`~fusionrank.encoders.batches` (text and image
feeding). ``engine="ray"`` moves the model work to a pool of Ray actors
(:mod:`~fusionrank.encoders.ray_engine`); everything else, the fingerprint included, is
the same, so a job started on one engine resumes on the other.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from tqdm.auto import tqdm

from fusionrank.encoders.batches import embed_images, embed_text
from fusionrank.encoders.catalogue import check_ids, open_catalogue, shard_ids
from fusionrank.encoders.embed_config import EmbedConfig, EncoderKind, build_encoder
from fusionrank.encoders.job import (
    EmbedSettingsError,
    Shard,
    check_encoder,
    check_job,
    errors_part,
    fingerprint,
    finish_shard,
    shard_path,
    write_manifest,
)
from fusionrank.encoders.precision import BF16_CPU_NOTE
from fusionrank.encoders.ray_engine import RayOptions, embed_on_ray
from fusionrank.encoders.vectors import VectorSet
from fusionrank.io import read_json
from fusionrank.ray_support import ray_in_background, require_ray
from fusionrank.settings import build_settings

if TYPE_CHECKING:
    from fusionrank.data.dataset import Dataset

__all__ = [
    "EmbedConfig",
    "EmbedSettingsError",
    "Engine",
    "RayOptions",
    "build_encoder",
    "embed",
    "embed_catalogue",
    "embed_config",
]

Engine = Literal["local", "ray"]
"""Where the model runs: in this process, or in a pool of Ray actors (same output)."""


def embed_catalogue(
    catalogue: str | Path,
    out: str | Path,
    config: EmbedConfig,
    encoder: Any = None,
    log: Callable[[str], None] | None = None,
    engine: Engine = "local",
    ray_options: RayOptions | None = None,
) -> dict:
    """Embed every row of ``catalogue`` into ``out``; returns the manifest. Resumable.
    ``engine="ray"`` runs the encoder in Ray actors (``ray_options``: where, how many)."""
    catalogue, out = Path(catalogue), Path(out)
    log = log or (lambda m: print(m, file=sys.stderr))
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    if engine == "ray":
        require_ray()
        ray_options = ray_options or RayOptions()
        ray_options.check(config)
        if encoder is not None:
            raise ValueError("the ray engine loads the encoder in each actor; pass settings, not an encoder")
    elif ray_options is not None:
        raise ValueError("Ray options (address, actors, GPUs per actor) need engine='ray'")
    table = open_catalogue(catalogue)
    id_errors = check_ids(table, config, catalogue)
    with ExitStack() as ray_hold:
        get_ray = None
        if engine == "ray" and not (out / "manifest.json").exists():
            assert ray_options is not None  # Ray starts while the driver loads the model below
            get_ray = ray_hold.enter_context(ray_in_background(ray_options.address, config.quiet))
        encoder = encoder or build_encoder(config)
        check_encoder(encoder, config)
        if config.precision == "bf16" and not config.device.startswith("cuda"):
            log(BF16_CPU_NOTE)
        job = fingerprint(config, catalogue, encoder.identity, encoder.dim)
        out.mkdir(parents=True, exist_ok=True)
        check_job(out, job)
        if engine == "ray":  # the actors load their own copies; the driver keeps what it records
            encoder = SimpleNamespace(
                identity=encoder.identity,
                dim=encoder.dim,
                normalized=encoder.normalized,
                precision=config.precision,
                backend=config.backend,
            )
            if config.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
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
        t0 = time.perf_counter()  # the job's clock: the model work, Ray's share of start-up, the writing
        bar = tqdm(
            total=sum(s.stop - s.start for s in pending),
            unit="item",
            desc=f"embed {config.encoder}",
            disable=config.quiet,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        counts = [0, 0]
        report = None

        def done(shard: Shard) -> None:
            good, bad = finish_shard(
                out, shard, shard_ids(table, config, shard.start, shard.stop), encoder.dim
            )
            shard.vectors.clear()  # written: memory stays flat in the number of shards
            shard.errors.clear()
            counts[0] += good
            counts[1] += bad

        if get_ray is not None:

            def finished(shard: Shard) -> None:
                done(shard)
                bar.update(shard.stop - shard.start)

            assert ray_options is not None
            report = embed_on_ray(
                get_ray,
                catalogue,
                n,
                pending,
                config,
                id_errors,
                job["weights"],
                encoder.dim,
                ray_options,
                finished,
            )
            ray_hold.close()  # Ray's shutdown counts in the job's time
        elif config.modality == "text":
            embed_text(table, pending, encoder, config, id_errors, bar, done)
        else:
            embed_images(table, pending, encoder, config, id_errors, bar, done)
        bar.close()
    if report is not None and report.nodes:
        log(report.summary())
    manifest = write_manifest(out, shards, job, config, encoder, n)
    elapsed = time.perf_counter() - t0
    rate = counts[0] / elapsed if elapsed > 0 else float("nan")
    log(
        f"embedded {counts[0]} items ({counts[1]} errors) in {elapsed:.1f}s ({rate:.1f} items/s) "
        f"this run; total {manifest['rows']} vectors, {manifest['errors']} errors -> {out}"
    )
    return manifest


def embed_config(dataset: Dataset, encoder: EncoderKind = "text", **overrides: Any) -> EmbedConfig:
    """The settings that embed ``dataset``'s catalogue with ``encoder``, from its profile
    (text template, image column and root, ``profile.encoders``) and ``overrides``.
    CLIP embeds the images when the dataset has an image column, else the text."""
    profile = dataset.profile
    base: dict[str, Any] = {"encoder": encoder}
    if encoder == "text" or (encoder == "clip" and not profile.image):
        if not profile.text:
            raise ValueError(f"dataset {dataset.name!r} has no text template in its profile (text=...)")
        base["template"] = profile.text
    elif encoder in ("image", "clip"):
        if not profile.image:
            raise ValueError(f"dataset {dataset.name!r} has no image column in its profile (image=...)")
        base.update(image_column=profile.image, image_root=profile.image_root)
    else:
        raise ValueError(f"unknown encoder {encoder!r}; expected text, image or clip")
    settings = {**base, **profile.encoders.get(encoder, {}), **overrides}
    return build_settings(EmbedConfig, settings, owner=f"{dataset.name} {encoder} encoder")


def embed(
    source: Dataset | str | Path,
    out: str | Path,
    encoder: EncoderKind = "text",
    *,
    engine: Engine = "local",
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    restarts: int | None = None,
    **settings: Any,
) -> VectorSet:
    """Embed a dataset's catalogue (or a catalogue file) into ``out``: the batch engine
    behind ``fusionrank embed``, with the same options (fields of :class:`EmbedConfig`:
    ``model``, ``template``, ``fields``, ``image_column``, ``image_root``, ``weights``,
    ``clip_pretrained``, ``batch_size``, ``shard_size``, ``device``, ``precision``
    (``fp32``, ``int8``, ``bf16``, ``fp16``), ``backend`` (``torch``, ``onnx``), ``workers``,
    ``quiet`` ...). For a dataset, the text template, image column and
    encoder settings default to its profile's. Resumable: rerun after an interruption.

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
    if engine != "ray" and any(v is not None for v in given.values()):
        raise ValueError(f"{', '.join(k for k, v in given.items() if v is not None)} need engine='ray'")
    ray_options = (
        RayOptions(
            address=address,
            actors=actors,
            gpus_per_actor=gpus_per_actor or 0,
            restarts=RayOptions.restarts if restarts is None else restarts,
        )
        if engine == "ray"
        else None
    )
    embed_catalogue(catalogue, out, config, engine=engine, ray_options=ray_options)
    return VectorSet.open(out)
