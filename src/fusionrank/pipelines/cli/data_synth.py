"""``fusionrank data synth``: generate a dataset shaped like real logs, with its ceiling."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.settings import SettingsError, build_settings, parse_overrides

NAMED = ("users", "items", "interactions", "images", "seed")
"""Generator settings with their own option (``--set`` names the others)."""


def data_synth(
    name: str = typer.Option(..., help="Name to store the dataset under (then: --dataset NAME)."),
    users: int = typer.Option(..., help="Users (each with at least min_per_user events)."),
    items: int = typer.Option(..., help="Items in the catalogue."),
    interactions: int = typer.Option(..., help="Events in all, exactly (distinct user-item pairs)."),
    images: int = typer.Option(0, help="Items with a small PNG image (the first ones by id)."),
    seed: int = typer.Option(2020, help="Seed of every random choice."),
    set_: list[str] = typer.Option(
        None, "--set", help="Other generator setting KEY=VALUE, e.g. --set drift=0 --set categories=30."
    ),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    debug: bool = DEBUG,
) -> None:
    """Generate a synthetic dataset shaped like real logs and store it under the data folder.

    Interactions (long-tailed item popularity with a Zipf-like head, log-normal user
    activity, timestamps with drift), an item catalogue with text, optional PNG images and
    a user table with side features, all from planted latent factors. synth.json in the
    dataset folder records the settings, the statistics achieved and the oracle NDCG@10 on
    the default split."""
    from fusionrank.data.dataset import default_root
    from fusionrank.data.synth import SynthConfig, synth_dataset, synth_manifest

    with user_errors(debug):
        settings = {  # YAML reads --set start=2016-01-01 as a date
            k: v.isoformat() if isinstance(v, dt.date) else v for k, v in parse_overrides(set_).items()
        }
        for key in NAMED:
            if key in settings:
                raise SettingsError(f"--set {key}=...: use the --{key} option instead")
        settings.update(users=users, items=items, interactions=interactions, images=images, seed=seed)
        config = build_settings(SynthConfig, settings, owner="data synth")
        data = synth_dataset(name, config, root, progress=not quiet)
        manifest = synth_manifest(name, root)
    stats, oracle = manifest["statistics"], manifest["oracle"]
    per_user = stats["events_per_user"]
    typer.echo(f"stored {data!r} in {(root or default_root()) / name}")
    ceiling = f"{oracle['metrics']['ndcg@10']:.4f}" if oracle["metrics"] else "none (no user has a test item)"
    typer.echo(
        f"top 1% of items: {stats['top1pct_item_share']:.1%} of events · events per user: "
        f"median {per_user['p50']:g}, p90 {per_user['p90']:g}, max {per_user['max']:g} · "
        f"oracle ndcg@10 ({oracle['split']}, seed {oracle['seed']}): {ceiling}"
    )
