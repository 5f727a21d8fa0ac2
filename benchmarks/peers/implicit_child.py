"""Runs inside RecTools' virtual environment (``make rectools-venv``, which holds pm-implicit, the
``implicit`` library's maintained build); never imported by fusionrank.

Reads one job as JSON on stdin: ``{"work": folder, "runs": [{"name", "factors",
"regularization", "alpha", "iterations", "use_cg"}], "seed": int}``. The folder holds
``train/valid/test.parquet`` (user_id, item_id, ...) written by the parent. For each run,
``implicit.cpu.als.AlternatingLeastSquares`` is fitted on train (binary, confidence
``1 + alpha``) and recommends 10 items to every test user with train + valid filtered, written
to ``lists/<name>.parquet`` (user_id, item_id, rank). Prints ``RESULT {json}``: fit seconds per
run and the library's version.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import implicit
import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

K = 10


def main() -> None:
    job = json.loads(sys.stdin.read())
    work = Path(job["work"])
    parts = {p: pd.read_parquet(work / f"{p}.parquet") for p in ("train", "valid", "test")}
    users = pd.Index(sorted(set().union(*(set(f["user_id"]) for f in parts.values()))))
    items = pd.Index(sorted(set().union(*(set(f["item_id"]) for f in parts.values()))))

    def matrix(*names: str) -> sp.csr_matrix:
        frame = pd.concat([parts[n] for n in names])
        rows, cols = users.get_indexer(frame["user_id"]), items.get_indexer(frame["item_id"])
        m = sp.csr_matrix((np.ones(len(frame), np.float32), (rows, cols)), shape=(len(users), len(items)))
        m.data[:] = 1.0
        return m

    train, seen = matrix("train"), matrix("train", "valid")
    test_users = users.get_indexer(pd.unique(parts["test"]["user_id"]))
    (work / "lists").mkdir(exist_ok=True)
    fit_s = {}
    for run in job["runs"]:
        model = AlternatingLeastSquares(
            factors=run["factors"],
            regularization=run["regularization"],
            alpha=run["alpha"],
            iterations=run["iterations"],
            use_cg=run["use_cg"],
            random_state=job["seed"],
            num_threads=1,
        )
        t0 = time.perf_counter()
        model.fit(train, show_progress=False)
        fit_s[run["name"]] = time.perf_counter() - t0
        ids, _ = model.recommend(test_users, seen[test_users], N=K, filter_already_liked_items=True)
        pd.DataFrame(
            {
                "user_id": np.repeat(users[test_users].to_numpy(), K),
                "item_id": items[ids.ravel()].to_numpy(),
                "rank": np.tile(np.arange(1, K + 1), len(test_users)),
            }
        ).to_parquet(work / "lists" / f"{run['name']}.parquet", index=False)
    print("RESULT " + json.dumps({"fit_s": fit_s, "implicit": implicit.__version__}))


if __name__ == "__main__":
    main()
