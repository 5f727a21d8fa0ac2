"""Column names used across every stage, written once.

External ids (``user_id``, ``item_id``) are strings; internal indices (``user_idx``,
``item_idx``) are contiguous ints and only exist after an :class:`~fusionrank.data.idmap.IdMap`
has been applied.
"""

from typing import Final

USER_ID = "user_id"
ITEM_ID = "item_id"
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
TIMESTAMP = "timestamp"
RATING = "rating"
DOMAIN = "domain"
SCORE = "score"
RANK = "rank"
PART = "part"
VECTOR = "vector"
QUERY = "query"
"""A ranker's query group when a user has several (one per fold of stacked labels)."""

TRAIN: Final = "train"
VALID: Final = "valid"
TEST: Final = "test"
PARTS = (TRAIN, VALID, TEST)
