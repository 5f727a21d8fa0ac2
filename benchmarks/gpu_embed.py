"""GPU embedding throughput: MiniLM text, ResNet-50 and ViT-B-32 on cuda at fp32, bf16 and fp16.

For each model and precision: the engine end to end (catalogue read, tokenising or JPEG
decoding in workers, batching, Parquet shards, manifest) and the forward pass alone on
inputs already on the device; the quality of each precision as the mean cosine of its
vectors against fp32's for the same items; and where the time goes, each stage timed
alone on the same items (``stages``: tokenising, collation, host-to-device copies, forward,
device-to-host copy, writing; for images reading, decoding with preprocessing, forward ...),
in ms per 1,000 items. Beside the engine: sentence-transformers' ``encode`` on the same
texts (fp32 and fp16, same batch size) when it is importable, and a 1,000,000-text job
(engine and sentence-transformers at the half precision, with the peak host RSS and
``torch.cuda.max_memory_allocated``). The markdown judges the issue's targets (pass/fail).
The image models have random weights (built from their configs, as in
``embed_throughput.py``); the text model is the packaged all-MiniLM-L6-v2 (or
``--text-model FOLDER``). One short run (a few minutes on one GPU) writes
``benchmarks/results/gpu_embed.{json,md}``.

    benchmarks/gpu_embed.sh              # on a machine with a GPU, after `make install`
    benchmarks/gpu_embed.sh --dry-run    # the same code on the CPU, tiny sizes, a temp folder
    benchmarks/gpu_device_run.sh         # on a lent GPU machine without the project's packages
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    device: str = "cuda"
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    short_texts: int = 40_000
    long_texts: int = 4_000
    images: int = 4_000
    text_batch: int = 256
    image_batch: int = 128
    forward_batches: int = 20
    image_models: tuple[str, ...] = ("resnet50", "ViT-B-32")
    workers: int | None = None
    warmup: bool = True
    """An engine run on two items before the timed one (CUDA context, cuDNN autotuning)."""
    million: int = 1_000_000
    """Texts of the big job (0: none), embedded at ``million_precision`` by the engine and by
    sentence-transformers."""
    million_precision: str = "bf16"
    st_precisions: tuple[str, ...] = ("fp32", "fp16")
    """sentence-transformers' precisions beside the engine's (when it is importable)."""
    profile_items: int = 8192
    """Items each stage of the profile is timed on."""
    text_model: str | None = None
    """The text model's folder (None: the packaged all-MiniLM-L6-v2)."""
    variants: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...] = (
        ("all-MiniLM-L6-v2 short", "fp32", (("batch_size", 1024),)),
        ("all-MiniLM-L6-v2 short", "fp32", (("graphs", 1),)),
        ("all-MiniLM-L6-v2 short", "bf16", (("workers", 4),)),
        ("all-MiniLM-L6-v2 short", "bf16", (("workers", 15),)),
        ("all-MiniLM-L6-v2 short", "bf16", (("batch_size", 1024),)),
        ("all-MiniLM-L6-v2 short", "bf16", (("graphs", 1),)),
        ("all-MiniLM-L6-v2 short", "bf16", (("graphs", 1), ("batch_size", 1024))),
        ("all-MiniLM-L6-v2 long", "fp32", (("batch_size", 512),)),
        ("all-MiniLM-L6-v2 long", "fp32", (("graphs", 1),)),
        ("all-MiniLM-L6-v2 long", "bf16", (("workers", 15),)),
        ("all-MiniLM-L6-v2 long", "bf16", (("batch_size", 512),)),
        ("all-MiniLM-L6-v2 long", "bf16", (("graphs", 1),)),
        ("all-MiniLM-L6-v2 long", "bf16", (("graphs", 1), ("workers", 15))),
        ("resnet50 image", "fp32", (("batch_size", 256),)),
        ("resnet50 image", "fp32", (("graphs", 1),)),
        ("resnet50 image", "fp16", (("batch_size", 256),)),
        ("resnet50 image", "fp16", (("graphs", 1),)),
        ("ViT-B-32 image", "fp32", (("batch_size", 256),)),
        ("ViT-B-32 image", "fp32", (("graphs", 1),)),
        ("ViT-B-32 image", "fp16", (("workers", 15),)),
        ("ViT-B-32 image", "fp16", (("batch_size", 256),)),
        ("ViT-B-32 image", "fp16", (("graphs", 1),)),
        ("ViT-B-32 image", "fp16", (("graphs", 1), ("workers", 15))),
    )
    """Engine runs with one speed setting changed (task, precision, settings), the encoder
    of that task and precision reused: what the defaults leave on the table. ``graphs``:
    the forward pass replayed from CUDA graphs (the forward rate measured with them too)."""

    @classmethod
    def dry(cls) -> Plan:
        """The same code paths on the CPU with tiny sizes (fp16 is GPU-only: bf16 stands in)."""
        return cls(
            device="cpu",
            precisions=("fp32", "bf16"),
            short_texts=32,
            long_texts=4,
            images=2,
            text_batch=8,
            image_batch=2,
            forward_batches=1,
            image_models=("resnet18", "ViT-S-32"),
            workers=1,
            warmup=False,
            million=300,
            st_precisions=("fp32", "bf16"),
            profile_items=16,
            variants=(("all-MiniLM-L6-v2 short", "bf16", (("workers", 2),)),),
        )


