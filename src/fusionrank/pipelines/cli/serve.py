"""``fusionrank serve``: a finished run behind HTTP (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer

from fusionrank.pipelines.cli.errors import DEBUG, user_errors


def serve(
    run: Path = typer.Argument(..., help="A finished `fusionrank run` or `fusionrank train --out` folder."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Worker processes (each loads the run; they share the item log)."),
    root: Path = typer.Option(
        None, help="Data directory (default: the run's, else $FUSIONRANK_DATA or ./data)."
    ),
    image_root: Path = typer.Option(
        None, "--image-root", help="Folder every image path of an added item must stay inside."
    ),
    log_level: str = typer.Option("warning", help="uvicorn's log level (info: one line per request)."),
    threads: int = typer.Option(
        1, help="Numeric threads (torch, BLAS) per worker while answering; the loading uses all cores."
    ),
    debug: bool = DEBUG,
) -> None:
    """Serve a finished run over HTTP until Ctrl-C (in-flight requests finish first).

    GET /health, GET /recommend?user=ID&k=10[&explain=true], POST /recommend, POST /items,
    GET /similar?item=ID&k=10, GET /audience?item=ID, GET /run; OpenAPI at /docs."""
    with user_errors(debug):
        from fusionrank.serving.errors import require_serve_extra

        for module in ("fastapi", "uvicorn"):
            require_serve_extra(module)
        from fusionrank.serving.app import serve as serve_fn

        def ready() -> None:
            typer.echo(f"serving {run} on http://{host}:{port} (docs: /docs); Ctrl-C stops", err=True)

        serve_fn(run, host, port, workers, root, image_root, log_level, ready=ready, threads=threads)
