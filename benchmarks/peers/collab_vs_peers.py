"""BPR, NeuMF, LightGCN and SASRec: ours against RecBole 1.2.1 (and Cornac's BPR), one run.

Protocols: per-user random 8:1:1 full ranking (seed 2020) for BPR, NeuMF and LightGCN, on
identical rows (our split written as RecBole benchmark files); leave-one-out by time for
SASRec (RecBole's own LS/TO split; ours is the same rule). Early stopping on validation
NDCG@10 with patience 10 on both sides; LightGCN capped at 100 epochs on both sides;
SASRec on a fixed budget of --sasrec-epochs epochs on both sides (no early stopping).
Cornac's BPR (k=64, learning_rate=0.01, lambda_reg=0.01) has its iteration count chosen
on validation NDCG@10 and is scored by our evaluator.

    make recbole-venv && .venv/bin/pip install cornac==3.0.1
    .venv/bin/python benchmarks/peers/collab_vs_peers.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from recbole_runner import base_config, run_job, write_benchmark_files  # noqa: E402

from fusionrank.data.dataset import default_root, load_dataset  # noqa: E402
from fusionrank.data.splits import SplitConfig, prepare_split  # noqa: E402
from fusionrank.evaluation.table import format_table  # noqa: E402
from fusionrank.io import write_json  # noqa: E402
from fusionrank.resources import peak_rss_mb  # noqa: E402

RESULTS = HERE.parent / "results"
METRICS = ("ndcg@10", "recall@10", "mrr@10")
RECBOLE_NAMES = {"bpr": "BPR", "neumf": "NeuMF", "lightgcn": "LightGCN", "sasrec": "SASRec"}


def ours_worker(model: str, split_kind: str, seed: int, root: str, train: dict) -> dict:
    import fusionrank as fr

    split = prepare_split(load_dataset("ml-100k", root), SplitConfig(kind=split_kind, seed=seed))
    rec = fr.build_model(model, progress=False, seed=seed, **train).fit(split)
    res = fr.evaluate(rec, split).to_dict()
    h = rec.history or {}
    res["epochs"], res["best_epoch"] = h.get("epochs"), h.get("best_epoch")
    res["timings"] |= {"time_to_best_s": h.get("time_to_best_s"), "total_s": h.get("total_s")}
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def _in_child(job: dict) -> dict:
    """Run a job in a fresh process so that its time and peak memory are its own."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"job {job} failed:\n{done.stderr[-3000:]}")


def run_ours(model: str, split_kind: str, seed: int, root: Path, train: dict) -> dict:
    return _in_child(
        {"model": model, "split_kind": split_kind, "seed": seed, "root": str(root), "train": train}
    )


