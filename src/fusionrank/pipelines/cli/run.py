"""``fusionrank run CONFIG``: the whole pipeline from one YAML config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.settings import parse_overrides


def run(
    config: Path = typer.Argument(..., help="YAML run config, e.g. configs/ml100k.yaml."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage, ignoring the cache."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set ranker.seed=7."),
    peers: Path = typer.Option(
        None, help="Folder of peer results to print beside the run (overrides `peers`)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="Only the final table (no stage lines, no bars)."),
    debug: bool = DEBUG,
) -> None:
    """The whole pipeline from one YAML config.

    Fit the single models, build candidates and features, train the LightGBM ranker,
    evaluate everything on test and write <out>/<name>/ (metrics.json, report.md/.html,
    plots, models). Stages whose inputs and settings did not change are reused."""
    from fusionrank.pipelines.config import load_run_config
    from fusionrank.pipelines.run import run_pipeline
    from fusionrank.pipelines.stages.report import print_summary

    with user_errors(debug):
        cfg = load_run_config(config, parse_overrides(set_))
        if peers is not None:
            cfg = dataclasses.replace(cfg, peers=str(peers.resolve()))
        output = run_pipeline(
            cfg, force=force, log=(lambda m: None) if quiet else typer.echo, progress=not quiet
        )
        typer.echo("")
        typer.echo(print_summary(output.metrics, Path(cfg.peers) if cfg.peers else None))
        typer.echo(f"\nreport: {output.folder / 'report.html'} ({output.time_s:.0f} s)")
