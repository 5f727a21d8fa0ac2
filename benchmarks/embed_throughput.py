"""Embedding throughput: our engine end to end against sentence-transformers and bare loops.

Each measurement runs in its own subprocess (so peak RSS is its own), with the model
loaded (and, for ONNX, exported or read from its cache) before the clock starts. Text:
all-MiniLM-L6-v2, batch 64, on 20,000 MovieLens-like strings (title year genres) and 2,000
long strings (~200 tokens), through the engine at fp32, int8 (torch dynamic quantisation),
and on ONNX Runtime at fp32 and int8. Images: 2,000 generated 256 px JPEGs, resnet50
(channels_last with fused batch norm, and torchvision's plain module for comparison) and
open_clip ViT-B-32 (fp32 and int8) with random weights, batch 32; the bare loop runs over
tensors decoded and preprocessed before the clock. The quality column is the mean cosine
of each engine setting's vectors against the fp32 engine's for the same items.

    .venv/bin/python benchmarks/embed_throughput.py          # -> benchmarks/results/embed_throughput.*
    .venv/bin/python benchmarks/embed_throughput.py --quick    # small sizes, for a smoke test
    .venv/bin/python benchmarks/embed_throughput.py --gate-only  # only the ml-100k quality gate
    .venv/bin/python benchmarks/embed_throughput.py --rewrite    # the markdown again from the JSON

Every run starts with the quality gate on ml-100k: each text setting's catalogue vectors
against fp32 (mean cosine) and the cold-items ``ease-content`` NDCG@10 beside fp32's.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fusionrank.resources import peak_rss_mb

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def make_texts(kind: str, n: int, seed: int = 0) -> list[str]:
    """MovieLens-like strings from the real ml-100k catalogue, or ~200-token long strings."""
    from fusionrank.data.dataset import default_root, load_dataset
    from fusionrank.data.text import field_text

    items = load_dataset("ml-100k", default_root()).items
    rng = np.random.default_rng(seed)
    titles = [field_text(t) for t in items["movie_title"]]
    years = [field_text(y) for y in items["release_year"]]
    genres = [field_text(g) for g in items["class"]]
    words = " ".join(titles + genres).split()
    out = []
    for k in range(n):
        i = int(rng.integers(len(titles)))
        if kind == "short":
            extra = "" if k < len(titles) else f" {rng.choice(words)}"
            out.append(f"{titles[i]}{extra} {years[i]} {genres[i]}".strip())
        else:
            out.append(" ".join(rng.choice(words, size=int(rng.integers(150, 190)))))
    return out


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    for k in range(n):
        # smooth random pictures compress like photos (a noise image would not)
        small = np.clip(base.astype(int) + rng.integers(-60, 60, (8, 8, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(small).resize((256, 256), Image.BICUBIC).save(folder / f"{k}.jpg", quality=90)
        names.append(f"{k}.jpg")
    return names


# --- workers: each runs in its own process ------------------------------------------


TEXT_ENGINES = {
    "fusionrank engine": {},
    "fusionrank engine int8": {"precision": "int8"},
    "fusionrank engine onnx": {"backend": "onnx"},
    "fusionrank engine onnx int8": {"backend": "onnx", "precision": "int8"},
}
"""Engine rows of the text tasks: their settings (the first is fp32, the quality reference)."""


def worker_text(system: str, kind: str, n: int, batch: int, out: str) -> dict:
    import pandas as pd
    import torch

    from fusionrank.encoders.weights import packaged_minilm_dir

    texts = make_texts(kind, n)
    if system == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
        t0 = time.perf_counter()
        st.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
        return {"seconds": time.perf_counter() - t0}
    from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

    settings = TEXT_ENGINES.get(system, {})
    enc = TextEncoder(TextEncoderConfig(**settings))  # type: ignore[arg-type]
    if system == "bare loop":
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, n, batch):
                tok = enc.tokenizer(
                    texts[s : s + batch], padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                enc.forward(dict(tok))
        return {"seconds": time.perf_counter() - t0}
    from fusionrank.encoders.engine import EmbedConfig, embed_catalogue

    with tempfile.TemporaryDirectory() as tmp:
        cat = Path(tmp) / "catalogue.parquet"
        pd.DataFrame({"item_id": [str(i) for i in range(n)], "text": texts}).to_parquet(cat)
        cfg = EmbedConfig(fields=("text",), batch_size=batch, quiet=True, **settings)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        manifest = embed_catalogue(cat, Path(out), cfg, encoder=enc, log=lambda m: None)
        seconds = time.perf_counter() - t0
    assert manifest["rows"] == n
    return {"seconds": seconds, "vectors": out}


IMAGE_ENGINES = {
    "fusionrank engine": {},
    "fusionrank engine, plain NCHW module": {"optimize": False},
    "fusionrank engine int8": {"precision": "int8"},
}
"""Engine rows of the image tasks (the plain module: resnet50 only; int8: ViT-B-32 only)."""


def image_systems(model: str) -> list[str]:
    engines = ["fusionrank engine"]
    engines.append(
        "fusionrank engine, plain NCHW module" if model == "resnet50" else "fusionrank engine int8"
    )
    return [*engines, "bare loop (pre-decoded)"]


def worker_image(system: str, model: str, n: int, batch: int, folder: str, workers: int, out: str) -> dict:
    import pandas as pd
    import torch
    from PIL import Image

    settings = dict(IMAGE_ENGINES.get(system, {}))
    optimize = settings.pop("optimize", True)
    torch.manual_seed(0)  # the same random weights in every row
    if model == "resnet50":
        from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig

        enc: Any = ImageEncoder(
            ImageEncoderConfig(model="resnet50", weights=None, optimize=optimize, **settings)
        )
    else:
        from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig

        enc = ClipEncoder(ClipEncoderConfig(model="ViT-B-32", pretrained=None, **settings))
    names = [f"{k}.jpg" for k in range(n)]
    if system == "bare loop (pre-decoded)":
        pixels = [enc.preprocess(Image.open(Path(folder) / f).convert("RGB")) for f in names]
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, n, batch):
                enc.encode_pixels(torch.stack(pixels[s : s + batch]))
        return {"seconds": time.perf_counter() - t0}
    from fusionrank.encoders.engine import EmbedConfig, embed_catalogue

    with tempfile.TemporaryDirectory() as tmp:
        cat = Path(tmp) / "catalogue.parquet"
        pd.DataFrame({"item_id": [str(i) for i in range(n)], "image": names}).to_parquet(cat)
        cfg = EmbedConfig(
            encoder="image" if model == "resnet50" else "clip",
            image_column="image",
            image_root=folder,
            batch_size=batch,
            workers=workers,
            quiet=True,
            **({"weights": None} if model == "resnet50" else {"clip_pretrained": None}),  # random weights
            model=model,
            **settings,  # type: ignore[arg-type]
        )
        t0 = time.perf_counter()
        manifest = embed_catalogue(cat, Path(out), cfg, encoder=enc, log=lambda m: None)
        seconds = time.perf_counter() - t0
    assert manifest["rows"] == n, manifest
    return {"seconds": seconds, "vectors": out}


def quality_gate(seed: int = 2020) -> list[dict]:
    """The ml-100k gate of every text setting: mean cosine of its catalogue vectors against
    the fp32 engine's, and the cold-items ``ease-content`` (text) test NDCG@10 beside fp32's."""
    import dataclasses

    import fusionrank as fr
    from fusionrank.data.dataset import default_root
    from fusionrank.data.vectors import read_vectors
    from fusionrank.pipelines.stages.embed import embed_content

    base = fr.load_dataset("ml-100k", default_root())
    split = fr.split(base, "cold-items", seed=seed)
    rows: list[dict] = []
    for system, settings in TEXT_ENGINES.items():
        profile = dataclasses.replace(base.profile, encoders={"text": {**settings, "quiet": True}})
        ds = dataclasses.replace(base, profile=profile)
        ids, vecs = read_vectors(embed_content(ds, ["text"])["text"])
        model = fr.build_model("ease-content", modalities=("text",))
        result = fr.evaluate(model.fit(dataclasses.replace(split, dataset=ds)), split, ks=(10,))
        rows.append({"system": system, "ids": ids, "vectors": vecs, "ndcg@10": result.metrics["ndcg@10"]})
    ref = rows[0]
    for r in rows:
        assert list(r["ids"]) == list(ref["ids"])
        r["cosine_vs_fp32"] = float(np.mean(np.sum(r["vectors"] * ref["vectors"], axis=1)))
        r["ndcg_vs_fp32"] = r["ndcg@10"] / ref["ndcg@10"]
        r["passes"] = r["cosine_vs_fp32"] >= 0.99 and r["ndcg_vs_fp32"] >= 0.99
    for r in rows:
        r.pop("ids")
        r.pop("vectors", None)
        print(r, flush=True)
    return rows


def run_worker(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers", type=int, default=None, help="image decoding workers of our engine (default: its own)"
    )
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--gate-only", action="store_true", help="only the ml-100k quality gate")
    parser.add_argument("--rewrite", action="store_true", help="rewrite the markdown from the saved JSON")
    args = parser.parse_args()
    if args.rewrite:
        saved = json.loads((RESULTS / "embed_throughput.json").read_text())
        render(saved["meta"], saved["rows"], saved["quality_gate"], "embed_throughput")
        return
    if args.worker:
        kind, *rest = args.worker
        res = (
            worker_text(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
            if kind == "text"
            else worker_image(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4], _int(rest[5]), rest[6])
        )
        res["peak_rss_mb"] = peak_rss_mb()
        print("RESULT " + json.dumps(res))
        return

    gate = quality_gate()
    if args.gate_only:
        write_gate(gate)
        return
    n_short, n_long, n_img = (300, 40, 32) if args.quick else (20_000, 2_000, 2_000)
    rows = []
    with tempfile.TemporaryDirectory() as vectors:
        for kind, n in (("short", n_short), ("long", n_long)):
            for system in (*TEXT_ENGINES, "sentence-transformers", "bare loop"):
                out = str(Path(vectors) / f"text-{kind}-{len(rows)}")
                res = run_worker(["text", system, kind, str(n), "64", out])
                rows.append({"task": f"text {kind} ({n}) MiniLM", "system": system, "items": n, **res})
                print(rows[-1], flush=True)
        if not args.skip_images:
            with tempfile.TemporaryDirectory() as tmp:
                make_images(Path(tmp), n_img)
                for model in ("resnet50", "ViT-B-32"):
                    for system in image_systems(model):
                        out = str(Path(vectors) / f"image-{len(rows)}")
                        res = run_worker(
                            ["image", system, model, str(n_img), "32", tmp, str(args.workers), out]
                        )
                        task = f"images ({n_img}, 256 px) {model}"
                        rows.append({"task": task, "system": system, "items": n_img, **res})
                        print(rows[-1], flush=True)
        compare(rows)
    write(rows, gate, quick=args.quick)


def _int(text: str) -> int | None:
    return None if text == "None" else int(text)


def compare(rows: list[dict]) -> None:
    """Items/s, each engine row's speed against the peers and the fp32 engine, and its
    quality: the mean cosine of its vectors against the fp32 engine's for the same items."""
    from fusionrank.data.vectors import read_vectors

    for r in rows:
        r["items_per_s"] = r["items"] / r["seconds"]
    for r in rows:
        if not r["system"].startswith("fusionrank engine"):
            continue
        same = [p for p in rows if p["task"] == r["task"]]
        peers = [p for p in same if not p["system"].startswith("fusionrank engine")]
        r["ratio"] = {p["system"]: r["items_per_s"] / p["items_per_s"] for p in peers}
        fp32 = next(p for p in same if p["system"] == "fusionrank engine")
        r["speedup_vs_fp32_engine"] = r["items_per_s"] / fp32["items_per_s"]
        ids_a, a = read_vectors(r["vectors"])
        ids_b, b = read_vectors(fp32["vectors"])
        assert list(ids_a) == list(ids_b)
        r["cosine_vs_fp32"] = float(np.mean(np.sum(a * b, axis=1)))
    for r in rows:
        r.pop("vectors", None)