def run_cornac(root: Path, seed: int, iterations: tuple[int, ...]) -> dict:
    """Cornac BPR on our split; the iteration count with the best validation NDCG@10."""
    import numpy as np
    from cornac.data import Dataset as CornacDataset
    from cornac.models import BPR as CornacBPR

    from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

    split = prepare_split(load_dataset("ml-100k", root), SplitConfig(kind="ratio", seed=seed))
    train = split.matrix("train").tocoo()
    data = CornacDataset.from_uir(
        list(zip(train.row.astype(str), train.col.astype(str), np.ones(train.nnz))), seed=seed
    )
    uidx = np.array([data.uid_map.get(str(u), 0) for u in range(split.n_users)])
    iidx = np.array([data.iid_map.get(str(i), -1) for i in range(split.n_items)])
    known = iidx >= 0
    best = None
    tried = []
    for it in iterations:
        model = CornacBPR(k=64, max_iter=it, learning_rate=0.01, lambda_reg=0.01, seed=seed, verbose=False)
        t0 = time.perf_counter()
        model.fit(data)
        fit_s = time.perf_counter() - t0

        def score(users, m=model):
            out = np.full((len(users), split.n_items), -np.inf, np.float32)
            out[:, known] = m.u_factors[uidx[users]] @ m.i_factors[iidx[known]].T + m.i_biases[iidx[known]]
            return out

        valid = evaluate_ranking(score, split.matrix("valid"), split.matrix("train"), EvalConfig(ks=(10,)))
        tried.append({"iterations": it, "valid_ndcg@10": valid.metrics["ndcg@10"], "fit_s": fit_s})
        if best is None or valid.metrics["ndcg@10"] > best[0]:
            test = evaluate_ranking(
                score, split.matrix("test"), split.matrix("train", "valid"), EvalConfig(ks=(10, 20))
            )
            best = (valid.metrics["ndcg@10"], it, fit_s, test.metrics)
    _, it, fit_s, metrics = best
    return {
        "metrics": metrics,
        "epochs": it,
        "timings": {"total_s": fit_s, "time_to_best_s": fit_s},
        "tried": tried,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--sasrec-epochs", type=int, default=5)
    parser.add_argument("--models", default="bpr,neumf,lightgcn,sasrec")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument(
        "--keep", type=Path, help="earlier results JSON whose rows are kept for models not rerun"
    )
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        if job.pop("cornac", False):
            out = run_cornac(Path(job["root"]), job["seed"], tuple(job["iterations"]))
        else:
            out = ours_worker(**job)
        print("RESULT " + json.dumps(out))
        return
    root = args.root.resolve()
    split = prepare_split(load_dataset("ml-100k", root), SplitConfig(kind="ratio", seed=args.seed), root)
    work = HERE.parent / ".work"
    bench = "ml-100k-fusionrank"
    write_benchmark_files(split, work / bench, bench)
    rows = []

    def add(system: str, model: str, res: dict, protocol: str) -> None:
        m = res.get("metrics") or res.get("test")
        rows.append(
            {
                "model": model,
                "system": system,
                "protocol": protocol,
                **{k: m.get(k) for k in METRICS},
                "epochs": res.get("epochs"),
                "time_to_best_s": res["timings"].get("time_to_best_s"),
                "total_s": res["timings"]["total_s"],
                "peak_rss_mb": res.get("peak_rss_mb"),
            }
        )
        print(rows[-1], flush=True)

    for model in args.models.split(","):
        seq = model == "sasrec"
        protocol = f"leave-one-out by time, {args.sasrec_epochs} epochs" if seq else "RO 8:1:1 identical rows"
        epochs = {"lightgcn": 100, "sasrec": args.sasrec_epochs}.get(model, 300)
        if not args.skip_recbole:
            cfg = base_config(args.seed)
            cfg["epochs"] = epochs
            if seq:
                cfg["eval_args"] = {
                    "split": {"LS": "valid_and_test"},
                    "order": "TO",
                    "group_by": "user",
                    "mode": "full",
                }
                cfg["train_neg_sample_args"] = None
                cfg["stopping_step"] = 10_000
                cfg["MAX_ITEM_LIST_LENGTH"] = 50
                res = run_job("SASRec", "ml-100k", root, cfg, timeout=6 * 3600)
            else:
                cfg["benchmark_filename"] = ["train", "valid", "test"]
                cfg["eval_args"] = {"group_by": "user", "order": "RO", "mode": "full"}
                res = run_job(RECBOLE_NAMES[model], bench, work.resolve(), cfg, timeout=3 * 3600)
            add("RecBole 1.2.1", RECBOLE_NAMES[model], res, protocol)
        train = {"epochs": epochs} if model != "sasrec" else {"epochs": epochs, "patience": 0}
        res = run_ours(model, "leave-last" if seq else "ratio", args.seed, root, train)
        add("fusionrank", RECBOLE_NAMES[model], res, protocol)
        if model == "bpr":
            try:
                import cornac  # noqa: F401
            except ImportError:
                print("cornac is not installed; skipping its BPR", file=sys.stderr)
            else:
                res = _in_child(
                    {
                        "cornac": True,
                        "root": str(root),
                        "seed": args.seed,
                        "iterations": [50, 100, 150, 200, 250, 300, 400, 500],
                    }
                )
                add("Cornac 3.0.1", "BPR", res, protocol + f" (iterations chosen on valid: {res['epochs']})")
    if args.keep:
        rerun = {RECBOLE_NAMES[m] for m in args.models.split(",")}
        kept = [
            dict(r, kept_from_earlier_run=True)
            for r in json.loads(args.keep.read_text())["rows"]
            if r["model"] not in rerun
        ]
        rows = sorted(rows + kept, key=lambda r: list(RECBOLE_NAMES.values()).index(r["model"]))
    write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    cols = ["model", "system", "protocol", *METRICS, "epochs", "time_to_best_s", "total_s", "peak_rss_mb"]
    ratios = []
    for model in {r["model"] for r in rows}:
        ours = next((r for r in rows if r["model"] == model and r["system"] == "fusionrank"), None)
        for peer in (r for r in rows if r["model"] == model and r["system"] != "fusionrank"):
            if ours:
                ratios.append(
                    {
                        "model": model,
                        "peer": peer["system"],
                        "ndcg@10 ours/peer": ours["ndcg@10"] / peer["ndcg@10"],
                        "total time ours/peer": ours["total_s"] / peer["total_s"],
                        "time per epoch ours/peer": (ours["total_s"] / ours["epochs"])
                        / (peer["total_s"] / peer["epochs"]),
                    }
                )
    write_json(
        RESULTS / "collab_vs_peers.json",
        {"rows": rows, "ratios": ratios, "seed": args.seed, "sasrec_epochs": args.sasrec_epochs},
    )
    md = [
        "# Collaborative models: fusionrank vs RecBole 1.2.1 and Cornac 3.0.1 (ml-100k, CPU, 2 cores)",
        "",
        "`.venv/bin/python benchmarks/peers/collab_vs_peers.py` — every row in one run on one machine; "
        "test metrics, full ranking over all items; early stopping on validation NDCG@10, patience 10.",
        "",
        format_table(rows, cols, markdown=True),
        "",
        "## Ratios",
        "",
        format_table(ratios, list(ratios[0]) if ratios else [], markdown=True),
        "",
    ]
    (RESULTS / "collab_vs_peers.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
