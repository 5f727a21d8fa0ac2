"""The Ray engine against the local engine: same jobs, same machine, one run.

Each measurement is one ``fusionrank embed`` command in a fresh process, timed from start
to exit (``wall``: what a user waits for) and by the engine's own clock (its summary line;
both engines load the model in the driver before that clock starts, the Ray engine while
Ray starts in the background: its clock holds what is left of Ray's start-up, every
actor's start and model load, and Ray's shutdown):

- text: all-MiniLM-L6-v2 (the packaged weights) on 20,000 MovieLens-like strings, shards of
  1,000 rows; the local engine (one process, torch on every core) against Ray with one
  actor per core (one torch thread each) and with one actor (every core);
- text 60k: the same strings three times over (new ids), local and Ray with one actor per
  core: how the fixed cost of Ray's start-up weighs on a longer job;
- image: a ResNet-18 with random weights (built from its config, saved to safetensors and
  loaded through the real path) on 2,000 generated 256 px JPEGs, shards of 250 rows.

Per-actor throughput (Ray, one actor per core) times the actors is what a cluster of such
workers gives until the driver (which writes every shard) or the catalogue's storage
becomes the bottleneck; see the table's notes.

Also ``fusionrank run`` on ml-100k and on a synthetic dataset (``fusionrank data synth``,
100,000 interactions, text content embedded with ``--engine ray``), with pop, itemknn and
EASE as sources: a fresh local run, a fresh run with ``engine: ray`` (same tables and
metrics expected), and then ``ranker.engine: ray`` (2 Ray Train workers) in the Ray run's
folder, where only the ranker stage reruns: its test NDCG@10 beside the local ranker's.

    .venv/bin/python benchmarks/ray_engine.py          # -> benchmarks/results/ray_engine.*
    .venv/bin/python benchmarks/ray_engine.py --quick  # small sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"embedded (\d+) items \((\d+) errors\) in ([\d.]+)s")
SPREAD = re.compile(r"ray: (\d+) shards on (\d+) node")
STEADY = re.compile(r"first shard back after ([\d.]+)s(?:, then ([\d.]+) items/s)?")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def catalogues(work: Path, texts: int, images: int, big: int) -> dict[str, list[str]]:
    """The text and image catalogues (and a ``big`` text one, the same strings repeated with
    new ids); returns each job's catalogue arguments."""
    sys.path.insert(0, str(HERE))
    from embed_throughput import make_images, make_texts

    from fusionrank.encoders.tiny import save_tiny_resnet

    text_path = work / "texts.parquet"
    pd.DataFrame(
        {"item_id": [f"t{k}" for k in range(texts)], "title": make_texts("short", texts)}
    ).to_parquet(text_path)
    big_path = work / "texts-big.parquet"
    pd.DataFrame(
        {
            "item_id": [f"b{k}" for k in range(big)],
            "title": (make_texts("short", texts) * -(-big // texts))[:big],
        }
    ).to_parquet(big_path)
    names = make_images(work / "images", images)
    image_path = work / "images.parquet"
    pd.DataFrame({"item_id": [f"p{k}" for k in range(images)], "image": names}).to_parquet(image_path)
    weights = save_tiny_resnet(work / "resnet18.safetensors")
    return {
        "text": ["--catalogue", str(text_path), "--fields", "title", "--shard-size", "1000"],
        f"text {big // 1000}k": ["--catalogue", str(big_path), "--fields", "title", "--shard-size", "1000"],
        "image": [
            "--catalogue",
            str(image_path),
            "--encoder",
            "image",
            "--model",
            "resnet18",
            "--weights",
            str(weights),
            "--image-column",
            "image",
            "--image-root",
            str(work / "images"),
            "--batch-size",
            "32",
            "--shard-size",
            "250",
        ],
    }


def measure(job: str, args: list[str], engine: str, actors: int | None, work: Path) -> dict[str, Any]:
    out = work / f"out-{job}-{engine}-{actors}"
    cmd = [str(BIN / "fusionrank"), "embed", *args, "--out", str(out), "--quiet", "--engine", engine]
    if actors:
        cmd += ["--actors", str(actors)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    said = done.stdout + done.stderr  # the engine's summary and Ray lines go to stderr
    summary = SUMMARY.search(said)
    if summary is None:
        raise SystemExit(f"no summary line in:\n{said[-2000:]}")
    items, errors, seconds = int(summary.group(1)), int(summary.group(2)), float(summary.group(3))
    spread = SPREAD.search(said)
    steady = STEADY.search(said)
    row = {
        "job": job,
        "engine": engine,
        "actors": actors if engine == "ray" else None,
        "items": items,
        "errors": errors,
        "engine_s": seconds,
        "engine_items_per_s": items / seconds,
        "wall_s": wall,
        "wall_items_per_s": items / wall,
        "nodes": int(spread.group(2)) if spread else None,
        # the local engine's clock starts with its model loaded: its rate is its steady rate
        "first_back_s": float(steady.group(1)) if steady else None,
        "steady_items_per_s": (
            (float(steady.group(2)) if steady.group(2) else None) if steady else items / seconds
        ),
    }
    label = f"{engine}" + (f" x{actors}" if actors else "")
    print(
        f"{job:5s} {label:8s} {row['engine_items_per_s']:8.1f} items/s (engine), wall {wall:6.1f} s",
        flush=True,
    )
    return row


def vectors_agree(work: Path, job: str, actors: int) -> float:
    """Largest absolute difference between the Ray and local engines' vectors."""
    import numpy as np

    from fusionrank.data.vectors import read_vectors

    ids_a, a = read_vectors(work / f"out-{job}-local-None")
    ids_b, b = read_vectors(work / f"out-{job}-ray-{actors}")
    if list(ids_a) != list(ids_b):
        raise SystemExit(f"{job}: the engines wrote different ids")
    return float(np.abs(a - b).max())


def run_config(name: str, dataset: str, root: Path, out: Path) -> Path:
    import yaml

    raw = {
        "name": name,
        "dataset": dataset,
        "root": str(root),
        "out": str(out),
        "split": {"kind": "ratio", "seed": 2020},
        "modalities": ["text"] if dataset.startswith("synth") else [],
        "models": {"pop": {}, "itemknn": {}, "ease": {}},
        "retrieval": {"n": 100},
        "evaluation": {"ks": [10]},
        "ablation": False,
    }
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def fusionrank_run(config: Path, *sets: str) -> dict[str, Any]:
    """One ``fusionrank run`` process; its metrics, stage times and wall time."""
    cmd = [str(BIN / "fusionrank"), "run", str(config), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=config.parent)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    import yaml

    raw = yaml.safe_load(config.read_text())
    folder = Path(raw["out"]) / raw["name"]
    metrics = json.loads((folder / "metrics.json").read_text())
    timings = json.loads((folder / "timings.json").read_text())
    return {"metrics": metrics, "stages_s": timings["stages_s"], "wall_s": wall}


def runs(work: Path) -> tuple[list[dict[str, Any]], str]:
    """ml-100k and a synthetic dataset: local run, ``engine: ray`` run, then the Ray ranker;
    and the summary line of the synthetic catalogue embedded with ``--engine ray``."""
    from fusionrank.data.dataset import default_root

    synth_root = work / "data"
    synth = [str(BIN / "fusionrank"), "data", "synth", "--name", "synth-100k", "--users", "690"]
    synth += ["--items", "3000", "--interactions", "100000", "--root", str(synth_root)]
    subprocess.run(synth, check=True, capture_output=True)
    embed = [str(BIN / "fusionrank"), "embed", "--dataset", "synth-100k", "--root", str(synth_root)]
    embed += ["--encoder", "text", "--out", str(work / "synth-100k-text-ray"), "--engine", "ray", "--quiet"]
    said = subprocess.run(embed, check=True, capture_output=True, text=True)
    summary = next(line for line in (said.stdout + said.stderr).splitlines() if SUMMARY.search(line))
    rows = []
    for dataset, root in (("ml-100k", default_root()), ("synth-100k", synth_root)):
        local = fusionrank_run(run_config("local", dataset, root, work / "runs" / dataset))
        path = run_config("ray", dataset, root, work / "runs" / dataset)
        on_ray = fusionrank_run(path, "engine=ray")
        ranker = fusionrank_run(path, "engine=ray", "ranker.engine=ray", "ranker.workers=2")
        ndcg = lambda r: r["metrics"]["models"]["ltr"]["metrics"]["ndcg@10"]  # noqa: E731
        same = {k: local["metrics"][k] for k in ("models", "candidate_recall")} == {
            k: on_ray["metrics"][k] for k in ("models", "candidate_recall")
        }
        rows.append(
            {
                "dataset": dataset,
                "local_wall_s": local["wall_s"],
                "ray_wall_s": on_ray["wall_s"],
                "local_features_s": local["stages_s"]["features"],
                "ray_features_s": on_ray["stages_s"]["features"],
                "same_metrics": same,
                "local_ranker_ndcg@10": ndcg(local),
                "ray_ranker_ndcg@10": ndcg(ranker),
                "local_ranker_s": local["stages_s"]["ranker"],
                "ray_ranker_s": ranker["stages_s"]["ranker"],
            }
        )
        r = rows[-1]
        print(
            f"{dataset}: run local {r['local_wall_s']:.0f} s, ray {r['ray_wall_s']:.0f} s, "
            f"same metrics {same}; "
            f"ranker NDCG@10 local {r['local_ranker_ndcg@10']:.4f}, ray {r['ray_ranker_ndcg@10']:.4f}",
            flush=True,
        )
    return rows, summary


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Ray engine against the local engine (batch embedding)",
        "",
        f"`{result['command']}` on {result['machine']}; one `fusionrank embed` process per row. "
        "*Engine* items/s is the engine's own clock, from the first shard to the manifest (the "
        "driver loads the model before it starts, the Ray engine's driver while Ray starts in the "
        "background; what is left of Ray's start-up, every actor's start and model load and Ray's "
        "shutdown fall inside it); *steady*: the Ray engine's rate once every actor has returned a shard "
        "(its `ray:` log line), the local engine's clock rate for local rows; *first shard back*: "
        "from the driver asking for Ray to the first shard's vectors on the driver; *wall* is the "
        "whole command. "
        "Ray rows use a local Ray instance started by the command.",
        "",
        "| job | engine | actors | items | engine items/s | ÷ local | steady items/s | ÷ local "
        "| first shard back s | wall s | wall ÷ local | max abs diff vs local |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        local = next(x for x in result["rows"] if x["job"] == r["job"] and x["engine"] == "local")
        diff = result["agreement"].get(f"{r['job']}-{r['actors']}") if r["engine"] == "ray" else None
        first = "-" if r.get("first_back_s") is None else f"{r['first_back_s']:.1f}"
        rate = r.get("steady_items_per_s")
        steady = "- | -" if rate is None else f"{rate:.1f} | {rate / local['steady_items_per_s']:.2f}"
        lines.append(
            f"| {r['job']} | {r['engine']} | {r['actors'] or '-'} | {r['items']:,} "
            f"| {r['engine_items_per_s']:.1f} | {r['engine_items_per_s'] / local['engine_items_per_s']:.2f} "
            f"| {steady} "
            f"| {first} "
            f"| {r['wall_s']:.1f} | {local['wall_s'] / r['wall_s']:.2f} "
            f"| {'-' if diff is None else f'{diff:.1e}'} |"
        )
    cores = result["cores"]
    lines += [
        "",
        *target_lines(result),
        "",
        "Per actor (Ray, one actor per core, one torch thread each):",
        "",
    ]
    for job in ("text", "image"):
        row = next((r for r in result["rows"] if r["job"] == job and r["actors"] == cores), None)
        if row:
            per = row["engine_items_per_s"] / cores
            lines.append(
                f"- {job}: {per:.1f} items/s per actor; N such actors give about N × {per:.0f} items/s "
                "while the driver keeps up"
            )
    lines += [
        "",
        "Where the bottleneck moves on a cluster (expected, not measured): the actors scale with "
        "the cluster (each loads "
        "the model once and reads its shards of the catalogue directly, memory-mapped, so the "
        "catalogue and weights must sit at the same path on every node, e.g. shared storage). "
        "The driver only receives each shard's vectors and writes them (one Parquet file per "
        "shard, dim × 4 bytes per item: 1.5 KB at 384 dimensions); on these 2 cores the fixed "
        "costs dominate instead (each actor's start and model load, inside the engine clock). "
        "Not measured on a cluster. Image decoding runs inside the actors (CPU), so with GPU "
        "actors give each enough CPUs (`num_cpus` follows the cluster's CPUs per actor).",
        "",
    ]
    if result.get("runs"):
        lines += [
            "`fusionrank run` (pop, itemknn, EASE; ranker defaults): a fresh local run, a fresh run "
            "with `engine: ray` (candidates, features and test predictions in Ray actors), then "
            "`ranker.engine: ray` (Ray Train, 2 LightGBM workers) in the Ray run's folder:",
            "",
            "| dataset | run s local | run s ray | features s local | features s ray | same tables "
            "and metrics | ranker NDCG@10 local | ranker NDCG@10 Ray Train | difference | ranker s local "
            "| ranker s Ray Train |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["runs"]:
            diff = r["ray_ranker_ndcg@10"] - r["local_ranker_ndcg@10"]
            lines.append(
                f"| {r['dataset']} | {r['local_wall_s']:.0f} | {r['ray_wall_s']:.0f} "
                f"| {r['local_features_s']:.0f} | {r['ray_features_s']:.0f} "
                f"| {'yes' if r['same_metrics'] else 'no'} "
                f"| {r['local_ranker_ndcg@10']:.4f} | {r['ray_ranker_ndcg@10']:.4f} | {diff:+.4f} "
                f"| {r['local_ranker_s']:.0f} | {r['ray_ranker_s']:.0f} |"
            )
        lines += [
            "",
            f"The synthetic catalogue embedded with `--engine ray`: {result['synth_embed_on_ray']}",
            "",
        ]
    return "\n".join(lines)


def fixed_cost(ray_row: dict[str, Any]) -> float:
    """Seconds of the Ray job's clock that are not work at its steady rate (what is left of
    Ray's start-up, the actors' start and model load, the tail and Ray's shutdown)."""
    return ray_row["engine_s"] - ray_row["items"] / ray_row["steady_items_per_s"]


def target_lines(result: dict[str, Any]) -> list[str]:
    """The ≥ 0.8× target on the 20k text job, what stands between, and the larger job."""
    cores, rows = result["cores"], result["rows"]
    pick = lambda job, engine: next(  # noqa: E731
        (r for r in rows if r["job"] == job and r["engine"] == engine and r["actors"] in (None, cores)), None
    )
    local, ray = pick("text", "local"), pick("text", "ray")
    if not (local and ray and ray["steady_items_per_s"] is not None):
        return []
    ratio = ray["engine_items_per_s"] / local["engine_items_per_s"]
    steady = ray["steady_items_per_s"] / local["steady_items_per_s"]
    fixed = fixed_cost(ray)
    lines = [
        f"Target (text, {local['items']:,} items, Ray with one actor per core ≥ 0.8× the local engine's "
        f"items/s): **{ratio:.2f}×** by the engines' clocks ({'met' if ratio >= 0.8 else 'missed'}), "
        f"{local['wall_s'] / ray['wall_s']:.2f}× by the whole command's wall time. "
        f"In steady state (after every actor returned its first shard) Ray runs at **{steady:.2f}×** "
        f"the local engine; the rest is a fixed cost of {fixed:.1f} s (what is left of Ray's start-up, "
        "the actors' start and model load, the last shard's tail, Ray's shutdown) that does not grow "
        "with the job."
    ]
    rate_l, rate_r = local["steady_items_per_s"], ray["steady_items_per_s"]
    if 0.8 * rate_l < rate_r:
        need = 0.8 * rate_l * fixed / (1 - 0.8 * rate_l / rate_r)
        lines[0] += f" With these rates, jobs above about {need:,.0f} items reach 0.8×."
    big = [r for r in rows if r["job"].startswith("text ") and r["engine"] == "ray"]
    for r in big:
        base = pick(r["job"], "local")
        if base:
            lines[0] += (
                f" Measured on {r['items']:,} items: "
                f"{r['engine_items_per_s'] / base['engine_items_per_s']:.2f}× (engine clock), "
                f"{base['wall_s'] / r['wall_s']:.2f}× (wall)."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 texts and 200 images, into a temp folder")
    parser.add_argument("--no-runs", action="store_true", help="embedding only, no fusionrank run")
    args = parser.parse_args()
    texts, images, big = (2_000, 200, 6_000) if args.quick else (20_000, 2_000, 60_000)
    work = Path(tempfile.mkdtemp(prefix="fusionrank-ray-bench-"))
    target = Path(tempfile.mkdtemp()) if args.quick else RESULTS
    jobs = catalogues(work, texts, images, big)
    cores = _cores()
    rows, agreement = [], {}
    for job, job_args in jobs.items():
        rows.append(measure(job, job_args, "local", None, work))
        for actors in sorted({cores, 1}, reverse=True) if job in ("text", "image") else [cores]:
            rows.append(measure(job, job_args, "ray", actors, work))
            agreement[f"{job}-{actors}"] = vectors_agree(work, job, actors)
    result = {
        "command": "python benchmarks/ray_engine.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {cores} cores",
        "cores": cores,
        "rows": rows,
        "agreement": agreement,
    }
    if not args.no_runs:
        result["runs"], result["synth_embed_on_ray"] = runs(work)
    target.mkdir(parents=True, exist_ok=True)
    (target / "ray_engine.json").write_text(json.dumps(result, indent=2) + "\n")
    (target / "ray_engine.md").write_text(markdown(result))
    print(markdown(result))
    print(f"written to {target}")


if __name__ == "__main__":
    main()
