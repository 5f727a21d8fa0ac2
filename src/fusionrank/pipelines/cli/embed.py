"""``fusionrank embed``: resumable batch embedding of a catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fusionrank.encoders.registry import ENCODERS
from fusionrank.engines.ray_engine import RayOptions
from fusionrank.errors import InvalidArgumentError
from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.settings import parse_overrides


def embed(
    out: Path = typer.Option(..., help="Output folder (Parquet shards + errors.parquet + manifest.json)."),
    catalogue: Path = typer.Option(None, help="Catalogue: CSV/TSV/Parquet/JSONL or a RecBole .item file."),
    dataset: str = typer.Option(None, help="Or a stored dataset: its catalogue, text template and images."),
    root: Path = typer.Option(
        None, help="Data directory for --dataset (default: $FUSIONRANK_DATA or ./data)."
    ),
    encoder: str = typer.Option(
        "text",
        help=f"{' | '.join(ENCODERS)}, or the dotted class path of your own encoder (mypkg.MyEncoder).",
    ),
    model: str = typer.Option(None, help="Model name or local path (default per encoder)."),
    fields: str = typer.Option(None, help="Comma-separated text fields, e.g. title,genres."),
    template: str = typer.Option(None, help='Text template instead of fields, e.g. "{title} ({year})".'),
    id_column: str = typer.Option(None, help="Catalogue column with the item id (default item_id)."),
    image_column: str = typer.Option(None, help="Column with image paths (image, or CLIP on images)."),
    image_root: Path = typer.Option(None, help="Folder the image paths are relative to."),
    weights: str = typer.Option(
        None, help="ResNet weights: enum name (DEFAULT), checkpoint path, or 'none'."
    ),
    clip_pretrained: str = typer.Option(None, help="open_clip pretrained tag or checkpoint path."),
    batch_size: int = typer.Option(None, help="Rows per forward pass (default 64)."),
    shard_size: int = typer.Option(
        None, help="Rows per output shard, the unit of resumption (default 4096)."
    ),
    device: str = typer.Option(None, help="cpu | cuda | cuda:N"),
    precision: str = typer.Option(
        None,
        help="fp32 (default) | int8 (dynamic quantisation, CPU; text and CLIP) | bf16 | fp16 (GPU autocast).",
    ),
    backend: str = typer.Option(
        None, help="torch (default) | onnx (ONNX Runtime on the CPU; text encoder, fp32 or int8)."
    ),
    workers: int = typer.Option(
        None,
        help="Worker processes that decode images or tokenise text (default: images 1 on the CPU, "
        "text none on the CPU; up to 8 with a GPU).",
    ),
    engine: str = typer.Option(
        "local",
        help="local (this process) | ray (Ray actors; pip install 'fusionrank\\[ray]'). Same vectors.",
    ),
    address: str = typer.Option(
        None, help="Ray cluster to join (host:port or ray://host:port); default $RAY_ADDRESS, else local."
    ),
    actors: int = typer.Option(
        None, help="Ray actors, each with its own encoder (default: one per CPU, or per --gpus-per-actor)."
    ),
    gpus_per_actor: float = typer.Option(
        None, help="GPUs each Ray actor reserves, with --device cuda (a fraction shares a GPU)."
    ),
    restarts: int = typer.Option(
        None,
        help="Times Ray restarts a dead actor and retries its shard before the job fails "
        f"(default {RayOptions.restarts}).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar; one summary line."),
    set_: list[str] = typer.Option(
        None, "--set", help="Encoder setting KEY=VALUE (a YAML value), e.g. --set max_length=128; repeatable."
    ),
    debug: bool = DEBUG,
) -> None:
    """Embed every catalogue row; rerun the same command to resume after an interruption.

    The flags and ``--set`` settings go to the job or to the encoder's own config, whichever
    has them; a setting that neither has is refused by name."""
    given: dict[str, Any] = {
        "model": model,
        "fields": fields.split(",") if fields else None,
        "template": template,
        "id_column": id_column,
        "image_column": image_column,
        "image_root": str(image_root) if image_root else None,
        "weights": weights,
        "clip_pretrained": clip_pretrained,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "device": device,
        "precision": precision,
        "backend": backend,
        "workers": workers,
    }
    settings = {k: v for k, v in given.items() if v is not None}
    if settings.get("weights", "").lower() == "none":
        settings["weights"] = None
    if quiet:
        settings["quiet"] = True
    with user_errors(debug):
        settings.update(parse_overrides(set_))
        if (catalogue is None) == (dataset is None):
            raise InvalidArgumentError("give either --catalogue FILE or --dataset NAME")
        if dataset is not None:
            from fusionrank.data.dataset import load_dataset

            source: Any = load_dataset(dataset, root)
        else:
            source = catalogue
        ray = {"address": address, "actors": actors, "gpus_per_actor": gpus_per_actor, "restarts": restarts}
        from fusionrank.encoders.engine import embed as embed_fn

        embed_fn(source, out, encoder, engine=engine, **ray, **settings)  # type: ignore[arg-type]
