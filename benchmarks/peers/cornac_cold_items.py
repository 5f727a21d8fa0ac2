"""Cornac's VBPR as the peer hybrid in the cold-items table (same split, same metrics).

VBPR (He & McAuley 2016) scores u, i as b_i + g_u.g_i + t_u.(E f_i) + b'.f_i. We give it
the same training rows (train) and the same MiniLM text vectors our models get, the vectors
as its item "image" features (Cornac's ``ImageModality`` takes any dense feature matrix).
A cold item has no trained b_i or g_i,
so, as in the VBPR paper's cold-start setting, it is scored by its content terms
t_u.(E f_i) + b'.f_i. Rows are merged into ``benchmarks/results/cold_start.json`` (earlier
VBPR rows replaced) and the markdown table is rewritten.

    .venv/bin/pip install cornac==3.0.1     # not a fusionrank dependency
    .venv/bin/python benchmarks/peers/cornac_cold_items.py --seeds 2020,7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fusionrank.columns import ITEM_ID, TEST, TRAIN, USER_ID, VALID
from fusionrank.data.dataset import default_root, load_dataset
from fusionrank.data.splits import SplitConfig, prepare_split
from fusionrank.evaluation.ranking import evaluate_ranking
from fusionrank.fusion.content import load_content
from fusionrank.io import read_json
from fusionrank.pipelines.stages.embed import embed_content
from fusionrank.resources import peak_rss_mb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cold_start import RESULTS, _row, write_results  # noqa: E402


def run_vbpr(seed: int, root: Path, epochs: int, k: int, lr: float) -> dict:
    import cornac
    from cornac.data import ImageModality

    data = load_dataset("ml-100k", root)
    embed_content(data, ["text"])
    split = prepare_split(data, SplitConfig(kind="cold-items", seed=seed))
    content = load_content(split, ("text",))
    known = split.train  # what our models fit on (valid is theirs for early stopping)
    triplets = list(zip(known[USER_ID].astype(str), known[ITEM_ID].astype(str), np.ones(len(known))))
    warm_ids = sorted(set(known[ITEM_ID].astype(str)))
    feats = content.vectors[split.items.to_index(warm_ids)]
    t0 = time.perf_counter()
    train_set = cornac.data.Dataset.build(triplets, fmt="UIR", seed=seed)
    image = ImageModality(features=feats, ids=warm_ids, normalized=False)  # vectors are L2-normalised
    image.build(id_map=train_set.iid_map)  # reorders the rows to Cornac's item index
    train_set.add_modalities(item_image=image)
    check = [train_set.iid_map[i] for i in warm_ids[:50]]
    assert np.allclose(image.features[check], feats[:50]), "feature rows are not aligned with Cornac's items"
    model = cornac.models.VBPR(
        k=k,
        k2=k,
        n_epochs=epochs,
        batch_size=100,
        learning_rate=lr,
        lambda_w=0.01,
        lambda_b=0.01,
        seed=seed,
        verbose=False,
    )
    model.fit(train_set)
    fit_s = time.perf_counter() - t0
    # every item in split order: warm items with all terms, cold items with their content terms
    users = np.array([train_set.uid_map.get(u, -1) for u in split.users.ids])
    item_col = np.array([train_set.iid_map.get(i, -1) for i in split.items.ids])
    warm = item_col >= 0
    theta_item = content.vectors @ model.emb_matrix  # (n_items, k2)
    bias = (content.vectors @ model.beta_prime).ravel()
    gamma_item = np.zeros((split.n_items, k), np.float32)
    gamma_item[warm] = model.gamma_item[item_col[warm]]
    beta_item = np.zeros(split.n_items, np.float32)
    beta_item[warm] = model.beta_item[item_col[warm]]

    def score(rows: np.ndarray) -> np.ndarray:
        u = users[rows]
        out = np.zeros((len(rows), split.n_items), np.float32)
        ok = u >= 0
        out[ok] = (
            beta_item + bias + model.gamma_user[u[ok]] @ gamma_item.T + model.theta_user[u[ok]] @ theta_item.T
        )
        return out

    truth = split.matrix(TEST)
    cold = np.zeros(split.n_items, dtype=bool)
    cold[split.items.to_index(split.meta["cold_items"])] = True
    a = evaluate_ranking(score, truth, None, None, item_mask=cold)
    b = evaluate_ranking(score, truth, split.matrix(TRAIN, VALID), None, share_items=cold, share_name="cold")
    return {
        "split": "cold-items",
        "seed": seed,
        "model": f"Cornac VBPR (k={k}, {epochs} epochs)",
        "modalities": ["text"],
        "metrics": a.metrics,
        "all_items": b.metrics,
        "n_users": a.n_users,
        "timings": {"fit_s": fit_s},
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.005)
    args = parser.parse_args()
    rows = [r for r in read_json(RESULTS / "cold_start.json")["rows"] if not r["model"].startswith("Cornac")]
    for seed in (int(s) for s in args.seeds.split(",")):
        row = _row(run_vbpr(seed, args.root, args.epochs, args.k, args.lr))
        print(row, flush=True)
        rows.append(row)
    order = {"cold-items": 0, "cold-users": 1, "cross-domain": 2}
    rows.sort(key=lambda r: (order[r["protocol"]], r["seed"] != 2020, r["seed"]))
    write_results(rows, args.seeds)


if __name__ == "__main__":
    main()
