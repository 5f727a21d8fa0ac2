"""``fusionrank train``: fit one model (early stopping on valid), evaluate it, save it."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from fusionrank.data.splits import SPLIT_KINDS, SplitConfig, SplitKind
from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.pipelines.cli.options import parse_ks
from fusionrank.registry import MODELS
from fusionrank.settings import parse_overrides

SHOWN = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20", "recall@20")


def train(
    dataset: str = typer.Option("ml-100k", help="Dataset under the data directory."),
    model: str = typer.Option(..., help=f"Model: {'|'.join(MODELS)} or a dotted class path."),
    split: str = typer.Option("ratio", help=f"Split: {'|'.join(SPLIT_KINDS)} (sasrec: leave-last)."),
    seed: int = typer.Option(2020, help="Seed of the split and of training."),
    out: Path = typer.Option(None, help="Folder for the model, its vectors and metrics.json."),
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
    ks: str = typer.Option("5,10,20,50", help="Comma-separated cut-offs."),
    set_: list[str] = typer.Option(None, "--set", help="Model setting KEY=VALUE, e.g. --set reg=0.001."),
    debug: bool = DEBUG,
) -> None:
    """Fit one model, evaluate it, and save it with --out.

    Models with a training loop stop early on validation NDCG@10; test metrics follow the
    split's protocol; ``--out`` saves the model, its vectors and metrics for
    ``fusionrank recommend``. Options a model does not have are refused by name."""
    from fusionrank.evaluation.table import format_table
    from fusionrank.io import write_json
    from fusionrank.pipelines.evaluate import run_train

    flags = {
        "epochs": epochs,
        "dim": dim,
        "learning_rate": lr,
        "batch_size": batch_size,
        "patience": patience,
        "threads": threads,
        "device": device,
    }
    with user_errors(debug):
        settings = {**{k: v for k, v in flags.items() if v is not None}, **parse_overrides(set_)}
        config = SplitConfig(kind=cast(SplitKind, split), seed=seed)  # SplitConfig checks the kind
        defaults = {"progress": False} if quiet else {}
        result = run_train(dataset, model, config, out, root, settings, parse_ks(ks), defaults)
        row = {"model": model, **{m: result.metrics[m] for m in SHOWN if m in result.metrics}}
        if result.training:
            row["epochs"] = result.training["epochs"]
            row["best_epoch"] = result.training["best_epoch"]
        row["fit_s"] = result.timings["fit_s"]
        typer.echo(f"{dataset} · split {split} · seed {seed} · test, full ranking")
        typer.echo(format_table([row], list(row)))
        if json_out:
            write_json(json_out, result.to_dict())
