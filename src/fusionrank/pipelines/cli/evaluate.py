"""``fusionrank evaluate``: fit baselines on a split and print full-ranking metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.data.errors import DataError
from fusionrank.data.splits import SPLIT_KINDS, SplitConfig
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json
from fusionrank.pipelines.evaluate import BASELINES, parse_overrides, run_evaluate

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
    split: str = typer.Option("ratio", help=f"Split: {'|'.join(SPLIT_KINDS)}."),
    seed: int = typer.Option(2020, help="Seed of the split."),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics JSON here."),
    set_: list[str] = typer.Option(
        None, "--set", help="Model setting KEY=VALUE or MODEL.KEY=VALUE, e.g. --set ease.reg=500."
    ),
    ks: str = typer.Option("5,10,20,50", help="Comma-separated cut-offs."),
) -> None:
    """Fit each model on train and evaluate on test by full ranking over all items."""
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
