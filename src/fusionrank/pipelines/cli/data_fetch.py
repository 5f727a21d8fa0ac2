"""``fusionrank data fetch ml-100k``."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.pipelines.cli.errors import DEBUG, user_errors


def fetch(
    name: str = typer.Argument(..., help="Dataset to fetch (ml-100k)."),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    source: Path = typer.Option(
        None,
        help="Local copy: atomic files, a GroupLens folder or its .zip/.tar.gz; no other source is tried.",
    ),
    debug: bool = DEBUG,
) -> None:
    """Put a dataset into the data directory; does nothing when it is already there."""
    from fusionrank.data.dataset import default_root
    from fusionrank.data.fetch import ML100K, fetch_ml100k

    if name != ML100K:
        raise typer.BadParameter(f"unknown dataset {name!r}; available: {ML100K}")
    with user_errors(debug):
        fetch_ml100k(root or default_root(), source, log=lambda m: typer.echo(m, err=True))