WORDS = (
    "love war night city girl man story life dark last king return secret lost world house "
    "river blood time heart dream summer murder family road star island ghost little big "
    "drama comedy action thriller romance adventure horror crime animation documentary "
    "musical western mystery fantasy children's sci-fi film-noir war"
).split()


def make_texts(kind: str, n: int, seed: int = 0) -> list[str]:
    """Title-year-genres strings, or ~200-token strings (no dataset needed on the GPU machine)."""
    rng = np.random.default_rng(seed)
    if kind == "short":
        return [
            f"{' '.join(rng.choice(WORDS, size=int(rng.integers(1, 5)))).title()} "
            f"({int(rng.integers(1920, 2024))}) {' '.join(rng.choice(WORDS[-16:], size=2))}"
            for _ in range(n)
        ]
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(150, 190)))) for _ in range(n)]


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """Smooth random 256 px JPEGs (they compress like photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    names = []
    for k in range(n):
        small = np.clip(base.astype(int) + rng.integers(-60, 60, (8, 8, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(small).resize((256, 256), Image.BICUBIC).save(folder / f"{k}.jpg", quality=90)
        names.append(f"{k}.jpg")
    return names


def many_texts(n: int, seed: int = 2) -> list[str]:
    """``n`` short texts for the big job, quickly: a pool of 50,000 with a number each."""
    pool = make_texts("short", min(n, 50_000), seed)
    return [f"{pool[k % len(pool)]} #{k}" for k in range(n)]


def build(kind: str, model: str, precision: str, device: str, text_model: str | None = None) -> Any:
    """The encoder; random image weights are seeded, so every precision runs the same model."""
    import torch

    from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig
    from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig
    from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

    if kind == "text":
        return TextEncoder(TextEncoderConfig(model=text_model, precision=precision), device)  # type: ignore[arg-type]
    torch.manual_seed(0)
    if model.startswith("resnet"):
        return ImageEncoder(ImageEncoderConfig(model, None, precision=precision), device)  # type: ignore[arg-type]
    return ClipEncoder(ClipEncoderConfig(model, None, precision=precision), device)  # type: ignore[arg-type]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def engine_run(enc: Any, catalogue: Path, out: Path, config: Any) -> float:
    """Seconds of one end-to-end engine job (the encoder already loaded and warm)."""
    from fusionrank.encoders.engine import embed_catalogue

    sync(config.device)
    t0 = time.perf_counter()
    manifest = embed_catalogue(catalogue, out, config, encoder=enc, log=lambda m: None)
    sync(config.device)
    seconds = time.perf_counter() - t0
    assert manifest["errors"] == 0, manifest
    return seconds


def _forward_call(enc: Any, kind: str, plan: Plan, texts: list[str]) -> tuple[Any, int]:
    """One forward pass of a batch already on the device, and its size."""
    import torch

    if kind == "text":
        ids = enc.tokenize(texts[: plan.text_batch])
        batch = enc.collate(ids)
        return (lambda: enc.forward(batch)), len(ids)
    pixels = torch.randn(plan.image_batch, 3, 224, 224).to(enc.device)
    return (lambda: enc.encode_pixels(pixels)), plan.image_batch


def use_graphs(enc: Any, kind: str, on: bool) -> None:
    """Turn CUDA graphs on or off for an encoder (text: its own padding to graph shapes;
    images: ``encode_pixels`` replayed at power-of-two batch rows)."""
    from fusionrank.encoders.graphs import graph_rows

    if kind == "text":
        enc.use_cuda_graphs(on)
    elif on:
        enc.encode_pixels = graph_rows(enc.encode_pixels)
    else:
        enc.__dict__.pop("encode_pixels", None)


def forward_rate(enc: Any, kind: str, plan: Plan, texts: list[str]) -> float:
    """Items per second of the forward pass alone, inputs already on the device."""
    run, size = _forward_call(enc, kind, plan, texts)
    if plan.warmup:
        run()  # cuDNN autotuning, lazy initialisation
    sync(plan.device)
    t0 = time.perf_counter()
    for _ in range(plan.forward_batches):
        run()
    sync(plan.device)
    return size * plan.forward_batches / (time.perf_counter() - t0)


def sync_points(run: Any) -> dict[str, Any]:
    """Where ``run()`` (one batch) makes the host wait for the GPU (torch's sync debug
    mode): each such point stops the host from queueing the next batch while this one runs."""
    import warnings

    import torch

    run()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    where = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    return {"count": len(where), "where": sorted(set(where))[:4]}


def batch_syncs(enc: Any, kind: str, plan: Plan, texts: list[str], root: Path, names: list[str]) -> dict:
    """The sync points of one forward pass, and for images of one batch decoded on the GPU
    and encoded (what the engine does per batch)."""

    from fusionrank.encoders import decode as decoding

    run, _ = _forward_call(enc, kind, plan, texts)
    out = {"syncs": sync_points(run)}
    spec = decoding.pixel_spec(enc.preprocess) if kind == "image" else None
    if spec is not None:
        chosen = names[: plan.image_batch]
        items = [(k, data, n) for k, (data, n) in enumerate(zip(read_files(root, chosen), chosen))]
        out["syncs_decode"] = sync_points(
            lambda: enc.encode_pixels(decoding.gpu_batch(items, spec, enc.device, enc.preprocess)[1])
        )
    return out


def _clock(plan: Plan, run: Any) -> float:
    """Seconds of ``run()``, the device synchronised before and after."""
    sync(plan.device)
    t0 = time.perf_counter()
    run()
    sync(plan.device)
    return time.perf_counter() - t0


def _per_1k(seconds: float, n: int) -> float:
    return 1000 * seconds / max(n, 1)


def profile_text(enc: Any, texts: list[str], plan: Plan, tmp: Path) -> dict[str, float]:
    """Each stage of the text path timed alone on the same items, ms per 1,000 items:
    tokenising, collation (padding a bucket's rows), the pinned host-to-device copies, the
    forward pass, the device-to-host copy of the vectors, writing them as a Parquet shard.
    Tokenising and collation run in the engine's workers, side by side."""
    from fusionrank.encoders.batches import batch_order

    sample = texts[: plan.profile_items]
    n = len(sample)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    tokens = enc.tokenize(sample)
    out["tokenise"] = _per_1k(time.perf_counter() - t0, n)
    order = batch_order([len(t) for t in tokens], True)
    t0 = time.perf_counter()
    batches = [
        enc.collate_tokens(tokens, order[s : s + plan.text_batch].tolist())
        for s in range(0, n, plan.text_batch)
    ]
    out["collate"] = _per_1k(time.perf_counter() - t0, n)
    cuda = plan.device.startswith("cuda")
    if cuda:
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    moved: list[dict] = []

    def h2d() -> None:
        moved[:] = [{k: v.to(enc.device, non_blocking=True) for k, v in b.items()} for b in batches]

    out["h2d"] = _per_1k(_clock(plan, h2d), n)
    results: list[Any] = []
    out["forward"] = _per_1k(_clock(plan, lambda: results.extend(enc.forward_tokens(b) for b in moved)), n)
    out.update(_d2h_and_write(results, enc.dim, plan, tmp))
    return out


def profile_images(enc: Any, root: Path, names: list[str], plan: Plan, tmp: Path) -> dict[str, float]:
    """Each stage of the image path timed alone, ms per 1,000 images: reading the files,
    decoding with preprocessing (nvJPEG and the GPU's resize when the job's decoder is
    ``nvjpeg``, else PIL and the encoder's transform: in the engine's workers), the pixels'
    host-to-device copy (PIL path), forward, the device-to-host copy, writing."""
    import torch

    from fusionrank.encoders import decode as decoding

    sample = names[: plan.profile_items]
    n = len(sample)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    data = read_files(root, sample)
    out["read"] = _per_1k(time.perf_counter() - t0, n)
    spec = decoding.pixel_spec(enc.preprocess)
    gpu = decoding.choose_decoder(plan.device, enc) == "nvjpeg" and spec is not None
    batches: list[Any] = []

    def decode() -> None:
        for s in range(0, n, plan.image_batch):
            chunk = data[s : s + plan.image_batch]
            if gpu:
                assert spec is not None
                items = [(k, d, "") for k, d in enumerate(chunk)]
                batches.append(decoding.gpu_batch(items, spec, enc.device, enc.preprocess)[1])
            else:
                batches.append(torch.stack([decoding.host_pixels(d, enc.preprocess) for d in chunk]))

    out["decode+preprocess"] = _per_1k(_clock(plan, decode), n)
    if not gpu and plan.device.startswith("cuda"):
        pinned = [b.pin_memory() for b in batches]
        out["h2d"] = _per_1k(
            _clock(
                plan,
                lambda: batches.__setitem__(
                    slice(None), [b.to(enc.device, non_blocking=True) for b in pinned]
                ),
            ),
            n,
        )
    results: list[Any] = []
    out["forward"] = _per_1k(_clock(plan, lambda: results.extend(enc.encode_pixels(b) for b in batches)), n)
    out.update(_d2h_and_write(results, enc.dim, plan, tmp))
    return out


def _d2h_and_write(results: list[Any], dim: int, plan: Plan, tmp: Path) -> dict[str, float]:
    """The last two stages of both paths, ms per 1,000 items: the vectors' device-to-host
    copy (into pinned memory on CUDA) and writing them as a shard."""
    import torch

    from fusionrank.encoders.job import Shard, finish_shard

    vectors = torch.cat(results)
    n = len(vectors)
    host = torch.empty(vectors.shape, pin_memory=plan.device.startswith("cuda"))
    out = {"d2h": _per_1k(_clock(plan, lambda: host.copy_(vectors, non_blocking=True)), n)}
    shard = Shard(0, 0, n, vectors={r: v for r, v in enumerate(host.numpy())})
    (tmp / "profile" / ".errors").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    finish_shard(tmp / "profile", shard, [str(r) for r in range(n)], dim)
    out["write"] = _per_1k(time.perf_counter() - t0, n)
    return out


def has_sentence_transformers() -> bool:
    import importlib.util

    return importlib.util.find_spec("sentence_transformers") is not None


def st_encode(plan: Plan, texts: list[str], precision: str) -> tuple[float, np.ndarray]:
    """Seconds and vectors of sentence-transformers' ``encode`` (normalised, same batch size),
    the model loaded and warmed before the clock, in fp32 or cast to the half type."""
    import torch
    from sentence_transformers import SentenceTransformer

    from fusionrank.encoders.weights import packaged_minilm_dir

    st = SentenceTransformer(plan.text_model or str(packaged_minilm_dir()), device=plan.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is not None:
        st = st.to(dtype)
    kw = dict(
        batch_size=plan.text_batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    st.encode(texts[:2], **kw)  # type: ignore[arg-type]
    sync(plan.device)
    t0 = time.perf_counter()
    vectors = st.encode(texts, **kw)  # type: ignore[arg-type]
    sync(plan.device)
    seconds = time.perf_counter() - t0
    del st
    return seconds, np.asarray(vectors, dtype=np.float32)


def _error(row: dict, exc: Exception) -> None:
    row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    traceback.print_exc()


def million_rows(plan: Plan, tmp: Path) -> list[dict]:
    """The big job: ``plan.million`` short texts through the engine, then through
    sentence-transformers, both at ``million_precision``; with the peak host RSS (this
    process, run first so that it is the job's) and the GPU's peak allocation."""
    import pandas as pd
    import torch

    from fusionrank.encoders.engine import EmbedConfig
    from fusionrank.resources import peak_rss_mb

    texts = many_texts(plan.million)
    catalogue = tmp / "million.parquet"
    pd.DataFrame({"item_id": [str(i) for i in range(len(texts))], "text": texts}).to_parquet(catalogue)
    task = f"{len(texts):,} texts job"
    precision = plan.million_precision
    rows = []
    row: dict[str, Any] = {"task": task, "precision": precision, "system": "engine", "items": len(texts)}
    try:
        if plan.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        rss0 = peak_rss_mb()
        enc = build("text", "", precision, plan.device, plan.text_model)
        config = EmbedConfig(
            fields=("text",),
            model=plan.text_model,
            device=plan.device,
            precision=precision,  # type: ignore[arg-type]
            quiet=True,
            batch_size=plan.text_batch,
            shard_size=8192,
            workers=plan.workers,
        )
        seconds = engine_run(enc, catalogue, tmp / "million-engine", config)
        row.update(seconds=seconds, engine_items_per_s=len(texts) / seconds)
        row.update(peak_rss_mb_before=rss0, peak_rss_mb=peak_rss_mb())
        if plan.device.startswith("cuda"):
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        del enc
    except Exception as exc:
        _error(row, exc)
    print(row, flush=True)
    rows.append(row)
    if has_sentence_transformers():
        st_row: dict[str, Any] = {"task": task, "precision": precision, "system": "sentence-transformers"}
        try:
            seconds, _ = st_encode(plan, texts, precision)
            st_row.update(items=len(texts), seconds=seconds, engine_items_per_s=len(texts) / seconds)
            st_row["peak_rss_mb"] = peak_rss_mb()
        except Exception as exc:
            _error(st_row, exc)
        print(st_row, flush=True)
        rows.append(st_row)
    return rows


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The mean cosine of two sets of unit vectors, row by row."""
    return float(np.mean(np.sum(a * b, axis=1)))


def read_files(root: Path, names: list[str]) -> list[Any]:
    """Each file's bytes as a uint8 tensor (what the engine's workers read)."""
    import torch

    return [torch.frombuffer(bytearray((root / name).read_bytes()), dtype=torch.uint8) for name in names]


def run_variant(
    enc: Any,
    kind: str,
    config: Any,
    catalogue: Path,
    out: Path,
    changes: tuple[tuple[str, int], ...],
    row: dict,
    plan: Plan,
    texts: list[str],
    reference: np.ndarray | None,
) -> dict:
    """One engine run of ``row``'s task with ``changes`` (speed settings of the job; ``graphs``:
    CUDA graphs on the encoder, its forward rate and cosine measured with them too)."""
    from fusionrank.data.vectors import read_vectors

    name = ", ".join(f"{k} {v}" for k, v in changes)
    extra: dict[str, Any] = {"task": row["task"], "precision": row["precision"], "system": f"engine, {name}"}
    settings = dict(changes)
    graphs = bool(settings.pop("graphs", 0))
    try:
        if graphs:
            use_graphs(enc, kind, True)
        there = out.with_name(f"{out.name}-{name.replace(' ', '').replace(',', '-')}")
        took = engine_run(enc, catalogue, there, dataclasses.replace(config, **settings))
        extra.update(items=row["items"], seconds=took, engine_items_per_s=row["items"] / took)
        if graphs:
            extra["forward_items_per_s"] = forward_rate(enc, kind, plan, texts)
            if reference is not None:
                extra["cosine_vs_fp32"] = mean_cosine(read_vectors(there)[1], reference)
    except Exception as exc:
        _error(extra, exc)
    finally:
        if graphs:
            use_graphs(enc, kind, False)
    print(extra, flush=True)
    return extra


def measure(plan: Plan, tmp: Path, on_row: Any = None) -> list[dict]:
    """Every row of the table (a failed measurement is a row with its error); ``on_row(rows)``
    after each, so that a run cut short still leaves what it measured."""
    import pandas as pd
    import torch

    from fusionrank.data.vectors import read_vectors
    from fusionrank.encoders.engine import EmbedConfig

    rows = million_rows(plan, tmp) if plan.million else []
    done = on_row or (lambda rows: None)
    done(rows)
    texts = {"short": make_texts("short", plan.short_texts), "long": make_texts("long", plan.long_texts, 1)}
    names = make_images(tmp / "images", plan.images)
    catalogues = {}
    for kind, items in texts.items():
        catalogues[kind] = tmp / f"{kind}.parquet"
        pd.DataFrame({"item_id": [str(i) for i in range(len(items))], "text": items}).to_parquet(
            catalogues[kind]
        )
    catalogues["image"] = tmp / "images.parquet"
    pd.DataFrame({"item_id": [str(i) for i in range(len(names))], "image": names}).to_parquet(
        catalogues["image"]
    )
    warm = tmp / "warm.parquet"
    pd.DataFrame({"item_id": ["0", "1"], "text": texts["long"][:2], "image": names[:2]}).to_parquet(warm)

    tasks = [("text", "all-MiniLM-L6-v2", kind) for kind in ("short", "long")]
    tasks += [("image", model, "image") for model in plan.image_models]
    for kind, model, data in tasks:
        reference = None
        for precision in plan.precisions:
            row: dict[str, Any] = {"task": f"{model} {data}", "precision": precision, "system": "engine"}
            variant_rows: list[dict] = []
            started = time.perf_counter()
            try:
                if plan.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                enc = build(kind, model, precision, plan.device, plan.text_model)
                settings = dict(
                    device=plan.device,
                    precision=precision,
                    quiet=True,
                    batch_size=plan.text_batch if kind == "text" else plan.image_batch,
                    shard_size=8192,
                    workers=plan.workers,
                )
                if kind == "text":
                    config = EmbedConfig(fields=("text",), model=plan.text_model, **settings)  # type: ignore[arg-type]
                else:
                    resnet = model.startswith("resnet")
                    config = EmbedConfig(
                        encoder="image" if resnet else "clip",
                        model=model,
                        **({"weights": None} if resnet else {"clip_pretrained": None}),  # random weights
                        image_column="image",
                        image_root=str(tmp / "images"),
                        **settings,  # type: ignore[arg-type]
                    )
                if plan.warmup:
                    engine_run(enc, warm, tmp / f"warm-{model}-{data}-{precision}", config)
                # a job's fixed cost: a two-item job (after the warm-up: everything warm)
                row["fixed_seconds"] = engine_run(
                    enc, warm, tmp / f"fixed-{model}-{data}-{precision}", config
                )
                out = tmp / f"{model}-{data}-{precision}"
                seconds = engine_run(enc, catalogues[data], out, config)
                n = len(texts[data]) if kind == "text" else len(names)
                row.update(items=n, seconds=seconds, engine_items_per_s=n / seconds)
                manifest = json.loads((out / "manifest.json").read_text())
                row["ran"] = {k: manifest.get(k) for k in ("device", "cast", "decoder", "bucketing")}
                row["forward_items_per_s"] = forward_rate(enc, kind, plan, texts.get(data, []))
                if plan.device.startswith("cuda"):
                    row.update(batch_syncs(enc, kind, plan, texts.get(data, []), tmp / "images", names))
                if kind == "text":
                    row["stages"] = profile_text(enc, texts[data], plan, tmp)
                else:
                    row["stages"] = profile_images(enc, tmp / "images", names, plan, tmp)
                _, vectors = read_vectors(out)
                if precision == "fp32":
                    reference = vectors
                if reference is not None:
                    row["cosine_vs_fp32"] = mean_cosine(vectors, reference)
                if plan.device.startswith("cuda"):
                    row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
                variant_rows = [
                    run_variant(
                        enc,
                        kind,
                        config,
                        catalogues[data],
                        out,
                        changes,
                        row,
                        plan,
                        texts.get(data, []),
                        reference,
                    )
                    for task, variant_precision, changes in plan.variants
                    if (task, variant_precision) == (row["task"], precision)
                ]
                del enc
            except Exception as exc:  # one failure must not cost the other rows
                _error(row, exc)
            row["row_seconds"] = time.perf_counter() - started
            print(row, flush=True)
            rows.append(row)
            rows.extend(variant_rows)
            done(rows)
        if kind == "text" and has_sentence_transformers():
            for precision in plan.st_precisions:
                row = {"task": f"{model} {data}", "precision": precision, "system": "sentence-transformers"}
                try:
                    seconds, vectors = st_encode(plan, texts[data], precision)
                    n = len(texts[data])
                    row.update(items=n, seconds=seconds, engine_items_per_s=n / seconds)
                    if reference is not None:
                        row["cosine_vs_fp32"] = mean_cosine(vectors, reference)
                except Exception as exc:
                    _error(row, exc)
                print(row, flush=True)
                rows.append(row)
                done(rows)
    return rows


def device_checks(plan: Plan, tmp: Path) -> list[dict]:
    """What the GPU must not change: the engine's fp32 text vectors on the device against
    the CPU's, and the GPU JPEG path (a PNG, a CMYK JPEG and a broken file among the
    JPEGs) against the CPU's PIL path: the same rows and errors, close vectors."""
    import pandas as pd
    from PIL import Image

    from fusionrank.data.vectors import read_vectors
    from fusionrank.encoders.engine import EmbedConfig, embed_catalogue

    checks: list[dict] = []

    def check(name: str, run: Any) -> None:
        row: dict[str, Any] = {"check": name}
        try:
            row.update(run())
            row["pass"] = bool(row.get("pass"))
        except Exception as exc:
            _error(row, exc)
            row["pass"] = False
        print(row, flush=True)
        checks.append(row)

    def text() -> dict:
        texts = make_texts("short", 512, 5)
        cat = tmp / "check-text.parquet"
        pd.DataFrame({"item_id": [str(i) for i in range(len(texts))], "text": texts}).to_parquet(cat)
        got = {}
        for device in dict.fromkeys(("cpu", plan.device)):
            config = EmbedConfig(
                fields=("text",), model=plan.text_model, device=device, quiet=True, workers=plan.workers
            )
            embed_catalogue(cat, tmp / f"check-text-{device}", config, log=lambda m: None)
            got[device] = read_vectors(tmp / f"check-text-{device}")[1]
        a, b = got["cpu"], got[plan.device]
        cosine = float(np.min(np.sum(a * b, axis=1)))
        return {"min_cosine": cosine, "pass": cosine >= 0.9999}

    def images() -> dict:
        root = tmp / "check-images"
        names = make_images(root, 12, 7)
        rng = np.random.default_rng(7)
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(root / "p.png")
        Image.open(root / names[0]).convert("CMYK").save(root / "cmyk.jpg")
        data = (root / names[1]).read_bytes()
        (root / "broken.jpg").write_bytes(data[: len(data) // 3])
        names += ["p.png", "cmyk.jpg", "broken.jpg"]
        cat = tmp / "check-images.parquet"
        pd.DataFrame({"item_id": [str(i) for i in range(len(names))], "image": names}).to_parquet(cat)
        got, manifests = {}, {}
        for device in dict.fromkeys(("cpu", plan.device)):
            config = EmbedConfig(
                encoder="image",
                model="resnet50",
                weights=None,
                image_column="image",
                image_root=str(root),
                device=device,
                quiet=True,
                batch_size=8,
                workers=plan.workers,
            )
            manifests[device] = embed_catalogue(cat, tmp / f"check-img-{device}", config, log=lambda m: None)
            got[device] = read_vectors(tmp / f"check-img-{device}")
        (ids_a, a), (ids_b, b) = got["cpu"], got[plan.device]
        cosine = float(np.min(np.sum(a * b, axis=1))) if len(ids_a) == len(ids_b) else float("nan")
        same = list(ids_a) == list(ids_b) and manifests["cpu"]["errors"] == manifests[plan.device]["errors"]
        return {
            "rows": len(ids_b),
            "errors": manifests[plan.device]["errors"],
            "decoder": manifests[plan.device].get("decoder"),
            "min_cosine": cosine,
            "pass": same and cosine >= 0.99,
        }

    def graphs() -> dict:
        """CUDA graphs replay the eager forward: MiniLM at three batch shapes (fp32 and
        bf16) and ResNet-50 pixels at two batch sizes, each graphed output against eager."""
        import torch

        from fusionrank.encoders.graphs import graph_rows

        worst = {}
        for precision in ("fp32", "bf16"):
            enc = build("text", "", precision, plan.device, plan.text_model)
            texts = make_texts("short", 300, 9) + make_texts("long", 40, 9)
            for rows in (texts[:256], texts[256:300], texts[300:]):
                batch = enc.collate(enc.tokenize(rows))
                eager = enc.forward(batch).clone()
                enc.use_cuda_graphs(True)
                graphed = enc.forward(batch).clone()
                graphed = enc.forward(batch).clone()  # a replay
                enc.use_cuda_graphs(False)
                cos = float((eager * graphed).sum(dim=1).min())
                worst[f"text {precision}"] = min(worst.get(f"text {precision}", 1.0), cos)
        image = build("image", "resnet50", "fp32", plan.device)
        run = graph_rows(image.encode_pixels)
        for n in (128, 40):
            pixels = torch.randn(n, 3, 224, 224, device=image.device)
            eager = image.encode_pixels(pixels).clone()
            run(pixels)
            graphed = run(pixels).clone()
            worst["resnet50"] = min(worst.get("resnet50", 1.0), float((eager * graphed).sum(dim=1).min()))
        return {"min_cosine": worst, "pass": all(v >= 0.999 for v in worst.values())}

    check(f"text fp32 on {plan.device} vs cpu (engine, 512 texts)", text)
    check(f"resnet50 images on {plan.device} (GPU JPEG path) vs cpu PIL path", images)
    if plan.device.startswith("cuda"):
        check("CUDA graphs replay the eager forward (MiniLM fp32/bf16, ResNet-50)", graphs)
    return checks


TARGETS = {
    "short_vs_forward": 0.70,
    "long_vs_forward": 0.60,
    "half_vs_fp32": 1.5,
    "half_cosine": 0.999,
    "ViT-B-32": 7_500,
    "resnet50": 6_000,
    "engine_vs_st_million": 1.5,
}
"""The issue's targets: engine/forward at bf16 (short, long texts), bf16/fp16 end to end
against fp32 with their cosine, images per second, and the engine against
sentence-transformers on the 1,000,000-text job."""


def judge(rows: list[dict]) -> list[dict]:
    """One line per target: what was measured and whether it passes (a row per task and
    half precision where there are several)."""
    out: list[dict] = []
    engine = [r for r in rows if r.get("system", "engine") == "engine" and "engine_items_per_s" in r]

    def line(target: str, value: float | None, need: float, more: str = "") -> None:
        passed = value is not None and value >= need
        shown = "-" if value is None else f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
        out.append(
            {
                "target": target,
                "measured": shown,
                "needed": f">= {need:,}",
                "pass": "pass" if passed else "FAIL",
                "note": more,
            }
        )

    for r in engine:
        if (
            r["precision"] == "bf16"
            and r["task"].endswith(("short", "long"))
            and r.get("forward_items_per_s")
        ):
            kind = "short" if r["task"].endswith("short") else "long"
            line(
                f"{kind} texts bf16: engine / forward",
                r["engine_items_per_s"] / r["forward_items_per_s"],
                TARGETS[f"{kind}_vs_forward"],
            )
    for r in engine:
        if r["precision"] in ("bf16", "fp16") and not r["task"].endswith(" job"):
            base = next((b for b in engine if b["task"] == r["task"] and b["precision"] == "fp32"), None)
            if base is not None:
                line(
                    f"{r['task']} {r['precision']}: engine / fp32 engine",
                    r["engine_items_per_s"] / base["engine_items_per_s"],
                    TARGETS["half_vs_fp32"],
                )
            line(
                f"{r['task']} {r['precision']}: cosine vs fp32",
                r.get("cosine_vs_fp32"),
                TARGETS["half_cosine"],
            )
    for model in ("ViT-B-32", "resnet50"):
        mine = [r for r in engine if r["task"].startswith(model + " ")]
        if mine:
            best = max(mine, key=lambda r: r["engine_items_per_s"])
            line(f"{model} images/s (best: {best['precision']})", best["engine_items_per_s"], TARGETS[model])
    job = [r for r in rows if r["task"].endswith(" job") and "engine_items_per_s" in r]
    eng = next((r for r in job if r.get("system") == "engine"), None)
    st = next((r for r in job if r.get("system") == "sentence-transformers"), None)
    if eng is not None and st is not None:
        line(
            "1M job: engine / sentence-transformers",
            eng["engine_items_per_s"] / st["engine_items_per_s"],
            TARGETS["engine_vs_st_million"],
            f"peak RSS {eng.get('peak_rss_mb', 0):,.0f} MB, peak GPU {eng.get('peak_gpu_mb', 0):,.0f} MB",
        )
    return out


def machine(device: str) -> dict:
    import torch

    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        meta.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return meta


STAGES = ("tokenise", "collate", "read", "decode+preprocess", "h2d", "forward", "d2h", "write")


def write(
    folder: Path,
    plan: Plan,
    rows: list[dict],
    seconds: float,
    checks: list[dict] | None = None,
    quiet: bool = False,
) -> None:
    from fusionrank.evaluation.table import format_table
    from fusionrank.io import write_json

    folder.mkdir(parents=True, exist_ok=True)
    meta = {"plan": asdict(plan), "machine": machine(plan.device), "wall_seconds": seconds}
    targets = judge(rows)
    checks = checks or []
    write_json(folder / "gpu_embed.json", {"meta": meta, "rows": rows, "targets": targets, "checks": checks})
    table = [
        {
            "task": r["task"],
            "system": r.get("system", "engine"),
            "precision": r["precision"],
            "engine items/s": round(r["engine_items_per_s"], 1) if "engine_items_per_s" in r else "-",
            "forward items/s": round(r["forward_items_per_s"], 1) if "forward_items_per_s" in r else "-",
            "engine/forward": (
                f"{r['engine_items_per_s'] / r['forward_items_per_s']:.2f}"
                if r.get("forward_items_per_s") and "engine_items_per_s" in r
                else "-"
            ),
            "cosine vs fp32": f"{r['cosine_vs_fp32']:.5f}" if "cosine_vs_fp32" in r else "-",
            "fixed s": f"{r['fixed_seconds']:.2f}" if "fixed_seconds" in r else "-",
            "peak GPU MB": round(r["peak_gpu_mb"]) if "peak_gpu_mb" in r else "-",
            "peak RSS MB": round(r["peak_rss_mb"]) if "peak_rss_mb" in r else "-",
            "ran": ", ".join(f"{k} {v}" for k, v in (r.get("ran") or {}).items() if v) or "-",
            "syncs per batch": " / ".join(
                f"{r[k]['count']} ({' '.join(r[k]['where'])})" for k in ("syncs", "syncs_decode") if r.get(k)
            )
            or "-",
            "error": r.get("error", ""),
        }
        for r in rows
    ]
    stages = [
        {"task": r["task"], "precision": r["precision"], **{k: round(v, 2) for k, v in r["stages"].items()}}
        for r in rows
        if r.get("stages")
    ]
    stage_cols = ["task", "precision"] + [c for c in STAGES if any(c in r for r in stages)]
    where = meta["machine"].get("gpu", "CPU (dry run)")
    md = [
        "# Embedding throughput on a GPU",
        "",
        f"`benchmarks/gpu_embed.sh` on {where}, torch {meta['machine']['torch']}, "
        f"{meta['machine']['cpu_cores']} CPU cores; {plan.short_texts} short and {plan.long_texts} long "
        f"texts (batch {plan.text_batch}), {plan.images} 256 px JPEGs (batch {plan.image_batch}), "
        f"a {plan.million:,}-text job at {plan.million_precision}; image "
        "models with random weights. Engine: end to end (catalogue, tokenising or decoding, Parquet "
        "shards). Fixed: a two-item job with everything warm (the part of a job that does not grow with it). "
        "Forward: the model alone on inputs already on the device. Syncs per batch: the points "
        "where the host waits for the GPU in one forward pass (images: then in one batch decoded "
        "and encoded), where torch's sync debug mode saw them. Cosine: mean over the "
        "same items against the engine's fp32. sentence-transformers: its `encode`, same texts and "
        f"batch size. Wall time {seconds:.0f} s.",
        "",
        format_table(table, list(table[0]), markdown=True) if table else "(no rows)",
        "",
        "## Targets",
        "",
        format_table(targets, ["target", "measured", "needed", "pass", "note"], markdown=True)
        if targets
        else "(nothing to judge)",
        "",
        "## Checks",
        "",
        "\n".join(
            f"- {'pass' if c['pass'] else 'FAIL'}: {c['check']} "
            f"({', '.join(f'{k} {v}' for k, v in c.items() if k not in ('check', 'pass'))})"
            for c in checks
        )
        or "(none)",
        "",
        "## Where the time goes",
        "",
        "Each stage timed alone on the same items, ms per 1,000 items (tokenise, collate, read "
        "and decode+preprocess run in the engine's worker processes, side by side; h2d, "
        "forward and d2h on the GPU, overlapped by the engine).",
        "",
        format_table(stages, stage_cols, markdown=True) if stages else "(no profile)",
        "",
    ]
    (folder / "gpu_embed.md").write_text("\n".join(md))
    if not quiet:
        print("\n".join(md))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, results in a temp folder")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--text-model", help="the text model's folder (default: the packaged MiniLM)")
    parser.add_argument("--million", type=int, help="texts of the big job (default 1,000,000; 0: none)")
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGUSR1"):  # `timeout -s USR1` shows where a stuck run is
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    dry = args.dry_run or os.environ.get("DRY_RUN", "0") not in ("", "0")
    plan = Plan.dry() if dry else Plan()
    if args.text_model or args.million is not None:
        plan = dataclasses.replace(
            plan,
            text_model=args.text_model or plan.text_model,
            million=plan.million if args.million is None else args.million,
        )
    if not dry:
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA device here; use --dry-run to check the script on the CPU")
    folder = args.out or (Path(tempfile.mkdtemp(prefix="gpu_embed_dry_")) if dry else RESULTS)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(  # the big job first: the peak RSS is its own
            plan, Path(tmp), lambda rows: write(folder, plan, rows, time.perf_counter() - t0, quiet=True)
        )
        checks = device_checks(plan, Path(tmp))
    write(folder, plan, rows, time.perf_counter() - t0, checks)
    print(f"results -> {folder}")
    return folder


if __name__ == "__main__":
    main()
