"""``fusionrank evaluate``: fit models on a split and print their test metrics."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from fusionrank.data.splits import SPLIT_KINDS, SplitConfig, SplitKind
from fusionrank.pipelines.cli.errors import DEBUG, user_errors
from fusionrank.pipelines.cli.options import parse_ks
from fusionrank.registry import DEFAULT_MODELS, MODELS
from fusionrank.settings import parse_overrides

TABLE_METRICS = (
    "ndcg@10",
    "recall@10",
    "mrr@10",
    "hit@10",
    "precision@10",
    "map@10",
    "ndcg@20",
    "recall@20",
    "coverage@10",
    "popularity@10",
)
LABELS = {
    "cold-items": "cold items only (protocol a); all-items = protocol b",
    "cold-users": "held-out users, served from side features",
    "cross-domain": "users cold in the target domain, target items only",
}


def evaluate(
    dataset: str = typer.Option("ml-100k", help="Dataset name under the data directory."),
    model: list[str] = typer.Option(
        [DEFAULT_MODELS["evaluate"][0]],
        help=f"Model(s): {'|'.join(MODELS)} or a dotted class path; repeat for several.",
    ),
    split: str = typer.Option("ratio", help=f"Split: {'|'.join(SPLIT_KINDS)}."),
    seed: int = typer.Option(2020, help="Seed of the split (and of the models)."),
    root: Path = typer.Option(None, help="Data directory (default: $FUSIONRANK_DATA or ./data)."),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics JSON here."),
    set_: list[str] = typer.Option(
        None, "--set", help="Model setting KEY=VALUE or MODEL.KEY=VALUE, e.g. --set ease.reg=500."
    ),
    ks: str = typer.Option("5,10,20,50", help="Comma-separated cut-offs."),
    modalities: str = typer.Option(
        None, help="Content of the content models: text, image, clip, kg, or text,kg."
    ),
    warm_test: float = typer.Option(
        0.0,
        help="cold-items: share of each warm user's interactions also held out for test, so the "
        "all-items ranking is scored against warm and cold truth (cold share@10 beside truth share).",
    ),
    debug: bool = DEBUG,
) -> None:
    """Fit models on a split and print their test metrics.

    Each model is fitted on train (valid for early stopping) and evaluated on test by full
    ranking over all items, or over the protocol's candidates: the cold items of
    ``--split cold-items`` (all items: the all-items columns, with the share of the top-10
    slots cold items get beside their share of the truth; ``--warm-test 0.1`` puts warm
    interactions in that truth too), the target domain's items of ``--split cross-domain``."""
    from fusionrank.evaluation.table import format_table
    from fusionrank.io import write_json
    from fusionrank.pipelines.evaluate import run_evaluate

    with user_errors(debug):
        overrides = parse_overrides(set_)
        if modalities:
            overrides["modalities"] = modalities.split(",")
        cut = parse_ks(ks)
        # SplitConfig checks the kind (and that --warm-test goes with cold-items)
        config = SplitConfig(kind=cast(SplitKind, split), seed=seed, warm_test_ratio=warm_test)
        results = run_evaluate(dataset, model, config, root, overrides, cut)
        shown = [m for m in TABLE_METRICS if int(m.split("@")[1]) in cut]
        rows = []
        for name, res in results.items():
            row = {"model": name, **{m: res.metrics.get(m, "-") for m in shown}}
            if res.all_items is not None:
                row["all-items ndcg@10"] = res.all_items.get("ndcg@10", "-")
                row["cold share@10"] = res.all_items.get("cold_share@10", "-")
                row["cold truth share"] = res.all_items.get("cold_truth_share", "-")
            row["users"] = res.n_users
            row["fit_s"] = res.timings["fit_s"]
            row["eval_s"] = res.timings["evaluate_s"]
            rows.append(row)
        label = LABELS.get(split, "test, full ranking over all items")
        typer.echo(f"{dataset} · split {split} · seed {seed} · {label}")
        typer.echo(format_table(rows, list(rows[0])))
        if json_out:
            payload = (
                results[model[0]].to_dict()
                if len(model) == 1
                else {"models": {n: r.to_dict() for n, r in results.items()}}
            )
            write_json(json_out, payload)
