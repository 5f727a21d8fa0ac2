"""GPU embedding throughput: MiniLM text, ResNet-50 and ViT-B-32 on cuda at fp32, bf16 and fp16.

For each model and precision: the engine end to end (catalogue read, tokenising or JPEG
decoding in workers, batching, Parquet shards, manifest) and the forward pass alone on
inputs already on the device; and the quality of each precision as the mean cosine of its
vectors against fp32's for the same items. The image models have random weights (built
from their configs, as in ``embed_throughput.py``); the text model is the packaged
all-MiniLM-L6-v2. One short run (a few minutes on one GPU) writes
``benchmarks/results/gpu_embed.{json,md}``.

    benchmarks/gpu_embed.sh              # on a machine with a GPU, after `make install`
    benchmarks/gpu_embed.sh --dry-run    # the same code on the CPU, tiny sizes, a temp folder
"""

from __future__ import annotations

import argparse
import os
import platform
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


def build(kind: str, model: str, precision: str, device: str) -> Any:
    """The encoder; random image weights are seeded, so every precision runs the same model."""
    import torch

    from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig
    from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig
    from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

    if kind == "text":
        return TextEncoder(TextEncoderConfig(precision=precision), device)  # type: ignore[arg-type]
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


def forward_rate(enc: Any, kind: str, plan: Plan, texts: list[str]) -> float:
    """Items per second of the forward pass alone, inputs already on the device."""
    import torch

    if kind == "text":
        ids = enc.tokenize(texts[: plan.text_batch])
        batch = enc.collate(ids)
        run = lambda: enc.forward(batch)  # noqa: E731
        size = len(ids)
    else:
        pixels = torch.randn(plan.image_batch, 3, 224, 224).to(enc.device)
        run = lambda: enc.encode_pixels(pixels)  # noqa: E731
        size = plan.image_batch
    if plan.warmup:
        run()  # cuDNN autotuning, lazy initialisation
    sync(plan.device)
    t0 = time.perf_counter()
    for _ in range(plan.forward_batches):
        run()
    sync(plan.device)
    return size * plan.forward_batches / (time.perf_counter() - t0)


def measure(plan: Plan, tmp: Path) -> list[dict]:
    """Every row of the table (a failed measurement is a row with its error)."""
    import pandas as pd
    import torch

    from fusionrank.data.vectors import read_vectors
    from fusionrank.encoders.engine import EmbedConfig

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
    rows = []
    for kind, model, data in tasks:
        reference = None
        for precision in plan.precisions:
            row: dict[str, Any] = {"task": f"{model} {data}", "precision": precision}
            started = time.perf_counter()
            try:
                if plan.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                enc = build(kind, model, precision, plan.device)
                settings = dict(
                    device=plan.device,
                    precision=precision,
                    quiet=True,
                    batch_size=plan.text_batch if kind == "text" else plan.image_batch,
                    shard_size=8192,
                )
                if kind == "text":
                    config = EmbedConfig(fields=("text",), **settings)  # type: ignore[arg-type]
                else:
                    resnet = model.startswith("resnet")
                    config = EmbedConfig(
                        encoder="image" if resnet else "clip",
                        model=model,
                        **({"weights": None} if resnet else {"clip_pretrained": None}),  # random weights
                        image_column="image",
                        image_root=str(tmp / "images"),
                        workers=plan.workers,
                        **settings,  # type: ignore[arg-type]
                    )
                if plan.warmup:
                    engine_run(enc, warm, tmp / f"warm-{model}-{data}-{precision}", config)
                out = tmp / f"{model}-{data}-{precision}"
                seconds = engine_run(enc, catalogues[data], out, config)
                n = len(texts[data]) if kind == "text" else len(names)
                row.update(items=n, seconds=seconds, engine_items_per_s=n / seconds)
                row["forward_items_per_s"] = forward_rate(enc, kind, plan, texts.get(data, []))
                _, vectors = read_vectors(out)
                if precision == "fp32":
                    reference = vectors
                if reference is not None:
                    row["cosine_vs_fp32"] = float(np.mean(np.sum(vectors * reference, axis=1)))
                if plan.device.startswith("cuda"):
                    row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
                del enc
            except Exception as exc:  # one failure must not cost the other rows
                row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
                traceback.print_exc()
            row["row_seconds"] = time.perf_counter() - started
            print(row, flush=True)
            rows.append(row)
    return rows


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


def write(folder: Path, plan: Plan, rows: list[dict], seconds: float) -> None:
    from fusionrank.evaluation.table import format_table
    from fusionrank.io import write_json

    folder.mkdir(parents=True, exist_ok=True)
    meta = {"plan": asdict(plan), "machine": machine(plan.device), "wall_seconds": seconds}
    write_json(folder / "gpu_embed.json", {"meta": meta, "rows": rows})
    table = [
        {
            "task": r["task"],
            "precision": r["precision"],
            "engine items/s": round(r["engine_items_per_s"], 1) if "engine_items_per_s" in r else "-",
            "forward items/s": round(r["forward_items_per_s"], 1) if "forward_items_per_s" in r else "-",
            "cosine vs fp32": f"{r['cosine_vs_fp32']:.5f}" if "cosine_vs_fp32" in r else "-",
            "peak GPU MB": round(r["peak_gpu_mb"]) if "peak_gpu_mb" in r else "-",
            "error": r.get("error", ""),
        }
        for r in rows
    ]
    where = meta["machine"].get("gpu", "CPU (dry run)")
    md = [
        "# Embedding throughput on a GPU",
        "",
        f"`benchmarks/gpu_embed.sh` on {where}, torch {meta['machine']['torch']}, "
        f"{meta['machine']['cpu_cores']} CPU cores; {plan.short_texts} short and {plan.long_texts} long "
        f"texts (batch {plan.text_batch}), {plan.images} 256 px JPEGs (batch {plan.image_batch}); image "
        "models with random weights. Engine: end to end (catalogue, tokenising or decoding, Parquet "
        "shards). Forward: the model alone on inputs already on the device. Cosine: mean over the "
        f"same items against fp32. Wall time {seconds:.0f} s.",
        "",
        format_table(table, list(table[0]), markdown=True) if table else "(no rows)",
        "",
    ]
    (folder / "gpu_embed.md").write_text("\n".join(md))
    print("\n".join(md))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, results in a temp folder")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    dry = args.dry_run or os.environ.get("DRY_RUN", "0") not in ("", "0")
    plan = Plan.dry() if dry else Plan()
    if not dry:
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA device here; use --dry-run to check the script on the CPU")
    folder = args.out or (Path(tempfile.mkdtemp(prefix="gpu_embed_dry_")) if dry else RESULTS)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(plan, Path(tmp))
    write(folder, plan, rows, time.perf_counter() - t0)
    print(f"results -> {folder}")
    return folder


if __name__ == "__main__":
    main()
