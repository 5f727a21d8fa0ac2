"""``fusionrank embed``: resumable batch embedding of a catalogue."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.data.errors import DataError
from fusionrank.encoders.engine import EmbedSettingsError
from fusionrank.encoders.engine import embed as embed_fn
from fusionrank.encoders.weights import ModelNotFoundError


def embed(
    catalogue: Path = typer.Option(..., help="Catalogue: CSV/TSV/Parquet/JSONL or a RecBole .item file."),
    encoder: str = typer.Option("text", help="text | image | clip"),
    out: Path = typer.Option(..., help="Output folder (Parquet shards + manifest.json)."),
    model: str = typer.Option(None, help="Model name or local path (default per encoder)."),
    fields: str = typer.Option(
        None, help="Comma-separated text fields, e.g. movie_title,release_year,class."
    ),
    template: str = typer.Option(None, help='Text template instead of fields, e.g. "{title} ({year})".'),
    id_column: str = typer.Option("item_id", help="Catalogue column with the item id."),
    image_column: str = typer.Option(None, help="Column with image paths (image, or CLIP on images)."),
    image_root: Path = typer.Option(None, help="Folder the image paths are relative to."),
    weights: str = typer.Option("DEFAULT", help="ResNet weights: enum name, checkpoint path, or 'none'."),
    clip_pretrained: str = typer.Option(None, help="open_clip pretrained tag or checkpoint path."),
    batch_size: int = typer.Option(64, help="Rows per forward pass."),
    shard_size: int = typer.Option(4096, help="Rows per output shard (unit of resumption)."),
    device: str = typer.Option("cpu", help="cpu | cuda"),
    precision: str = typer.Option("fp32", help="fp32 | bf16 | fp16"),
    workers: int = typer.Option(2, help="Image-decoding worker processes."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar; one summary line."),
) -> None:
    """Embed every catalogue row; rerun the same command to resume after an interruption."""
    try:
        embed_fn(
            catalogue,
            out,
            encoder=encoder,
            model=model,  # type: ignore[arg-type]
            fields=fields.split(",") if fields else None,
            image_column=image_column,
            image_root=image_root,
            batch_size=batch_size,
            device=device,
            precision=precision,
            workers=workers,
            template=template,  # type: ignore[arg-type]
            id_column=id_column,
            shard_size=shard_size,
            quiet=quiet,
            clip_pretrained=clip_pretrained,
            weights=None if weights.lower() == "none" else weights,
        )
    except (DataError, EmbedSettingsError, ModelNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
