"""Scale: ``fusionrank data synth`` then ``fusionrank run`` at about 1M, 5M and 20M interactions.

MovieLens-20M's shape: its catalogue of 27,000 items at every size, 145 interactions per
user on average (so 6,900 / 34,500 / 138,000 users), log-normal popularity and activity. The catalogue is
the same file at every size (same seed), so its MiniLM vectors are computed once and
copied into each later dataset (``reuse_vectors``); every run's content stage is a read.
Each size runs ``fusionrank run`` in a fresh subprocess with one config of sensible
sources (pop, itemknn, EASE on the 10,000 most popular items, BPR and LightGCN with a
fixed budget of one epoch, MiniLM text content) and the LightGBM ranker, and records wall time
per stage (``timings.json``), the peak RSS of the whole process (VmHWM, read from the
kernel's rusage of the child), and test NDCG@10 of each model and the ranker beside the
planted oracle (``synth.json``).

Also measured, in the same run: EASE's ``top_items`` variant against exact EASE on
ml-100k (the approximation the large sizes use).

    .venv/bin/python benchmarks/scale.py --sizes 1m 5m 20m   # -> benchmarks/results/scale.*
    .venv/bin/python benchmarks/scale.py --quick               # 100k, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
ITEMS = 27_000
PER_USER = 145
SIZES = {
    "100k": (690, 3_000, 100_000),
    "1m": (6_900, ITEMS, 1_000_000),
    "5m": (34_500, ITEMS, 5_000_000),
    "20m": (138_000, ITEMS, 20_000_000),
}


def run_config(name: str, dataset: str, root: Path, out: Path, interactions: int) -> dict[str, Any]:
    """The one config of every size. LightGCN propagates the whole graph at every step, so
    its fixed budget is one epoch of 16 steps (a batch of interactions / 16): cost linear in
    the log, where a fixed batch size would make it quadratic. Its ``loss_chunk`` (default)
    keeps each step's memory bounded whatever the batch."""
    return {
        "name": name,
        "dataset": dataset,
        "root": str(root),
        "out": str(out),
        "split": {"kind": "ratio", "seed": 2020},
        "modalities": ["text"],
        "models": {
            "pop": {},
            "itemknn": {"k": 100},
            "ease": {"top_items": 10_000},
            "bpr": {"epochs": 1, "batch_size": 8192},
            "lightgcn": {"epochs": 1, "batch_size": interactions // 16},
        },
        "retrieval": {"n": 100},
        "ranker": {
            "n_estimators": 300,
            "learning_rate": 0.1,
            "max_users": 10_000,
            "early_stopping_rounds": 30,
        },
        "evaluation": {"ks": [10]},
        "ablation": False,
    }


def child(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` to completion; wall seconds and that child's own peak RSS in MB (its
    VmHWM, from ``wait4``'s rusage of exactly this process)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}); see {log}")
    return wall, usage.ru_maxrss / 1024


def _catalogue_key(dataset: Path) -> str:
    from fusionrank.io import sha256_file

    return sha256_file(dataset / "items.parquet")[:16]


def reuse_vectors(dataset: Path, cache: Path) -> bool:
    """Every size has the same 27k-item catalogue (same seed): embed it once. When the
    catalogue file is byte-identical to one embedded before, its vectors folder is copied
    into the dataset, so each run's content stage costs the same (a read)."""
    source = cache / _catalogue_key(dataset)
    if not source.exists():
        return False
    shutil.copytree(source, dataset / "vectors", dirs_exist_ok=True)
    return True


def keep_vectors(dataset: Path, cache: Path) -> None:
    target = cache / _catalogue_key(dataset)
    if not target.exists() and (dataset / "vectors").exists():
        shutil.copytree(dataset / "vectors", target)


def measure(size: str, work: Path) -> dict[str, Any]:
    users, items, interactions = SIZES[size]
    root = work / "data"
    name = f"synth-{size}"
    env = {**os.environ, "FUSIONRANK_DATA": str(root), "TOKENIZERS_PARALLELISM": "false"}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    synth_cmd = [
        str(BIN / "fusionrank"),
        "data",
        "synth",
        "--name",
        name,
        "--users",
        str(users),
        "--items",
        str(items),
        "--interactions",
        str(interactions),
        "--root",
        str(root),
    ]
    synth_s, _ = child(synth_cmd, env, logs / f"{name}-synth.log")
    reused = reuse_vectors(root / name, work / "vectors-cache")
    config = run_config(name, name, root, work / "runs", interactions)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"{size}: synth {synth_s:.0f} s; running ...", flush=True)
    wall, peak_mb = child([str(BIN / "fusionrank"), "run", str(path)], env, logs / f"{name}-run.log")
    folder = work / "runs" / name
    keep_vectors(root / name, work / "vectors-cache")
    metrics = json.loads((folder / "metrics.json").read_text())
    timings = json.loads((folder / "timings.json").read_text())
    synth = json.loads((root / name / "synth.json").read_text())
    ndcg = {m: r["metrics"]["ndcg@10"] for m, r in metrics["models"].items()}
    best_source = max((v, m) for m, v in ndcg.items() if m != "ltr")
    row = {
        "size": size,
        "users": users,
        "items": items,
        "interactions": interactions,
        "synth_s": synth_s,
        "text_vectors_reused": reused,
        "run_s": wall,
        "stages_s": timings["stages_s"],
        "model_fit_s": {m: t.get("fit_s") for m, t in timings["models"].items()},
        "peak_rss_mb": peak_mb,
        "peak_rss_after_stage_mb": timings.get("peak_rss_mb", {}),
        "ndcg@10": ndcg,
        "oracle_ndcg@10": synth["oracle"]["metrics"]["ndcg@10"],
        "best_source": best_source[1],
        "ranker_vs_best_source": ndcg["ltr"] / best_source[0],
        "candidate_recall_test": metrics["candidate_recall"]["test"]["union"],
    }
    print(f"{size}: run {wall:.0f} s, peak RSS {peak_mb:.0f} MB, ltr {ndcg['ltr']:.4f}", flush=True)
    return row


def ease_variant() -> dict[str, Any]:
    """Exact EASE against EASE on the most popular items, ml-100k, same split."""
    import fusionrank as fr

    data = fr.load_dataset("ml-100k")
    split = fr.split(data, "ratio", seed=2020)
    out: dict[str, Any] = {"dataset": "ml-100k", "items": split.n_items, "rows": []}
    for top in (None, 1200, 800):
        t0 = time.perf_counter()
        model = fr.build_model("ease", top_items=top).fit(split)
        fit_s = time.perf_counter() - t0
        ndcg = fr.evaluate(model, split, (10,)).metrics["ndcg@10"]
        out["rows"].append(
            {"top_items": top or split.n_items, "exact": top is None, "ndcg@10": ndcg, "fit_s": fit_s}
        )
    exact = out["rows"][0]["ndcg@10"]
    for row in out["rows"]:
        row["vs_exact"] = row["ndcg@10"] / exact
    return out


def markdown(result: dict[str, Any]) -> str:
    rows = result["sizes"]
    lines = [
        "# Scale: synthetic logs with MovieLens-20M's shape",
        "",
        f"`{result['command']}` on {result['machine']}; each size is `fusionrank data synth` then "
        "`fusionrank run` in a fresh process. Catalogue 27,000 items at every size; users grow "
        "with the log (145 interactions each on average). Peak RSS is the run process's VmHWM. "
        "The catalogue is the same file at every size, so its MiniLM text vectors are computed "
        "once (in the first size's `split and content` stage) and reused by the others.",
        "",
        "| size | users | interactions | run s | split and content s | models s | features s | ranker s "
        "| peak RSS MB "
        "| best source NDCG@10 | ranker NDCG@10 | ranker ÷ best | oracle NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = r["stages_s"]
        lines.append(
            f"| {r['size']} | {r['users']:,} | {r['interactions']:,} | {r['run_s']:.0f} "
            f"| {st['split and content']:.0f} | {st['models']:.0f} "
            f"| {st['features']:.0f} | {st['ranker']:.0f} | {r['peak_rss_mb']:.0f} "
            f"| {r['ndcg@10'][r['best_source']]:.4f} ({r['best_source']}) | {r['ndcg@10']['ltr']:.4f} "
            f"| {r['ranker_vs_best_source']:.3f} | {r['oracle_ndcg@10']:.4f} |"
        )
    if result.get("ratios"):
        lines += ["", "Growth between consecutive sizes:", ""]
        for k, v in result["ratios"].items():
            lines.append(
                f"- {k}: time ×{v['time']:.2f}, peak RSS ×{v['rss']:.2f} for ×{v['data']:.1f} the data"
            )
    staged = [r for r in rows if r.get("peak_rss_after_stage_mb")]
    if staged:
        stages = list(staged[0]["peak_rss_after_stage_mb"])
        lines += [
            "",
            "Peak RSS (MB) of the run process so far at the end of each stage (where it jumps is "
            "the stage that holds the most):",
            "",
            "| size | " + " | ".join(stages) + " |",
            "|---|" + "---|" * len(stages),
        ]
        for r in staged:
            peaks = r["peak_rss_after_stage_mb"]
            lines.append(f"| {r['size']} | " + " | ".join(f"{peaks.get(s, 0):.0f}" for s in stages) + " |")
    big = result.get("ratios", {}).get("5m -> 20m")
    if big:
        last = rows[-1]
        met = {True: "met", False: "missed"}
        lines += [
            "",
            "Targets (5M -> 20M on this machine):",
            "",
            f"- time ×{big['time']:.2f} (≤ 5: {met[big['time'] <= 5]})",
            f"- peak RSS ×{big['rss']:.2f} (≤ 2.5: {met[big['rss'] <= 2.5]}); "
            f"{last['peak_rss_mb'] / 1024:.1f} GiB at 20M (< 16 GiB: {met[last['peak_rss_mb'] < 16 * 1024]})",
            "- ranker ≥ best source at every size: "
            + met[all(r["ranker_vs_best_source"] >= 1 for r in rows)],
        ]
    ev = result.get("ease_variant")
    if ev:
        lines += [
            "",
            f"EASE on the most popular items against exact EASE ({ev['dataset']}, {ev['items']} items):",
            "",
        ]
        lines += ["| items kept | NDCG@10 | ÷ exact | fit s |", "|---|---|---|---|"]
        for r in ev["rows"]:
            lines.append(
                f"| {r['top_items']:,} | {r['ndcg@10']:.4f} | {r['vs_exact']:.3f} | {r['fit_s']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    x = [r["interactions"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].loglog(x, [r["run_s"] for r in rows], "o-", label="whole run")
    for stage in ("models", "features", "ranker"):
        axes[0].loglog(x, [r["stages_s"][stage] for r in rows], ".--", label=stage)
    axes[0].loglog(x, [rows[0]["run_s"] * xi / x[0] for xi in x], ":", color="grey", label="linear")
    axes[0].set(xlabel="interactions", ylabel="seconds", title="wall time")
    axes[0].legend(fontsize=7)
    axes[1].loglog(x, [r["peak_rss_mb"] / 1024 for r in rows], "o-")
    axes[1].set(xlabel="interactions", ylabel="GiB", title="peak RSS")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1m", "5m", "20m"], choices=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="100k only, one epoch, into a temp folder")
    parser.add_argument(
        "--work", type=Path, default=None, help="where data and runs go (default: a temp folder)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="where scale.{json,md,png} go (default: benchmarks/results; with --quick a temp folder)",
    )
    args = parser.parse_args()
    sizes = ["100k"] if args.quick else args.sizes
    work = args.work or Path(tempfile.mkdtemp(prefix="fusionrank-scale-"))
    target = args.results or (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    target.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "sizes": [],
        "ratios": {},
        "ease_variant": None if args.quick else ease_variant(),
    }
    for size in sizes:  # results are rewritten after each size: a long run keeps what it measured
        result["sizes"].append(measure(size, work))
        rows = result["sizes"]
        result["ratios"] = {
            f"{a['size']} -> {b['size']}": {
                "data": b["interactions"] / a["interactions"],
                "time": b["run_s"] / a["run_s"],
                "rss": b["peak_rss_mb"] / a["peak_rss_mb"],
            }
            for a, b in zip(rows, rows[1:])
        }
        (target / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
        (target / "scale.md").write_text(markdown(result))
        plot(result, target / "scale.png")
    print(markdown(result))
    print(f"written to {target}")


if __name__ == "__main__":
    main()
