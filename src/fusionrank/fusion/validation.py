"""Validation sets the content models build from training data alone."""

from __future__ import annotations

import numpy as np

from fusionrank.errors import InvalidArgumentError


def pseudo_cold_items(warm: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A seeded ``share`` of the warm items (sorted), held out as if they were cold: a model
    that must rank items from content alone picks its epoch count on them.

    >>> pseudo_cold_items(np.arange(10), 0.2, seed=0).tolist()
    [6, 7]
    """
    if not 0 < share < 1:
        raise InvalidArgumentError(f"valid_share must be in (0, 1), got {share}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(warm, size=max(1, int(share * len(warm))), replace=False))
