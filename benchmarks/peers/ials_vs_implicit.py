"""iALS: ours (``fusionrank.collab.ials``) against the ``implicit`` library's
``AlternatingLeastSquares`` (pm-implicit 0.7.3, the build RecTools' ``ImplicitALSWrapperModel``
wraps), ml-100k, per-user random 8:1:1, seeds 2020 and 7, one run.

implicit runs in RecTools' own virtual environment (``make rectools-venv``) on our split's rows
and writes its top-10 lists; both libraries' lists are scored by our metric code (the
RecTools benchmark's ``score_lists``), train + valid excluded, full ranking. Rows:

- both at our defaults (64 factors, alpha 30, regularization 100, 15 iterations; chosen on
  ml-100k's valid split), each with its exact solver (``use_cg=False``; ours ``solver: exact``)
  and its conjugate-gradient one (3 steps; ``use_cg=True``, implicit's default, and ours);
- implicit at its own defaults (100 factors, alpha 1, regularization 0.01, 15 iterations).

Fit times are one thread each (``num_threads=1`` and ``OMP/OPENBLAS`` at 1 for implicit; ours
on numpy with the same thread limits).

    make rectools-venv && .venv/bin/python benchmarks/peers/ials_vs_implicit.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rectools_ml100k import VENV_PYTHON, score_lists, write_parts  # noqa: E402
from venv_child import run_in_venv  # noqa: E402

from fusionrank.columns import TEST, TRAIN, VALID  # noqa: E402
from fusionrank.data.dataset import default_root, load_dataset  # noqa: E402
from fusionrank.data.splits import SplitConfig, prepare_split  # noqa: E402
from fusionrank.evaluation.table import format_table  # noqa: E402
from fusionrank.io import write_json  # noqa: E402
from fusionrank.scoring import top_k  # noqa: E402

RESULTS = HERE.parent / "results"
OURS = {"factors": 64, "alpha": 30.0, "reg": 100.0, "iterations": 15}
SOLVERS = ("cg", "exact")
SAME = {"factors": OURS["factors"], "regularization": OURS["reg"], "alpha": OURS["alpha"],
        "iterations": OURS["iterations"]}  # fmt: skip
RUNS = [
    {"name": "implicit, our settings, exact", **SAME, "use_cg": False},
    {"name": "implicit, our settings, CG", **SAME, "use_cg": True},
    {"name": "implicit, its defaults", "factors": 100, "regularization": 0.01, "alpha": 1.0,
     "iterations": 15, "use_cg": True},
]  # fmt: skip


def run_seed(seed: int, root: Path, work: Path) -> list[dict[str, Any]]:
    import fusionrank as fr

    split = prepare_split(load_dataset("ml-100k", root), SplitConfig(kind="ratio", seed=seed))
    write_parts(split, work)
    test_users = np.flatnonzero(np.diff(split.matrix(TEST).tocsr().indptr) > 0)
    rows = []
    for solver in SOLVERS:
        t0 = time.perf_counter()
        ours = fr.build_model("ials", seed=seed, solver=solver, **OURS).fit(split)
        ours_s = time.perf_counter() - t0
        idx, _ = top_k(ours.score, test_users, 10, exclude=split.matrix(TRAIN, VALID))
        lists = pd.DataFrame(
            {
                "user_id": np.repeat(np.asarray(split.users.ids)[test_users], 10),
                "item_id": np.asarray(split.items.ids)[idx.ravel()],
                "rank": np.tile(np.arange(1, 11), len(test_users)),
            }
        )
        rows.append({"seed": seed, "model": f"fusionrank ials, {solver}",
                     **score_lists(lists, split, TEST, (TRAIN, VALID)), "fit_s": ours_s})  # fmt: skip
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    result = run_in_venv(
        VENV_PYTHON, HERE / "implicit_child.py", {"work": str(work), "runs": RUNS, "seed": seed},
        env=threads, cwd=work, timeout=3600, what="implicit ALS",
    )  # fmt: skip
    for run in RUNS:
        peer = pd.read_parquet(work / "lists" / f"{run['name']}.parquet")
        rows.append({"seed": seed, "model": run["name"], **score_lists(peer, split, TEST, (TRAIN, VALID)),
                     "fit_s": result["fit_s"][run["name"]]})  # fmt: skip
    for row in rows:
        row["implicit"] = result["implicit"]
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    shown = [{k: r[k] for k in ("seed", "model", "ndcg@10", "recall@10", "mrr@10", "fit_s")} for r in rows]

    def by(model: str) -> dict[int, float]:
        return {r["seed"]: r["ndcg@10"] for r in rows if r["model"] == model}

    pairs = [("exact", "fusionrank ials, exact", "implicit, our settings, exact"),
             ("CG", "fusionrank ials, cg", "implicit, our settings, CG")]  # fmt: skip
    ratio = "; ".join(
        f"{name}: " + ", ".join(f"seed {s}: {by(ours)[s] / by(peer)[s]:.3f}" for s in sorted(by(ours)))
        for name, ours, peer in pairs
    )
    return "\n".join(
        [
            "# iALS against the implicit library (ml-100k)",
            "",
            f"`{command}` on {platform.machine()}, implicit {rows[0]['implicit']} (pm-implicit, in RecTools' "
            "venv), per-user random 8:1:1, test NDCG/Recall/MRR@10 by full ranking with train + valid "
            "excluded, every list scored by fusionrank's metric code. One thread each.",
            "",
            format_table(shown, list(shown[0]), markdown=True),
            "",
            f"Ours ÷ implicit at the same settings and solver, NDCG@10: {ratio}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "ials_vs_implicit")
    args = parser.parse_args()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, "1")
    if not VENV_PYTHON.exists():
        raise SystemExit(f"implicit's venv missing at {VENV_PYTHON}; run `make rectools-venv`")
    root = args.root or default_root()
    rows: list[dict[str, Any]] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            rows += run_seed(seed, root, Path(tmp))
        print(format_table(rows[-5:], ["seed", "model", "ndcg@10", "fit_s"]), flush=True)
    command = f"python benchmarks/peers/ials_vs_implicit.py --seeds {args.seeds}"
    write_json(args.out.with_suffix(".json"), {"command": command, "rows": rows})
    args.out.with_suffix(".md").write_text(markdown(rows, command))


if __name__ == "__main__":
    main()
