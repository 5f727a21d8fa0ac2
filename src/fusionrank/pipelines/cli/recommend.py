"""``fusionrank recommend``: top-k items for a user from a finished run."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.data.errors import DataError
from fusionrank.evaluation.table import format_table
from fusionrank.pipelines.recommend import recommend as recommend_fn


def recommend(
    run: Path = typer.Option(
        ..., help="A `fusionrank train --out` or `fusionrank run` folder (runs/<name>)."
    ),
    user: str = typer.Option(..., help="User id (external)."),
    k: int = typer.Option(10, "-k", help="How many items."),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    age: str = typer.Option(None, help="Side feature for a user unknown to training."),
    gender: str = typer.Option(None, help="Side feature for a user unknown to training."),
    occupation: str = typer.Option(None, help="Side feature for a user unknown to training."),
    explain: bool = typer.Option(False, "--explain", help="Top features behind each item (LTR runs)."),
    new_items: Path = typer.Option(
        None,
        "--new-items",
        help="Catalogue of items not in training (CSV/TSV/Parquet/JSONL): rank them by text.",
    ),
) -> None:
    """Recommend from history, or from side features for a user unknown to training;
    --new-items ranks items that were not in training from their content alone."""
    side = {n: v for n, v in (("age", age), ("gender", gender), ("occupation", occupation)) if v is not None}
    try:
        table = recommend_fn(run, user, k, root, side or None, explain=explain, new_items=new_items)
    except (DataError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"user {user} · from {table.attrs['source']}")
    typer.echo(format_table(table.to_dict("records"), list(table.columns)))
