"""Top-k recommendations from a finished ``fusionrank train`` run folder.

A user known to the run is scored by the run's model, training items excluded. A user
unknown to training (or without history) is served from side features (age, gender,
occupation) by a :class:`~fusionrank.fusion.profiles.Profile` fitted on the run's
training matrix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fusionrank.collab.base import Recommender
from fusionrank.columns import ITEM_ID, RANK, SCORE, USER_ID
from fusionrank.data.dataset import default_root, load_dataset
from fusionrank.data.idmap import IdMap
from fusionrank.data.side import user_features
from fusionrank.io import read_json


def recommend(
    run: str | Path,
    user: str,
    k: int = 10,
    root: str | Path | None = None,
    side: dict[str, str] | None = None,
) -> pd.DataFrame:
    """``rank, item_id, score`` (and ``title`` when the catalogue has one) for ``user``."""
    run = Path(run)
    if not (run / "metrics.json").exists() or not (run / "model").exists():
        raise FileNotFoundError(f"{run} is not a finished `fusionrank train` run (no metrics.json / model)")
    meta = read_json(run / "metrics.json")
    model = Recommender.load(run / "model")
    users, items = IdMap.load(run / "users.parquet"), IdMap.load(run / "items.parquet")
    train = model.train_matrix if hasattr(model, "train_matrix") else model.train
    data = load_dataset(meta["dataset"], Path(root) if root is not None else default_root())
    if user in users and train[users.to_index([user])[0]].nnz > 0:
        u = users.to_index([user])
        scores = np.array(model.score(u), dtype=np.float32)[0]
        scores[train[u[0]].indices] = -np.inf
        source = "history"
    else:
        scores = _from_side_features(train, data, users, user, side)
        source = "side features"
    top = np.argsort(-scores, kind="stable")[:k]
    out = pd.DataFrame({RANK: np.arange(1, len(top) + 1), ITEM_ID: items.to_ids(top), SCORE: scores[top]})
    if data.items is not None and "movie_title" in data.items.columns:
        from fusionrank.encoders.templates import field_text

        titles = {str(i): field_text(t) for i, t in zip(data.items[ITEM_ID], data.items["movie_title"])}
        out["title"] = [titles.get(i, "") for i in out[ITEM_ID]]
    out.attrs["source"] = source
    return out


def _from_side_features(train, data, users: IdMap, user: str, side: dict[str, str] | None) -> np.ndarray:
    from fusionrank.fusion.profiles import Profile

    if data.users is None:
        raise ValueError(f"user {user!r} has no history in this run and {data.name} has no user table")
    table = data.users.copy()
    table[USER_ID] = table[USER_ID].astype(str)
    if side:
        missing = {"age", "gender", "occupation"} - set(side)
        if missing:
            raise ValueError(f"side features need age, gender and occupation; missing {sorted(missing)}")
        table = pd.concat([table[table[USER_ID] != user], pd.DataFrame([{USER_ID: user, **side}])])
    elif user not in set(table[USER_ID]):
        raise ValueError(f"user {user!r} is unknown to the run; give --age, --gender and --occupation")
    everyone = IdMap([*users.ids, user] if user not in users else users.ids)
    features, _ = user_features(table, everyone)
    profile = Profile().fit(train, features[: train.shape[0]])
    return profile.score_features(features[everyone.to_index([user])])[0]
