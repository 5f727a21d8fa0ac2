"""The one error base: every error fusionrank raises on purpose derives from
:class:`FusionRankError` (the way every ``requests`` error is a ``RequestException``).

A :class:`FusionRankError` is the user's to fix (a bad file, setting, argument or id): the
CLI prints it as one ``error:`` line. Anything else that escapes is a bug and keeps its
traceback. The concrete errors also derive from the built-in type a caller would expect
(``ValueError``, ``FileNotFoundError`` ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class FusionRankError(Exception):
    """Base of every error fusionrank raises on purpose."""


class InvalidArgumentError(FusionRankError, ValueError):
    """A function or command was given a value it cannot use (an unknown name, a value
    out of range, settings that exclude each other)."""


class MissingInputError(FusionRankError, FileNotFoundError):
    """A file or folder a step needs is not there (content vectors not embedded yet, a run
    folder without its stage, a model folder without its config)."""


class NotFittedError(FusionRankError, RuntimeError):
    """A model or ranker was used before ``fit`` (or ``load``)."""


class UnknownKeyError(FusionRankError, KeyError):
    """A name the data does not have: a column of a table, an id of an id map."""

    def __str__(self) -> str:  # KeyError quotes its message; one line reads better without
        return str(self.args[0]) if self.args else ""


class InconsistentInputError(FusionRankError, RuntimeError):
    """An input differs between the driver and a worker (another model file or catalogue
    on another node of a cluster)."""
