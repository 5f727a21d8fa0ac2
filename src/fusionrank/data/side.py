"""Side information derived from catalogue and user tables: genre matrices, age buckets,
one-hot user features, and the two-domain rule of the cross-domain protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import ITEM_ID, USER_ID
from fusionrank.data.idmap import IdMap
from fusionrank.encoders.templates import field_text

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
"""Upper bounds of MovieLens' age groups: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+."""

DOMAIN_RULE = {"A": ("Drama", "Romance", "Comedy"), "B": ("Action", "Adventure", "Sci-Fi", "Thriller")}
"""Cross-domain rule on ml-100k genres: an item goes to the first domain (A, then B) that
one of its genres matches; items matching neither are left out of the protocol."""


def genre_matrix(items: pd.DataFrame, index: IdMap, column: str = "class") -> tuple[sp.csr_matrix, list[str]]:
    """(n_items, n_genres) 0/1 matrix in ``index`` order, and the genre names."""
    genres_of = {str(i): field_text(g).split() for i, g in zip(items[ITEM_ID], items[column])}
    names = sorted({g for gs in genres_of.values() for g in gs})
    col = {g: k for k, g in enumerate(names)}
    rows, cols = [], []
    for r, item in enumerate(index.ids):
        for g in genres_of.get(str(item), []):
            rows.append(r)
            cols.append(col[g])
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(index), len(names)))
    return m, names


def age_bucket(age: float) -> int:
    """Index of the MovieLens age group of ``age``."""
    return int(np.searchsorted(AGE_BUCKETS, age, side="right"))


def user_features(users: pd.DataFrame, index: IdMap) -> tuple[np.ndarray, list[str]]:
    """One-hot (age bucket, gender, occupation) per user in ``index`` order; unknown users are zero."""
    table = users.assign(**{USER_ID: users[USER_ID].astype(str)}).set_index(USER_ID)
    buckets = table["age"].astype(float).map(age_bucket).astype(str).radd("age")
    gender = table["gender"].astype(str).radd("gender=")
    occupation = table["occupation"].astype(str).radd("occupation=")
    names = sorted(set(buckets) | set(gender) | set(occupation))
    col = {n: k for k, n in enumerate(names)}
    out = np.zeros((len(index), len(names)), dtype=np.float32)
    for r, user in enumerate(index.ids):
        if user in table.index:
            for n in (buckets[user], gender[user], occupation[user]):
                out[r, col[n]] = 1.0
    return out, names


def item_domains(
    items: pd.DataFrame, rule: dict[str, tuple[str, ...]] = DOMAIN_RULE, column: str = "class"
) -> pd.Series:
    """Domain per item id by the rule; items in no domain are absent from the result."""
    out = {}
    for item, g in zip(items[ITEM_ID].astype(str), items[column]):
        genres = set(field_text(g).split())
        for domain, wanted in rule.items():
            if genres & set(wanted):
                out[item] = domain
                break
    return pd.Series(out, name="domain")
