"""The one handler of errors, shared by every command.

A :class:`~fusionrank.FusionRankError` (a bad file, setting, config, source or user id, a
missing input, a run folder in use) is the user's to fix: it ends the command with exactly
one line on stderr, ``error: <what, which file, which row/column or key>``, and exit code 2.
``--debug`` re-raises it with the full traceback instead. Anything else is a bug (in
fusionrank or a library under it): its traceback is printed, then one line saying so and
asking for a report, and the command exits with code 1.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from fusionrank.errors import FusionRankError

EXIT_CODE = 2
"""Exit code of every user error (click's own usage errors use 2 as well)."""

BUG_EXIT_CODE = 1
"""Exit code of an unexpected error (a bug)."""

DEBUG = typer.Option(False, "--debug", help="On an error, show the full traceback instead of one line.")
"""The ``--debug`` option of every command."""


def one_line(exc: BaseException) -> str:
    """The error's message on one line (its lines joined by ``; ``).

    >>> one_line(ValueError("no such model\\nsee `fusionrank train --help`"))
    'no such model; see `fusionrank train --help`'
    """
    lines = [part.strip() for part in str(exc).splitlines() if part.strip()]
    return "; ".join(lines) or type(exc).__name__


@contextmanager
def user_errors(debug: bool = False) -> Iterator[None]:
    """Turn a :class:`~fusionrank.FusionRankError` raised in the block into ``error: ...``
    on stderr and exit code 2 (with ``debug``, let it through with its traceback); any
    other exception prints its traceback and a line saying it is a bug, exit code 1."""
    try:
        yield
    except FusionRankError as exc:
        if debug:
            raise
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(EXIT_CODE) from exc
    except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if debug:
            raise
        traceback.print_exc(file=sys.stderr)
        typer.echo(
            f"error: unexpected {type(exc).__name__} (a bug, not your input): please report it with the "
            "traceback above",
            err=True,
        )
        raise typer.Exit(BUG_EXIT_CODE) from exc
