"""``fusionrank train``: fit a collaborative model with early stopping and evaluate it."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.data.errors import DataError
from fusionrank.data.splits import SPLIT_KINDS, SplitConfig
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json
from fusionrank.pipelines.evaluate import parse_overrides
from fusionrank.pipelines.train import COLLAB_MODELS, run_train

SHOWN = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20", "recall@20")


def train(
    dataset: str = typer.Option("ml-100k", help="Dataset under the data directory."),
    model: str = typer.Option(..., help=f"Model: {'|'.join(COLLAB_MODELS)}|hybrid|cross-domain."),
    split: str = typer.Option("ratio", help=f"Split: {'|'.join(SPLIT_KINDS)} (sasrec: leave-last)."),
    seed: int = typer.Option(2020, help="Seed of the split and of training."),
    out: Path = typer.Option(None, help="Folder for the model, embeddings and metrics.json."),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    json_out: Path = typer.Option(None, "--json", help="Also write the metrics JSON here."),
    epochs: int = typer.Option(None, help="Maximum epochs."),
    dim: int = typer.Option(None, help="Embedding / hidden size."),
    lr: float = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: int = typer.Option(None, help="Batch size."),
    patience: int = typer.Option(None, help="Early-stopping patience (evaluations)."),
    threads: int = typer.Option(None, help="torch threads."),
    device: str = typer.Option(None, help="cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    set_: list[str] = typer.Option(None, "--set", help="Model setting KEY=VALUE, e.g. --set reg=0.001."),
) -> None:
    """Train with early stopping on validation NDCG@10, then report test metrics.

    ``hybrid`` trains on the cold-items protocol and ``cross-domain`` on the cross-domain
    protocol (the split is implied); both write metrics.json (and hybrid its item vectors).
    """
    if model in ("hybrid", "cross-domain"):
        from fusionrank.pipelines.cold_start import run_cold_items, run_cross_domain

        try:
            run = run_cold_items if model == "hybrid" else run_cross_domain
            metrics = run(dataset, model, seed, root, overrides=parse_overrides(set_), out=out)
        except (DataError, ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        row = {
            "model": model,
            "split": metrics["split"],
            **{m: metrics["metrics"][m] for m in SHOWN},
            "fit_s": metrics["timings"]["fit_s"],
        }
        typer.echo(format_table([row], list(row)))
        if json_out:
            write_json(json_out, metrics)
        return
    try:
        metrics = run_train(
            dataset,
            model,
            SplitConfig(kind=split, seed=seed),
            out,
            root,  # type: ignore[arg-type]
            settings=parse_overrides(set_),
            dim=dim,
            train={
                "epochs": epochs,
                "learning_rate": lr,
                "batch_size": batch_size,
                "patience": patience,
                "threads": threads,
                "device": device,
                "seed": seed,
                "progress": False if quiet else None,
            },
        )
    except (DataError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    row = {
        "model": model,
        **{m: metrics["metrics"][m] for m in SHOWN},
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "time_to_best_s": metrics["timings"]["time_to_best_s"],
        "total_s": metrics["timings"]["total_s"],
    }
    typer.echo(f"{dataset} · split {split} · seed {seed} · test, full ranking over all items")
    typer.echo(format_table([row], list(row)))
    if json_out:
        write_json(json_out, metrics)
