"""``fusionrank recommend``: top-k items for a user from a finished run."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.settings import SettingsError


def recommend(
    run: Path = typer.Option(
        ..., help="A `fusionrank train --out` or `fusionrank run` folder (runs/<name>)."
    ),
    user: str = typer.Option(..., help="User id (external)."),
    k: int = typer.Option(10, "-k", help="How many items."),
    root: Path = typer.Option(
        None, help="Data directory (default: the run's, else $FUSIONRANK_DATA or ./data)."
    ),
    feature: list[str] = typer.Option(
        None,
        "--feature",
        help="Side feature of a user unknown to training, KEY=VALUE (repeat), e.g. --feature age=31.",
    ),
    explain: bool = typer.Option(False, "--explain", help="Top features behind each item (LTR runs)."),
    new_items: Path = typer.Option(
        None,
        "--new-items",
        help="Catalogue of items not in training (CSV/TSV/Parquet/JSONL): rank them by text.",
    ),
    debug: bool = DEBUG,
) -> None:
    """Top-k items for a user from a finished run.

    From history, or from side features for a user unknown to training; --new-items ranks
    items that were not in training from their content alone."""
    from fusionrank.evaluation.table import format_table
    from fusionrank.pipelines.recommend import recommend as recommend_fn

    with user_errors(debug):
        side = dict(f.split("=", 1) for f in feature or [] if "=" in f)
        if len(side) != len(feature or []):
            raise SettingsError("--feature: expected KEY=VALUE")
        table = recommend_fn(run, user, k, root, side or None, explain=explain, new_items=new_items)
        for warning in table.attrs.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"user {user} · from {table.attrs['source']}")
        typer.echo(format_table(table.to_dict("records"), list(table.columns)))
