"""Turn raw interactions into implicit feedback: threshold, duplicate collapsing, k-core."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fusionrank.columns import ITEM_ID, RATING, TIMESTAMP, USER_ID
from fusionrank.errors import InvalidArgumentError


@dataclass(frozen=True)
class FeedbackConfig:
    """How explicit ratings become implicit positives."""

    min_rating: float | None = None
    """Keep only rows with rating >= this; ``None`` keeps every rating (as RecBole does for ml-100k)."""
    k_core: int = 0
    """Repeatedly drop users and items with fewer than this many interactions (0: off)."""

    def __post_init__(self) -> None:
        if self.k_core < 0:
            raise InvalidArgumentError(f"k_core must be >= 0, got {self.k_core}")


def collapse_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (user, item): the latest by timestamp, else the last in file order."""
    if TIMESTAMP in frame.columns:
        order = frame[TIMESTAMP].to_numpy().argsort(kind="stable")
        frame = frame.iloc[order]
    kept = frame.drop_duplicates([USER_ID, ITEM_ID], keep="last")
    return kept.sort_index()


def k_core(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Iteratively remove users and items with fewer than ``k`` interactions."""
    if k <= 1:
        return frame
    while True:
        users = frame[USER_ID].map(frame[USER_ID].value_counts())
        items = frame[ITEM_ID].map(frame[ITEM_ID].value_counts())
        keep = (users >= k) & (items >= k)
        if keep.all():
            return frame
        frame = frame[keep]


def implicit_feedback(frame: pd.DataFrame, config: FeedbackConfig | None = None) -> pd.DataFrame:
    """Apply the rating threshold, collapse duplicates and k-core filter, in that order."""
    config = config or FeedbackConfig()
    if config.min_rating is not None:
        frame = frame[frame[RATING] >= config.min_rating]
    frame = collapse_duplicates(frame)
    frame = k_core(frame, config.k_core)
    if frame.empty:
        raise InvalidArgumentError("no interactions left after the rating threshold and k-core filter")
    return frame.reset_index(drop=True)