def gate_table(gate: list[dict]) -> list[str]:
    """The ml-100k quality gate as markdown lines."""
    from fusionrank.evaluation.table import format_table

    table = [
        {
            "setting": r["system"],
            "cosine vs fp32 (ml-100k catalogue)": f"{r['cosine_vs_fp32']:.4f}",
            "cold-items ease-content NDCG@10": f"{r['ndcg@10']:.4f}",
            "÷ fp32": f"{r['ndcg_vs_fp32']:.4f}",
            "passes": "yes" if r["passes"] else "no",
        }
        for r in gate
    ]
    return [
        "## Quality gate (ml-100k)",
        "",
        "Each text setting embeds the ml-100k catalogue; cosine is the mean against the fp32 engine's "
        "vectors; NDCG@10 is `ease-content` (text) on the cold-items split (seed 2020, protocol (a)). "
        "A setting passes with cosine ≥ 0.99 and NDCG@10 ≥ 0.99 × fp32's.",
        "",
        format_table(table, list(table[0]), markdown=True),
        "",
    ]


def write_gate(gate: list[dict]) -> None:
    """The gate alone: ``embed_quality_gate.{json,md}``."""
    from fusionrank.io import write_json

    write_json(RESULTS / "embed_quality_gate.json", {"rows": gate})
    lines = ["# Embedding settings: quality gate", "", *gate_table(gate)[2:]]
    (RESULTS / "embed_quality_gate.md").write_text("\n".join(lines))
    print("\n".join(lines))


