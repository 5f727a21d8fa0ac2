"""``fusionrank evaluate``: fit baselines on a split and print full-ranking metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.data.errors import DataError
from fusionrank.data.splits import SPLIT_KINDS, SplitConfig
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json
from fusionrank.pipelines.cold_start import (
    COLD_ITEM_MODELS,
    COLD_USER_MODELS,
    CROSS_DOMAIN_MODELS,
    run_cold_items,
    run_cold_users,
    run_cross_domain,
)
from fusionrank.pipelines.evaluate import BASELINES, parse_overrides, run_evaluate

PROTOCOL_MODELS = {
    "cold-items": tuple(COLD_ITEM_MODELS),
    "cold-users": COLD_USER_MODELS,
    "cross-domain": CROSS_DOMAIN_MODELS,
}

TABLE_METRICS = (
    "ndcg@10",
    "recall@10",
    "mrr@10",
    "hit@10",
    "precision@10",
    "map@10",
    "ndcg@20",
    "recall@20",
    "coverage@10",
    "popularity@10",
)


def evaluate(
    dataset: str = typer.Option("ml-100k", help="Dataset name under the data directory."),
    model: list[str] = typer.Option(["ease"], help=f"Model(s): {'|'.join(BASELINES)}; repeat for several."),
    split: str = typer.Option("ratio", help=f"Split: {'|'.join((*SPLIT_KINDS, 'cross-domain'))}."),
    seed: int = typer.Option(2020, help="Seed of the split."),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics JSON here."),
    set_: list[str] = typer.Option(
        None, "--set", help="Model setting KEY=VALUE or MODEL.KEY=VALUE, e.g. --set ease.reg=500."
    ),
    ks: str = typer.Option("5,10,20,50", help="Comma-separated cut-offs."),
    modalities: str = typer.Option("text", help="Content for cold items: text, kg or text,kg."),
) -> None:
    """Fit each model on train and evaluate on test by full ranking over all items.

    Cold-start protocols: ``--split cold-items`` (hybrid|random|genre-pop|content-knn|
    ease-content; headline = cold items only), ``--split cold-users`` (profile|pop|
    demographic-pop), ``--split cross-domain`` (cross-domain|emcdr|pop).
    """
    if split in PROTOCOL_MODELS:
        _protocol(dataset, model, split, seed, root, json_out, set_, ks, modalities)
        return
    try:
        config = SplitConfig(kind=split, seed=seed)  # type: ignore[arg-type]
        eval_config = EvalConfig(ks=tuple(int(k) for k in ks.split(",")))
        results = run_evaluate(dataset, model, config, root, parse_overrides(set_), eval_config)
    except (DataError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    rows = []
    for name, res in results.items():
        row = {"model": name, **{m: res["metrics"].get(m, "-") for m in TABLE_METRICS}}
        row["fit_s"] = res["timings"]["fit_s"]
        row["eval_s"] = res["timings"]["evaluate_s"]
        rows.append(row)
    cols = ["model", *[m for m in TABLE_METRICS if m.split("@")[1] in ks.split(",")], "fit_s", "eval_s"]
    typer.echo(f"{dataset} · split {split} · seed {seed} · test, full ranking over all items")
    typer.echo(format_table(rows, cols))
    if json_out:
        write_json(json_out, results[model[0]] if len(model) == 1 else {"models": results})


def _protocol(
    dataset: str,
    models: list[str],
    split: str,
    seed: int,
    root: Path | None,
    json_out: Path | None,
    set_: list[str] | None,
    ks: str,
    modalities: str,
) -> None:
    try:
        eval_config = EvalConfig(ks=tuple(int(k) for k in ks.split(",")))
        overrides = parse_overrides(set_)
        results = {}
        for name in models:
            if name not in PROTOCOL_MODELS[split]:
                raise ValueError(
                    f"unknown model {name!r} for --split {split}; expected one of {PROTOCOL_MODELS[split]}"
                )
            if split == "cold-items":
                results[name] = run_cold_items(
                    dataset, name, seed, root, tuple(modalities.split(",")), overrides, eval_config
                )
            elif split == "cold-users":
                results[name] = run_cold_users(dataset, name, seed, root, overrides, eval_config)
            else:
                results[name] = run_cross_domain(dataset, name, seed, root, overrides, eval_config)
    except (DataError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    rows = []
    for name, res in results.items():
        row = {
            "model": name,
            "ndcg@10": res["metrics"].get("ndcg@10", "-"),
            "recall@10": res["metrics"].get("recall@10", "-"),
        }
        if "all_items" in res:
            row["all-items ndcg@10"] = res["all_items"].get("ndcg@10", "-")
            row["all-items recall@10"] = res["all_items"].get("recall@10", "-")
        row["users"] = res["n_users"]
        row["fit_s"] = res["timings"]["fit_s"]
        rows.append(row)
    label = {
        "cold-items": "cold items only (protocol a); all-items = protocol b",
        "cold-users": "held-out users, from side features",
        "cross-domain": "users cold in the target domain, target items only",
    }[split]
    typer.echo(f"{dataset} · split {split} · seed {seed} · {label}")
    typer.echo(format_table(rows, list(rows[0])))
    if json_out:
        write_json(json_out, results[models[0]] if len(models) == 1 else {"models": results})
