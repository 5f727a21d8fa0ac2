"""``fusionrank data import``: store the user's own files under the data folder."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.pipelines.cli.options import parse_pairs


def data_import(
    name: str = typer.Option(..., help="Name to store the dataset under (then: --dataset NAME)."),
    interactions: Path = typer.Option(..., help="Interaction log: CSV/TSV/Parquet/JSONL."),
    items: Path = typer.Option(None, help="Item catalogue (keyed by the same item column, or item_id)."),
    users: Path = typer.Option(None, help="User table (keyed by the same user column, or user_id)."),
    columns: str = typer.Option(
        None, help="Interaction columns, e.g. user=uid,item=sku,timestamp=ts (also rating=, domain=)."
    ),
    text: str = typer.Option(
        None, help='Item text template over catalogue columns, e.g. "{title}. {description}".'
    ),
    image: str = typer.Option(None, help="Catalogue column with image paths."),
    image_root: Path = typer.Option(None, help="Folder the image paths are relative to."),
    genres: str = typer.Option(None, help="Catalogue column with categories (list or space separated)."),
    title: str = typer.Option(None, help="Catalogue column shown as the title."),
    user_features: str = typer.Option(
        None, help="User-table columns used as side features, comma separated."
    ),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    debug: bool = DEBUG,
) -> None:
    """Store your own files under the data folder.

    Validates the files (every bad row stops with file, row and column) and stores them as
    Parquet with a dataset.json profile, so that every command can use --dataset NAME."""
    from fusionrank.data.dataset import default_root, import_dataset

    profile: dict = {}
    if genres:
        profile["genres"] = genres
    if title:
        profile["title"] = title
    if user_features:
        profile["user_features"] = user_features.split(",")
    with user_errors(debug):
        data = import_dataset(
            name,
            interactions,
            items,
            users,
            root=root,
            columns=parse_pairs(columns, "--columns"),
            text=text,
            image=image,
            image_root=image_root,
            profile=profile or None,
        )
    typer.echo(f"stored {data!r} in {(root or default_root()) / name}")