def write(rows: list[dict], gate: list[dict], quick: bool) -> None:
    from fusionrank.io import write_json

    name = "embed_throughput_quick" if quick else "embed_throughput"
    meta = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, CPU",
        "torch_threads": __import__("torch").get_num_threads(),
    }
    write_json(RESULTS / f"{name}.json", {"meta": meta, "rows": rows, "quality_gate": gate})
    render(meta, rows, gate, name)


def _row(rows: list[dict], task: str, system: str) -> dict:
    return next(r for r in rows if r["task"].startswith(task) and r["system"] == system)


def targets(rows: list[dict], gate: list[dict]) -> list[str]:
    """Issue 14's targets, each speed figure with its quality gate beside it."""
    passing = {g["system"]: g for g in gate if g["passes"]}
    lines = ["## Targets", ""]
    for kind, want in (("short", 2.0), ("long", 1.5)):
        fp32 = _row(rows, f"text {kind}", "fusionrank engine")
        best = max(
            (r for r in rows if r["task"].startswith(f"text {kind}") and r["system"] in passing),
            key=lambda r: r["items_per_s"],
        )
        g = passing[best["system"]]
        ratio = best["ratio"]["sentence-transformers"]
        lines.append(
            f"- Text, {kind}: best setting passing the ml-100k gate is `{best['system']}` at "
            f"{ratio:.2f}× sentence-transformers (target ≥ {want}: {'met' if ratio >= want else 'missed'}); "
            f"gate: cosine {g['cosine_vs_fp32']:.4f} on the ml-100k catalogue, {best['cosine_vs_fp32']:.4f} "
            f"on these texts, NDCG@10 {g['ndcg_vs_fp32']:.3f}× fp32. fp32 beside it: "
            f"{fp32['ratio']['sentence-transformers']:.2f}×."
        )
    for model, today, faster in (
        ("resnet50", "fusionrank engine, plain NCHW module", "fusionrank engine"),
        ("ViT-B-32", "fusionrank engine", "fusionrank engine int8"),
    ):
        a = next(r for r in rows if r["task"].endswith(model) and r["system"] == today)
        b = next(r for r in rows if r["task"].endswith(model) and r["system"] == faster)
        ratio = b["items_per_s"] / a["items_per_s"]
        cosine = min(a["cosine_vs_fp32"], b["cosine_vs_fp32"])  # one of the two is the fp32 engine
        ok = ratio >= 1.3 and cosine >= 0.99
        lines.append(
            f"- Images, {model}: `{faster}` at {ratio:.2f}× `{today}` (the fp32 engine before this work; "
            f"target ≥ 1.3 with cosine ≥ 0.99: {'met' if ok else 'missed'}); cosine between the two on the "
            f"synthetic image set {cosine:.4f} (random weights)."
        )
    return [*lines, ""]


