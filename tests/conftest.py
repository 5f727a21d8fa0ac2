"""Shared fixtures: small hand-made datasets and the real MovieLens-100K."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fusionrank.data.dataset import load_dataset
from fusionrank.data.fetch import fetch_ml100k, is_fetched

REPO = Path(__file__).resolve().parents[1]

TINY_PROFILE = {
    "text": "{movie_title} {class}",
    "title": "movie_title",
    "genres": "class",
    "domains": {"A": ["Action", "Comedy"], "B": ["Drama", "Romance", "Sci-Fi"]},
    "user_features": ["age", "gender", "occupation"],
    "user_buckets": {"age": [30, 45]},
}
"""What the tiny dataset's columns mean (as ml-100k's profile, on tiny's columns)."""


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory):
    """Datasets read from files keep their derived files in a session folder, not ~/.cache."""
    old = os.environ.get("FUSIONRANK_CACHE")
    os.environ["FUSIONRANK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("FUSIONRANK_CACHE", None)
    else:
        os.environ["FUSIONRANK_CACHE"] = old


def write_atomic(
    folder: Path, name: str, n_users: int = 30, n_items: int = 40, seed: int = 0, per_user: int = 12
) -> Path:
    """A small random dataset in RecBole atomic format with items, users and timestamps."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    t = 1_000_000
    for u in range(n_users):
        for i in rng.choice(n_items, size=per_user, replace=False):
            t += int(rng.integers(1, 100))
            lines.append(f"u{u}\ti{i}\t{int(rng.integers(1, 6))}\t{t}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    genres = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi"]
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(n_items):
        items.append(f"i{i}\tFilm number {i}\t{1980 + i % 20}\t{genres[i % 5]} {genres[(i + 2) % 5]}")
    (folder / f"{name}.item").write_text("\n".join(items) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token"]
    for u in range(n_users):
        users.append(f"u{u}\t{20 + u % 40}\t{'MF'[u % 2]}\t{['student', 'writer'][u % 2]}")
    (folder / f"{name}.user").write_text("\n".join(users) + "\n")
    (folder / "dataset.json").write_text(
        json.dumps({"format": "atomic", "name": name, "profile": TINY_PROFILE})
    )
    return folder


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A data root holding the dataset ``tiny`` in atomic format."""
    write_atomic(tmp_path / "tiny", "tiny")
    return tmp_path


@pytest.fixture(scope="session")
def ml100k_root() -> Path:
    """The real MovieLens-100K (fetched once into the data directory if missing)."""
    root = Path(os.environ.get("FUSIONRANK_DATA", REPO / "data"))
    if not is_fetched(root):
        fetch_ml100k(root)
    return root


@pytest.fixture(scope="session")
def ml100k(ml100k_root: Path):
    return load_dataset("ml-100k", ml100k_root)


@pytest.fixture(scope="module")
def ray_instance():
    """A Ray instance for a test module (2 CPUs, no dashboard, its files in a short temporary
    folder); the code under test joins it because Ray is already initialised here."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp = tempfile.mkdtemp(prefix="fr-ray-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    if old is None:
        os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
    else:
        os.environ["RAY_USAGE_STATS_ENABLED"] = old
