"""Cold-start protocols on ml-100k, every model side by side in one run.

Every row is ``fr.evaluate(fr.build_model(name).fit(split), split)`` on the protocol's split:
models are fitted on train (valid for early stopping) and evaluated on test.

- cold-items: 20% of items held out; (a) rank only cold items for users who had them,
  (b) rank all items. Content: MiniLM text ("title year genres"), TransE KG, text + KG,
  and text + the catalogue's genres as a 0/1 block (``genres``).
- cold-users: 10% of users held out, served from age bucket, gender, occupation.
- cross-domain: 20% of the users active in both domains lose their target-domain (B:
  Action/Adventure/Sci-Fi/Thriller) interactions; served from domain A history.

    .venv/bin/python benchmarks/cold_start.py --seeds 2020,7
    # only some cold-items models, the other committed rows kept as they are:
    .venv/bin/python benchmarks/cold_start.py --models marec-content,aldi-content --keep
    # another stored dataset (a synthetic one: fusionrank data synth), cold items only:
    .venv/bin/python benchmarks/cold_start.py --dataset synth-200k --root DATA \
        --skip cold-users,cross-domain --models random,genre-pop,ease-content,kernel-content
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fusionrank as fr
from fusionrank.data.dataset import default_root
from fusionrank.data.profile import GENRES
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
MODALITIES = (("text",), ("kg",), ("text", "kg"))
WITH_GENRES = ("text", GENRES)
"""The text beside the catalogue's genres (a 0/1 block read from the catalogue, weighed as
the text is): what the new-items model of ``fusionrank recommend`` and ``serve`` reads."""
CONTENT_MODELS: dict[str, tuple[tuple[str, ...], ...]] = {
    "content-knn": (*MODALITIES, WITH_GENRES),
    "ease-content": (*MODALITIES, WITH_GENRES),
    "kernel-content": (*MODALITIES, WITH_GENRES),
    "marec-content": (("text",), ("text", "kg"), WITH_GENRES),
    "aldi-content": (("text",), ("text", "kg")),
    "hybrid": MODALITIES,
}
"""The cold-items content models and the content each is run with (the KG links of
ml-100k carry no item information, see the notes: the newer models skip KG alone)."""
REFERENCES = ("random", "genre-pop")


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
    parser.add_argument(
        "--dataset",
        default="ml-100k",
        help="a stored dataset; other than ml-100k the results go to cold_start_<dataset>.{json,md}",
    )
    parser.add_argument("--seeds", default="2020,7")
    parser.add_argument("--skip", default="", help="protocols to skip: cold-items,cold-users,cross-domain")
    parser.add_argument(
        "--models",
        default="",
        help="run only these cold-items models (comma-separated; the other protocols are skipped)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the committed rows that were not rerun (skipped protocols, other models)",
    )
    args = parser.parse_args()
    only = set(args.models.split(",")) - {""}
    unknown = only - {*REFERENCES, *CONTENT_MODELS}
    if unknown:
        parser.error(f"--models: not a cold-items model of this benchmark: {sorted(unknown)}")
    ds = fr.load_dataset(args.dataset, args.root)
    content = {"text", "kg"} if ds.kg is not None else {"text"}  # what the dataset can make
    fr.embed_content(ds, content)  # the content models read them
    rows: list[dict] = []
    skip = set(args.skip.split(",")) - {""}
    if only:
        skip |= {"cold-users", "cross-domain"}
    quiet = {"progress": False}
    for seed in (int(s) for s in args.seeds.split(",")):
        if "cold-items" not in skip:
            for model in REFERENCES:
                if not only or model in only:
                    rows.append(_row(evaluate(ds, "cold-items", seed, model)))
            for model, modality_sets in CONTENT_MODELS.items():
                if only and model not in only:
                    continue
                extra = quiet if "progress" in fr.list_models()[model].__dataclass_fields__ else {}
                for mods in (m for m in modality_sets if set(m) - {GENRES} <= content):
                    rows.append(_row(evaluate(ds, "cold-items", seed, model, modalities=mods, **extra)))
        if "cold-users" not in skip:
            for model, settings in (("pop", {}), ("demographic-pop", {}), ("profile", quiet)):
                rows.append(_row(evaluate(ds, "cold-users", seed, model, **settings)))
        if "cross-domain" not in skip:
            for model, settings in (("pop", {}), ("emcdr", quiet), ("cross-domain", quiet)):
                rows.append(_row(evaluate(ds, "cross-domain", seed, model, **settings)))
        print(format_table([r for r in rows if r["seed"] == seed], list(rows[0])), flush=True)
    merged = False
    stem = "cold_start" if args.dataset == "ml-100k" else f"cold_start_{args.dataset}"
    if args.keep and (RESULTS / f"{stem}.json").exists():
        from fusionrank.io import read_json

        new = {_key(r) for r in rows}
        committed = read_json(RESULTS / f"{stem}.json")["rows"]
        kept = [r for r in committed if r["protocol"] in skip or (only and _key(r) not in new)]
        merged = bool(only)
        rows = sorted(kept + rows, key=_order([r["seed"] for r in committed + rows]))
    write_results(
        rows,
        args.seeds,
        merged_models=sorted(only) if merged else None,
        dataset=args.dataset,
        command=" ".join(sys.argv[1:]),
    )


def _key(row: dict) -> tuple:
    return row["protocol"], row["seed"], row["model"], row["content"]


def _order(seeds: list[int]):
    """Sort key of a row: protocol, seed (first seen first), the model's place in this
    script (peer rows of other scripts last), content."""
    protocols = ("cold-items", "cold-users", "cross-domain")
    seed_rank = {s: n for n, s in enumerate(dict.fromkeys(seeds))}
    models = [*REFERENCES, *CONTENT_MODELS, "pop", "demographic-pop", "profile", "emcdr", "cross-domain"]
    contents = ["-", *("+".join(m) for m in (*MODALITIES, WITH_GENRES))]

    def key(row: dict) -> tuple:
        model = models.index(row["model"]) if row["model"] in models else len(models)
        content = contents.index(row["content"]) if row["content"] in contents else len(contents)
        return protocols.index(row["protocol"]), seed_rank[row["seed"]], model, content

    return key


NOTES = "## Against the targets"


def write_results(
    rows: list[dict],
    seeds: str,
    merged_models: list[str] | None = None,
    dataset: str = "ml-100k",
    command: str = "",
) -> None:
    """``cold_start.json`` (``cold_start_<dataset>.json`` for another dataset) and the
    markdown tables; the hand-written notes section of the existing markdown (from
    ``## Against the targets`` on) is kept. ``merged_models``: the models of a ``--models``
    run, whose rows were merged into the committed ones."""
    stem = "cold_start" if dataset == "ml-100k" else f"cold_start_{dataset}"
    path = RESULTS / f"{stem}.md"
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    write_json(RESULTS / f"{stem}.json", {"dataset": dataset, "rows": rows})
    if dataset != "ml-100k":  # the command as given; no peer rows
        header = f"`.venv/bin/python benchmarks/cold_start.py {command}`"
        md = [f"# Cold start on {dataset} (CPU)", "", header, ""]
    else:
        md = [
            "# Cold start on ml-100k (CPU)",
            "",
            "`.venv/bin/python benchmarks/cold_start.py --seeds "
            + seeds
            + "` — all fusionrank rows from one run"
            + (
                f" except {', '.join(f'`{m}`' for m in merged_models)}, run later with `--models "
                f"{','.join(merged_models)} --keep` and merged in (every other row is the committed "
                "one, as it was)"
                if merged_models
                else ""
            )
            + "; the Cornac VBPR peer rows from `benchmarks/peers/cornac_cold_items.py` on the same splits. "
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