def render(meta: dict, rows: list[dict], gate: list[dict], name: str) -> None:
    """The markdown table of ``rows``, the ml-100k gate and the targets."""
    from fusionrank.evaluation.table import format_table

    table_rows = []
    for r in rows:
        ratio = r.get("ratio", {})
        table_rows.append(
            {
                "task": r["task"],
                "system": r["system"],
                "items/s": round(r["items_per_s"], 1),
                "seconds": round(r["seconds"], 1),
                "peak RSS MB": round(r["peak_rss_mb"]),
                "× fp32 engine": f"{r['speedup_vs_fp32_engine']:.2f}×"
                if "speedup_vs_fp32_engine" in r
                else "-",
                "cosine vs fp32": f"{r['cosine_vs_fp32']:.4f}" if "cosine_vs_fp32" in r else "-",
                "ours ÷ peer": ", ".join(f"{v:.2f}× {k}" for k, v in ratio.items()) or "-",
            }
        )
    md = [
        "# Embedding throughput (CPU)",
        "",
        f"`.venv/bin/python benchmarks/embed_throughput.py` on {meta['machine']}; each row in its own "
        "process, model loaded before timing; ours is end to end (catalogue read, batching, Parquet "
        "shards, manifest). Cosine vs fp32: the mean over the same items against the fp32 engine "
        "(the image models have random weights). ONNX rows: ONNX Runtime, the model exported "
        "before the clock.",
        "",
        format_table(table_rows, list(table_rows[0]), markdown=True),
        "",
        *gate_table(gate),
        *(targets(rows, gate) if name == "embed_throughput" else []),
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
