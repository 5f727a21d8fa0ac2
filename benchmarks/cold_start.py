"""Cold-start protocols on ml-100k, every model side by side in one run.

Every row is ``fr.evaluate(fr.build_model(name).fit(split), split)`` on the protocol's split:
models are fitted on train (valid for early stopping) and evaluated on test.

- cold-items: 20% of items held out; (a) rank only cold items for users who had them,
  (b) rank all items. Content: MiniLM text ("title year genres"), TransE KG, text + KG.
- cold-users: 10% of users held out, served from age bucket, gender, occupation.
- cross-domain: 20% of the users active in both domains lose their target-domain (B:
  Action/Adventure/Sci-Fi/Thriller) interactions; served from domain A history.

    .venv/bin/python benchmarks/cold_start.py --seeds 2020,7
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fusionrank as fr
from fusionrank.data.dataset import default_root
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
CONTENT_MODELS = ("content-knn", "ease-content", "kernel-content", "hybrid")
MODALITIES = (("text",), ("kg",), ("text", "kg"))


def evaluate(ds: fr.Dataset, kind: str, seed: int, model: str, **settings) -> dict:
    """Fit one model on the protocol's split and evaluate it: one row of the table."""
    split = fr.split(ds, kind, seed=seed)
    if "seed" in {f for f in fr.list_models()[model].__dataclass_fields__}:
        settings.setdefault("seed", seed)
    result = fr.evaluate(fr.build_model(model, **settings).fit(split), split, ks=(10,))
    return result.to_dict() | {"modalities": list(settings.get("modalities", ()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--skip", default="", help="protocols to skip: cold-items,cold-users,cross-domain")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the committed rows of skipped protocols (rerun only the others)",
    )
    args = parser.parse_args()
    ds = fr.load_dataset("ml-100k", args.root)
    fr.embed_content(ds, {m for mods in MODALITIES for m in mods})  # the content models read them
    rows: list[dict] = []
    skip = set(args.skip.split(",")) - {""}
    quiet = {"progress": False}
    for seed in (int(s) for s in args.seeds.split(",")):
        if "cold-items" not in skip:
            for model in ("random", "genre-pop"):
                rows.append(_row(evaluate(ds, "cold-items", seed, model)))
            for model in CONTENT_MODELS:
                extra = quiet if model == "hybrid" else {}
                for mods in MODALITIES:
                    rows.append(_row(evaluate(ds, "cold-items", seed, model, modalities=mods, **extra)))
        if "cold-users" not in skip:
            for model, settings in (("pop", {}), ("demographic-pop", {}), ("profile", quiet)):
                rows.append(_row(evaluate(ds, "cold-users", seed, model, **settings)))
        if "cross-domain" not in skip:
            for model, settings in (("pop", {}), ("emcdr", quiet), ("cross-domain", quiet)):
                rows.append(_row(evaluate(ds, "cross-domain", seed, model, **settings)))
        print(format_table([r for r in rows if r["seed"] == seed], list(rows[0])), flush=True)
    if args.keep and (RESULTS / "cold_start.json").exists():
        from fusionrank.io import read_json

        kept = [r for r in read_json(RESULTS / "cold_start.json")["rows"] if r["protocol"] in skip]
        rows = kept + rows
    write_results(rows, args.seeds)


NOTES = "## Against the targets"


def write_results(rows: list[dict], seeds: str) -> None:
    """``cold_start.json`` and the markdown tables; the hand-written notes section of the
    existing markdown (from ``## Against the targets`` on) is kept."""
    path = RESULTS / "cold_start.md"
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    write_json(RESULTS / "cold_start.json", {"rows": rows})
    md = [
        "# Cold start on ml-100k (CPU)",
        "",
        "`.venv/bin/python benchmarks/cold_start.py --seeds "
        + seeds
        + "` — all fusionrank rows from one run; "
        "the Cornac VBPR peer rows from `benchmarks/peers/cornac_cold_items.py` on the same splits. "
        "cold-items: NDCG/Recall@10 of protocol (a), cold items only, and (b), all items, "
        "with the share of (b)'s top-10 slots that go to cold items (their share of the test "
        "truth is 1: the test holds the cold items' interactions). "
        "cold-users and cross-domain: NDCG/Recall@10 of the held-out users.",
        "",
    ]
    for protocol in ("cold-items", "cold-users", "cross-domain"):
        part = [r for r in rows if r["protocol"] == protocol]
        if part:
            md += [f"## {protocol}", "", format_table(part, list(part[0]), markdown=True), ""]
    path.write_text("\n".join(md) + ("\n" + notes if notes else ""))


def _row(res: dict) -> dict:
    row = {
        "protocol": res["split"],
        "seed": res["seed"],
        "model": res["model"],
        "content": "+".join(res.get("modalities", [])) or "-",
        "ndcg@10": res["metrics"]["ndcg@10"],
        "recall@10": res["metrics"]["recall@10"],
    }
    if "all_items" in res:
        row["(b) ndcg@10"] = res["all_items"]["ndcg@10"]
        row["(b) recall@10"] = res["all_items"]["recall@10"]
        row["(b) cold share@10"] = res["all_items"].get("cold_share@10", "-")
    else:
        row["(b) ndcg@10"] = row["(b) recall@10"] = row["(b) cold share@10"] = "-"
    row["users"] = res.get("n_users", "-")
    row["fit_s"] = res["timings"]["fit_s"]
    print(row, flush=True)
    return row


if __name__ == "__main__":
    main()
