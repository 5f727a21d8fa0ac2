"""Top-k recommendations from a finished run folder (``fusionrank train --out`` or
``fusionrank run``).

- A user known to a ``train`` run is scored by the run's model, training items excluded.
- A user known to a ``run`` (LTR) folder is answered by the LightGBM ranker over the
  run's test-stage candidates (features from training history; training and validation
  items excluded); ``explain=True`` adds the three features that moved each item most
  (LightGBM ``pred_contrib``).
- A user unknown to training (or without history) is served from side features (age,
  gender, occupation) by a :class:`~fusionrank.fusion.profiles.Profile` fitted on the
  run's training matrix.
- ``new_items`` ranks items that were not in training, from their text alone: the file's
  items are embedded with the dataset's text encoder and template, and their EASE columns
  are predicted from the text by the ``ease-content`` ridge map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.collab.base import Recommender
from fusionrank.columns import ITEM_ID, ITEM_IDX, RANK, SCORE, USER_ID, USER_IDX
from fusionrank.data.dataset import default_root, load_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.idmap import IdMap
from fusionrank.data.side import user_features
from fusionrank.io import read_json


def recommend(
    run: str | Path,
    user: str,
    k: int = 10,
    root: str | Path | None = None,
    side: dict[str, str] | None = None,
    explain: bool = False,
    new_items: str | Path | None = None,
) -> pd.DataFrame:
    """``rank, item_id, score`` (and ``title`` when the catalogue has one, ``why`` when
    explained) for ``user``; ``.attrs["source"]`` says what answered."""
    run = Path(run)
    if is_ltr_run(run):
        model = Recommender.load(run / "models" / "ease" / "model")
    elif (run / "metrics.json").exists() and (run / "model").exists():
        model = Recommender.load(run / "model")
    else:
        raise FileNotFoundError(
            f"{run} is not a finished `fusionrank train` run (metrics.json + model/) "
            "or `fusionrank run` folder (metrics.json + ranker/)"
        )
    if explain and not is_ltr_run(run):
        raise ValueError("--explain needs a `fusionrank run` folder (a LightGBM ranker explains its scores)")
    meta = read_json(run / "metrics.json")
    users, items = IdMap.load(run / "users.parquet"), IdMap.load(run / "items.parquet")
    train = model.train_matrix if hasattr(model, "train_matrix") else model.train
    data = load_dataset(meta["dataset"], Path(root) if root is not None else default_root())
    known = user in users and train[users.to_index([user])[0]].nnz > 0
    if new_items is not None:
        if not known:
            raise ValueError(f"user {user!r} has no history in this run; new items are ranked from history")
        out = _new_items(train, data, items, users.to_index([user])[0], Path(new_items), k, root)
        out.attrs["source"] = f"content of {Path(new_items).name} (ease-content)"
        return out
    if known and is_ltr_run(run):
        out = _from_ranker(run, users.to_index([user])[0], items, k, explain)
        out.attrs["source"] = "LightGBM ranker"
        return _with_titles(out, data)
    if known:
        u = users.to_index([user])
        scores = np.array(model.score(u), dtype=np.float32)[0]
        scores[train[u[0]].indices] = -np.inf
        source = "history"
    else:
        scores = _from_side_features(train, data, users, user, side)
        source = "side features"
    top = np.argsort(-scores, kind="stable")[:k]
    out = pd.DataFrame({RANK: np.arange(1, len(top) + 1), ITEM_ID: items.to_ids(top), SCORE: scores[top]})
    out = _with_titles(out, data)
    out.attrs["source"] = source
    return out


def is_ltr_run(run: Path) -> bool:
    return (run / "ranker" / "ranker.json").exists() and (run / "features" / "features_test.parquet").exists()


def _with_titles(out: pd.DataFrame, data, titles_of: pd.DataFrame | None = None) -> pd.DataFrame:
    table = titles_of if titles_of is not None else data.items
    if table is not None and "movie_title" in table.columns:
        from fusionrank.encoders.templates import field_text

        titles = {str(i): field_text(t) for i, t in zip(table[ITEM_ID], table["movie_title"])}
        out["title"] = [titles.get(str(i), "") for i in out[ITEM_ID]]
    return out


def _from_ranker(run: Path, user: int, items: IdMap, k: int, explain: bool) -> pd.DataFrame:
    from fusionrank.ranker.lgbm import LTRRanker

    rows = pd.read_parquet(run / "features" / "features_test.parquet", filters=[(USER_IDX, "==", int(user))])
    if rows.empty:
        raise ValueError(f"user index {user} has no candidates in {run}")
    ranker = LTRRanker.load(run / "ranker")
    scores = ranker.predict(rows)
    top = np.argsort(-scores, kind="stable")[:k]
    out = pd.DataFrame(
        {
            RANK: np.arange(1, len(top) + 1),
            ITEM_ID: items.to_ids(rows[ITEM_IDX].to_numpy()[top]),
            SCORE: scores[top],
        }
    )
    if explain:
        contrib = ranker.contributions(rows.iloc[top]).drop(columns="bias")
        out["why"] = [
            ", ".join(f"{f} {c:+.2f}" for f, c in r.sort_values(key=np.abs, ascending=False).head(3).items())
            for _, r in contrib.iterrows()
        ]
    return out


def _new_items(train, data, items: IdMap, user: int, path: Path, k: int, root) -> pd.DataFrame:
    """Rank the catalogue in ``path`` for ``user`` from text alone (ease-content)."""
    from fusionrank.data.loaders import load_catalogue
    from fusionrank.encoders.templates import compose_text
    from fusionrank.encoders.text import TextEncoder
    from fusionrank.fusion.cold_items import EASEContent
    from fusionrank.fusion.content import TEXT_FIELDS, Content, load_content

    catalogue = load_catalogue(path)
    fields = [f for f in TEXT_FIELDS if f in catalogue.columns]
    if not fields:
        raise DataError(f"new items need at least one text column of {list(TEXT_FIELDS)}", file=path)
    texts = [compose_text(row, fields) for row in catalogue.to_dict("records")]
    empty = [r for r, t in enumerate(texts) if not t]
    if empty:
        raise DataError("item has no text", file=path, row=empty[0] + 1, column=fields[0])
    root = Path(root) if root is not None else default_root()
    old = load_content(root, data.name, items, ("text",))
    new = TextEncoder().encode(texts)  # L2-normalised, like the dataset's text vectors
    vectors = np.vstack([old.vectors, new.astype(old.vectors.dtype)])
    padded = sp.hstack([train, sp.csr_matrix((train.shape[0], len(new)), dtype=np.float32)]).tocsr()
    model = EASEContent().fit(padded, Content(vectors, np.ones(len(vectors), bool), ("text",)))
    scores = model.score(np.array([user]))[0, train.shape[1] :]
    top = np.argsort(-scores, kind="stable")[:k]
    out = pd.DataFrame(
        {RANK: np.arange(1, len(top) + 1), ITEM_ID: catalogue[ITEM_ID].to_numpy()[top], SCORE: scores[top]}
    )
    return _with_titles(out, data, catalogue)


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
