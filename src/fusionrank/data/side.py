"""Side information derived from catalogue and user tables, driven by the dataset profile:
category (genre) matrices, one-hot user side features, and item domains from a rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import ITEM_ID, USER_ID
from fusionrank.data.idmap import IdMap
from fusionrank.data.text import field_text


def genre_list(value: Any) -> list[str]:
    """The genres of one catalogue cell: a list, or a space-separated string (empty: none).

    >>> genre_list("Drama War"), genre_list(["Comedy"]), genre_list(None)
    (['Drama', 'War'], ['Comedy'], [])
    """
    return field_text(value).split()


def genre_matrix(items: pd.DataFrame, index: IdMap, column: str) -> tuple[sp.csr_matrix, list[str]]:
    """(n_items, n_genres) 0/1 matrix in ``index`` order, and the genre names.

    >>> items = pd.DataFrame({"item_id": ["a", "b"], "genres": [["Drama"], ["Drama", "War"]]})
    >>> m, names = genre_matrix(items, IdMap(["b", "a"]), "genres")
    >>> names, m.toarray().tolist()
    (['Drama', 'War'], [[1.0, 1.0], [1.0, 0.0]])
    """
    genres_of = {str(i): genre_list(g) for i, g in zip(items[ITEM_ID], items[column])}
    names = sorted({g for gs in genres_of.values() for g in gs})
    col = {g: k for k, g in enumerate(names)}
    rows, cols = [], []
    for r, item in enumerate(index.ids):
        for g in genres_of.get(str(item), []):
            rows.append(r)
            cols.append(col[g])
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(index), len(names)))
    return m, names


def genre_rows(rows: Sequence[Mapping[str, Any]], column: str, names: Sequence[str]) -> np.ndarray:
    """(len(rows), len(names)) 0/1 genres of catalogue rows (new items) over the genre
    ``names`` of :func:`genre_matrix`; a genre not among them is left out.

    >>> genre_rows([{"genres": "Drama War"}, {"genres": ["Comedy"]}, {}], "genres", ["Drama", "War"]).tolist()
    [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    """
    col = {g: k for k, g in enumerate(names)}
    out = np.zeros((len(rows), len(names)), np.float32)
    for r, row in enumerate(rows):
        for g in genre_list(row.get(column)):
            if g in col:
                out[r, col[g]] = 1.0
    return out


def bucket(value: float, bounds: Sequence[float]) -> int:
    """Index of the bucket of ``value`` given ascending upper bounds (``len(bounds) + 1`` buckets).

    >>> [bucket(a, (18, 25, 35)) for a in (10, 18, 30, 60)]
    [0, 1, 2, 3]
    """
    return int(np.searchsorted(bounds, value, side="right"))


def feature_values(
    table: pd.DataFrame, columns: Sequence[str], buckets: Mapping[str, Sequence[float]]
) -> pd.DataFrame:
    """The one-hot value names of each user's side features: ``col=value`` for categories,
    ``col<bucket>`` for bucketed numbers (e.g. ``age2``), indexed by user id."""
    table = table.assign(**{USER_ID: table[USER_ID].astype(str)}).set_index(USER_ID)
    out = pd.DataFrame(index=table.index)
    for col in columns:
        if col in buckets:
            numbers = pd.to_numeric(table[col], errors="coerce")
            out[col] = [f"{col}{bucket(v, buckets[col])}" if pd.notna(v) else None for v in numbers]
        else:
            out[col] = [f"{col}={v}" if pd.notna(v) and str(v) != "" else None for v in table[col]]
    return out


def feature_names(values: pd.DataFrame) -> list[str]:
    """Sorted one-hot names seen in a :func:`feature_values` table."""
    return sorted({v for col in values.columns for v in values[col] if v is not None})


def one_hot(values: pd.DataFrame, ids: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(len(ids), len(names)) 0/1 rows for ``ids`` (unknown ids and unseen values are zero)."""
    col = {n: k for k, n in enumerate(names)}
    out = np.zeros((len(ids), len(names)), dtype=np.float32)
    for r, user in enumerate(ids):
        if user in values.index:
            for v in values.loc[user]:
                if v is not None and v in col:
                    out[r, col[v]] = 1.0
    return out


def user_features(
    users: pd.DataFrame, index: IdMap, columns: Sequence[str], buckets: Mapping[str, Sequence[float]]
) -> tuple[np.ndarray, list[str]]:
    """One-hot side features per user in ``index`` order, and their names; users missing
    from the table are all zero."""
    values = feature_values(users, columns, buckets)
    names = feature_names(values)
    return one_hot(values, [str(u) for u in index.ids], names), names


def item_domains(items: pd.DataFrame, rule: Mapping[str, Sequence[str]], column: str) -> pd.Series:
    """Domain per item id by the rule (first domain whose categories match); items in no
    domain are absent from the result.

    >>> items = pd.DataFrame({"item_id": ["a", "b", "c"], "g": [["Drama"], ["Action", "Drama"], ["War"]]})
    >>> item_domains(items, {"A": ("Drama",), "B": ("Action",)}, "g").to_dict()
    {'a': 'A', 'b': 'A'}
    """
    out = {}
    for item, g in zip(items[ITEM_ID].astype(str), items[column]):
        genres = set(genre_list(g))
        for domain, wanted in rule.items():
            if genres & set(wanted):
                out[item] = domain
                break
    return pd.Series(out, name="domain", dtype=object)
