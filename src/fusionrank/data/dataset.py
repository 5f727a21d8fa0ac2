"""A recommendation dataset in memory: interactions plus optional side tables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fusionrank.columns import ITEM_ID, RATING, TIMESTAMP, USER_ID
from fusionrank.data.atomic import read_atomic_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.feedback import FeedbackConfig, implicit_feedback
from fusionrank.data.loaders import check_known_items, normalise_catalogue

DEFAULT_ROOT_ENV = "FUSIONRANK_DATA"


def default_root() -> Path:
    """Data directory: ``$FUSIONRANK_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "data"))


@dataclass
class Dataset:
    """Interactions (implicit, deduplicated) and the side tables that came with them.

    ``interactions`` has ``user_id``, ``item_id`` (str), ``rating`` and ``timestamp``
    (float) columns. ``items`` / ``users`` are keyed by ``item_id`` / ``user_id``;
    ``kg`` holds (head_id, relation_id, tail_id) triples and ``link`` maps items to KG
    entities, when the source has them.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    kg: pd.DataFrame | None = None
    link: pd.DataFrame | None = None

    @property
    def item_ids(self) -> list[str]:
        """Every item id: catalogue order first, then items only seen in interactions."""
        ids = list(self.items[ITEM_ID]) if self.items is not None else []
        seen = set(ids)
        for i in self.interactions[ITEM_ID].unique():
            if i not in seen:
                ids.append(i)
                seen.add(i)
        return ids

    @property
    def user_ids(self) -> list[str]:
        """Every user id: in order of first interaction."""
        return list(pd.unique(self.interactions[USER_ID]))


def load_atomic(directory: str | Path, name: str, feedback: FeedbackConfig | None = None) -> Dataset:
    """Load a dataset stored as RecBole atomic files, e.g. ``data/ml-100k/ml-100k.inter``."""
    directory = Path(directory)
    tables = read_atomic_dataset(directory, name)
    inter_path = directory / f"{name}.inter"
    inter = tables["inter"]
    for col in (USER_ID, ITEM_ID):
        if col not in inter.columns:
            raise DataError(
                f"missing column; the file has {list(inter.columns)}", file=inter_path, column=col
            )
    if RATING not in inter.columns:
        inter[RATING] = 1.0
    if TIMESTAMP not in inter.columns:
        inter[TIMESTAMP] = 0.0
    items = None
    if "item" in tables:
        items = normalise_catalogue(tables["item"], ITEM_ID, directory / f"{name}.item")
        check_known_items(inter, items, inter_path)
    users = tables.get("user")
    if users is not None:
        users = users.copy()
        users[USER_ID] = users[USER_ID].astype(str)
    interactions = implicit_feedback(inter, feedback)
    return Dataset(
        name=name,
        interactions=interactions,
        items=items,
        users=users,
        kg=tables.get("kg"),
        link=tables.get("link"),
    )


def load_dataset(
    name: str, root: str | Path | None = None, feedback: FeedbackConfig | None = None
) -> Dataset:
    """Load a dataset by name from ``<root>/<name>/`` (atomic files)."""
    root = Path(root) if root is not None else default_root()
    return load_atomic(root / name, name, feedback)
