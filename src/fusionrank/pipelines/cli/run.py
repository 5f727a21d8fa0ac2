"""``fusionrank run CONFIG``: the whole pipeline from one YAML config."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.data.errors import DataError
from fusionrank.pipelines.config import ConfigError, load_run_config
from fusionrank.pipelines.evaluate import parse_overrides


def run(
    config: Path = typer.Argument(..., help="YAML run config, e.g. configs/ml100k.yaml."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage, ignoring the cache."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set ranker.seed=7."),
    quiet: bool = typer.Option(False, "--quiet", help="Only the final table (no stage lines, no bars)."),
) -> None:
    """Fit the single models, build candidates and features, train the LightGBM ranker,
    evaluate everything on test and write runs/<name>/ (metrics.json, report.md/.html,
    plots, models). Stages whose inputs and settings did not change are reused."""
    from fusionrank.pipelines.report import print_summary
    from fusionrank.pipelines.run import run_pipeline

    try:
        cfg = load_run_config(config, parse_overrides(set_))
        output = run_pipeline(
            cfg, force=force, log=(lambda m: None) if quiet else typer.echo, progress=not quiet
        )
    except (ConfigError, DataError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("")
    typer.echo(print_summary(output.metrics))
    typer.echo(f"\nreport: {output.folder / 'report.html'} ({output.metrics['time_s']:.0f} s)")
