"""Top-k recommendations from a finished run folder (``fusionrank train --out`` or
``fusionrank run``).

- A user known to a ``train`` run is scored by the run's model, seen items excluded.
- A user known to a ``run`` (LTR) folder is answered by the LightGBM ranker over the
  run's test-stage candidates (features from training history; training and validation
  items excluded); ``explain=True`` adds the three features that moved each item most
  (LightGBM ``pred_contrib``).
- A user unknown to training is served by the model's cold-start path, or else from side
  features (the dataset profile's user columns) by a ``profile`` model fitted on the run's
  split; the features come from ``user_features`` or the dataset's user table.
- ``new_items`` ranks items that were not in training, from their text alone: the file's
  items are embedded with the dataset's text template and encoder, and scored by the
  ``ease-content`` ridge map fitted on the run's split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from fusionrank.capabilities import ScoresNewItems, ServesUnknownUsers
from fusionrank.columns import ITEM_ID, ITEM_IDX, RANK, SCORE, USER_ID
from fusionrank.data.dataset import Dataset, load_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.idmap import IdMap
from fusionrank.data.splits import Split, SplitConfig, prepare_split
from fusionrank.errors import InvalidArgumentError, MissingInputError
from fusionrank.io import read_json, require_complete
from fusionrank.pipelines.evaluate import RUN_SOURCE, content_needed
from fusionrank.pipelines.stages.embed import embed_content
from fusionrank.recommender import Recommender, UnknownUserError
from fusionrank.registry import DEFAULT_MODELS, build_model, load_model
from fusionrank.scoring import ranked_order

SHOWN = (RANK, ITEM_ID, SCORE)


def recommend(
    run: str | Path,
    user: str,
    k: int = 10,
    root: str | Path | None = None,
    user_features: dict[str, Any] | None = None,
    explain: bool = False,
    new_items: str | Path | None = None,
) -> pd.DataFrame:
    """``rank, item_id, score`` (and ``title`` when the dataset profile names one, ``why``
    when explained) for ``user``; ``.attrs["source"]`` says what answered."""
    run = Path(run)
    ltr = is_ltr_run(run)
    if not ltr and not (run / "model" / "config.json").exists():
        raise MissingInputError(
            f"{run} is not a finished `fusionrank train --out` folder (model/)"
            " or `fusionrank run` folder (ranker/)"
        )
    for finished in (run / "features", run / "ranker") if ltr else (run,):  # not killed mid-write
        require_complete(finished, "the run folder" if ltr else "the train folder")
    if explain and not ltr:
        raise InvalidArgumentError(
            "--explain needs a `fusionrank run` folder (a LightGBM ranker explains its scores)"
        )
    data, split = open_run_split(run, root)  # the run's id maps are the split's
    users = split.users
    known = user in users and split.matrix("train")[users.to_index([user])[0]].nnz > 0
    if new_items is not None:
        if not known:
            raise InvalidArgumentError(
                f"user {user!r} has no history in this run; new items are ranked from history"
            )
        name, _ = DEFAULT_MODELS["new items"]
        out = _new_items(data, split, user, Path(new_items), k)
        out.attrs["source"] = f"content of {Path(new_items).name} ({name})"
        return out
    side = pd.DataFrame([{USER_ID: user, **user_features}]) if user_features else None
    if known and ltr:
        out = _from_ranker(run, users.to_index([user])[0], split.items, k, explain)
        source = "LightGBM ranker"
    else:
        model = None if ltr else load_model(run / "model")
        if model is not None and (known or has_cold_path(model)):
            out = model.recommend([user], k, user_features=side)[list(SHOWN)]
            source = "history" if known else f"{model.name}'s side features"
        else:
            out, source = _from_side_features(split, user, side, k), "side features"
    out = _with_titles(out.head(k).reset_index(drop=True), data)
    out.attrs["source"] = source
    return out


def is_ltr_run(run: Path) -> bool:
    return (run / "ranker" / "ranker.json").exists() and (run / "features" / "features_test.parquet").exists()


def open_run_split(run: Path, root: str | Path | None = None) -> tuple[Dataset, Split]:
    """The dataset and split a run folder was made from (``config.json`` of a ``run``,
    ``source.json`` of a ``train --out`` folder)."""
    if is_ltr_run(run):
        from fusionrank.pipelines.config import parse_run_config

        config = parse_run_config(read_json(run / "config.json"), str(run / "config.json"))
        if root is not None and isinstance(config.dataset, str):
            data = load_dataset(config.dataset, root)
        else:
            data = config.open_dataset()
        return data, prepare_split(data, config.split)
    source = read_json(run / RUN_SOURCE)
    data = load_dataset(source["dataset"], root if root is not None else source["root"])
    return data, prepare_split(data, SplitConfig.from_json(source["split"]))


def _with_titles(out: pd.DataFrame, data: Dataset, titles_of: pd.DataFrame | None = None) -> pd.DataFrame:
    from fusionrank.data.text import field_text

    table = titles_of if titles_of is not None else data.items
    column = data.profile.title
    if table is not None and column and column in table.columns:
        titles = {str(i): field_text(t) for i, t in zip(table[ITEM_ID], table[column])}
        out["title"] = [titles.get(str(i), "") for i in out[ITEM_ID]]
    return out


def _from_ranker(run: Path, user: int, items: IdMap, k: int, explain: bool) -> pd.DataFrame:
    from fusionrank.features.shards import ShardedTable
    from fusionrank.ranker.lgbm import LTRRanker

    rows = ShardedTable(run / "features" / "features_test.parquet").read_users([int(user)])
    if rows.empty:
        raise InvalidArgumentError(f"user index {user} has no candidates in {run}")
    ranker = LTRRanker.load(run / "ranker")
    scores = ranker.predict(rows)
    top = ranked_order(scores, k)  # the rows are in item order: ties go to the smaller index
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


def _new_items(data: Dataset, split: Split, user: str, path: Path, k: int) -> pd.DataFrame:
    """Rank the catalogue in ``path`` for ``user`` from text alone (ease-content)."""
    from fusionrank.data.loaders import load_catalogue
    from fusionrank.data.text import compose_text, template_fields
    from fusionrank.encoders.engine import build_encoder, embed_config

    template = data.profile.text
    if not template:
        raise InvalidArgumentError(
            f"dataset {data.name!r} has no text template: new items are ranked from their text"
        )
    catalogue = load_catalogue(path)
    for col in template_fields(template):
        if col not in catalogue.columns:
            raise DataError(
                f"the dataset's text template needs this column; the file has {list(catalogue.columns)}",
                file=path,
                column=col,
            )
    records = cast(list[dict[str, Any]], catalogue.to_dict("records"))  # the catalogue's columns are str
    texts = [compose_text(row, template=template) for row in records]
    empty = [r for r, t in enumerate(texts) if not t]
    if empty:
        raise DataError("item has no text", file=path, row=empty[0] + 1, column=template_fields(template)[0])
    name, settings = DEFAULT_MODELS["new items"]
    model = build_model(name, **settings)
    embed_content(data, content_needed([model]))
    model.fit(split)
    if not isinstance(model, ScoresNewItems):
        raise InvalidArgumentError(f"{name} cannot score new items from their content")
    vectors = build_encoder(embed_config(data, "text")).encode(texts)
    scores = model.score_content(split.users.to_index([user]), vectors)[0]
    top = ranked_order(scores, k)  # ties go to the earlier catalogue row
    out = pd.DataFrame(
        {RANK: np.arange(1, len(top) + 1), ITEM_ID: catalogue[ITEM_ID].to_numpy()[top], SCORE: scores[top]}
    )
    return _with_titles(out, data, catalogue)


def has_cold_path(model: Recommender) -> bool:
    """Whether the model serves users without history itself."""
    return isinstance(model, ServesUnknownUsers)


def _from_side_features(split: Split, user: str, side: pd.DataFrame | None, k: int) -> pd.DataFrame:
    """A model serving users from side features (``profile``), fitted on the run's split."""
    name, settings = DEFAULT_MODELS["unknown users"]
    profile = build_model(name, defaults={"progress": False, "seed": split.config.seed}, **settings).fit(
        split
    )
    try:
        recs = profile.recommend([user], k, user_features=side)
    except UnknownUserError as exc:
        raise InvalidArgumentError(f"user {user!r} is unknown to the run: {exc}") from exc
    return recs[list(SHOWN)]
