"""Bitwise repetition of torch training: the same seed and thread count give the same bits.

Without it, threaded scatter-adds (the gradient of an embedding lookup by index) sum in
an order that depends on thread timing, and the weights drift in the last bits from run
to run; the drift then reaches every feature and the ranker built on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def repeatable(enabled: bool = True) -> Iterator[None]:
    """Run the block with torch's deterministic algorithms on (or off), then restore the setting.

    Same seed, same threads -> the same bits: without it, threaded scatter-adds (the gradient
    of an embedding lookup) sum in a different order from run to run.

    >>> with repeatable():
    ...     torch.are_deterministic_algorithms_enabled()
    True
    """
    before, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
