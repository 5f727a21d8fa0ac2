"""The one handler of user errors, shared by every command.

A bad file, setting, config, source or user id is the user's to fix: it ends the command
with exactly one line on stderr, ``error: <what, which file, which row/column or key>``,
and exit code 2. ``--debug`` re-raises it with the full traceback instead. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from fusionrank.data.errors import DataError
from fusionrank.data.fetch import FetchError
from fusionrank.encoders.job import EmbedSettingsError
from fusionrank.encoders.weights import ModelNotFoundError
from fusionrank.io import StorageError
from fusionrank.pipelines.config import ConfigError
from fusionrank.pipelines.lock import RunLockedError
from fusionrank.recommender import UnknownUserError
from fusionrank.resources import InsufficientMemoryError
from fusionrank.settings import SettingsError

EXIT_CODE = 2
"""Exit code of every user error (click's own usage errors use 2 as well)."""

USER_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    SettingsError,
    ConfigError,
    FetchError,
    UnknownUserError,
    EmbedSettingsError,
    ModelNotFoundError,
    StorageError,
    RunLockedError,
    InsufficientMemoryError,
    FileNotFoundError,
    UnicodeDecodeError,
    ValueError,  # the library's refusal of a bad argument (an unknown model, split or protocol)
)
"""Errors that are the user's to fix, reported in one line."""

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
    """Turn a user error raised in the block into ``error: ...`` on stderr and exit code 2
    (with ``debug``, let it through with its traceback)."""
    try:
        yield
    except USER_ERRORS as exc:
        if debug:
            raise
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(EXIT_CODE) from exc
