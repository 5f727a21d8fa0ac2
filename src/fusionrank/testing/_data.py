"""The conformance kit's planted dataset: tiny, with a known structure, and every kind of
data a model may read (events with timestamps, genres, two domains, user side features and
a "text" vectors folder), so one dataset exercises every registered model in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fusionrank.data.dataset import Dataset
from fusionrank.data.profile import DatasetProfile
from fusionrank.data.vectors import write_vector_folder

N_USERS = 48
"""Users ``u0`` ... ``u47``; user ``u`` has taste ``u % BLOCKS``."""
N_ITEMS = 32
"""Items ``i0`` ... ``i31``; item ``i`` is in block ``i % BLOCKS``."""
BLOCKS = 4
"""Tastes, item blocks and genres (Action, Comedy, Drama, Sci-Fi)."""
GENRES = ("Action", "Comedy", "Drama", "Sci-Fi")
JOBS = ("a", "b", "c", "d")


def planted_dataset(folder: str | Path, seed: int) -> Dataset:
    """A tiny dataset with planted tastes, written under ``folder`` (vectors and caches).

    Users of taste t like block t's items and some of block t + 2's; items of blocks 0-1
    are in domain A, 2-3 in domain B; the "text" content is the block plus noise; the side
    features (``age``, ``job``) follow the taste. ``seed`` draws the events and the noise,
    so two seeds give two datasets of the same shape and different data.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for u in range(N_USERS):
        taste = u % BLOCKS
        for i in range(N_ITEMS):
            block = i % BLOCKS
            if (block == taste and rng.random() < 0.6) or (
                block == (taste + 2) % BLOCKS and rng.random() < 0.3
            ):
                t += int(rng.integers(1, 50))
                rows.append((f"u{u}", f"i{i}", float(t)))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    item_ids = [f"i{i}" for i in range(N_ITEMS)]
    items = pd.DataFrame({"item_id": item_ids, "genre": [GENRES[i % BLOCKS] for i in range(N_ITEMS)]})
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "age": [20 + 10 * (u % BLOCKS) for u in range(N_USERS)],
            "job": [JOBS[u % BLOCKS] for u in range(N_USERS)],
        }
    )
    content = np.eye(BLOCKS, dtype=np.float32)[np.arange(N_ITEMS) % BLOCKS]
    content = content + 0.2 * rng.normal(size=content.shape).astype(np.float32)
    write_vector_folder(folder / "text", item_ids, content, encoder="planted", weights={}, normalised=False)
    profile = DatasetProfile.from_json(
        {
            "genres": "genre",
            "domains": {"A": list(GENRES[:2]), "B": list(GENRES[2:])},
            "user_features": ["age", "job"],
            "user_buckets": {"age": [25, 35, 45]},
            "vectors": {"text": str(folder / "text")},
        }
    )
    return Dataset.from_files(
        events, items, users, columns={"timestamp": "timestamp"}, profile=profile, cache_dir=folder
    )
