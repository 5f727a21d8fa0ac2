"""The ``fusionrank`` command line: one small module per command, each calling the library."""

from __future__ import annotations

import typer

from fusionrank.pipelines.cli import (
    data_fetch,
    data_import,
    data_synth,
    embed,
    evaluate,
    recommend,
    run,
    serve,
    train,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fusionrank: multimodal recommendation with honest evaluation.",
)
data_app = typer.Typer(
    no_args_is_help=True, help="Fetch shipped datasets, import your own, or generate synthetic ones."
)
app.add_typer(data_app, name="data")
data_app.command("fetch")(data_fetch.fetch)
data_app.command("import")(data_import.data_import)
data_app.command("synth")(data_synth.data_synth)
app.command("evaluate")(evaluate.evaluate)
app.command("embed")(embed.embed)
app.command("train")(train.train)
app.command("recommend")(recommend.recommend)
app.command("run")(run.run)
app.command("serve")(serve.serve)


def main() -> None:
    app()
