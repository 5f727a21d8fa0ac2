"""Per-feature contributions of boosters with linear leaves (``linear_tree``).

LightGBM's TreeSHAP (``pred_contrib``) refuses linear trees, so their explanations use the
path attribution of Saabas instead: along the path a row takes through a tree, each split's
change of the node value (child's ``internal_value`` minus its parent's) goes to the
split's feature; at the leaf, the step to the leaf's constant goes to the last split's
feature and each linear term ``coefficient × value`` to its own feature. Every tree's
root value goes to ``bias``, so a row's contributions add up to its raw score exactly, as
TreeSHAP's do. Rows with a missing value among a leaf's linear features get the leaf's
fallback value, as LightGBM scores them.

The trees are read once into arrays (:class:`PathExplainer`), so explaining a few rows,
as a served ``explain`` does, costs a gather and a sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

ROWS_PER_PASS = 64
"""Rows explained together (the gathered arrays are rows x trees x features)."""


@dataclass(frozen=True)
class PathExplainer:
    """A booster's trees as arrays over (tree, leaf): ``path`` the contributions of the
    path to the leaf's constant (features, then bias), ``coef`` the leaf's linear
    coefficients, ``uses`` which features its linear model reads, ``last`` the feature
    (or bias) that the fallback's difference from the constant goes to, ``fallback`` that
    difference."""

    path: np.ndarray  # (trees, leaves, features + 1)
    coef: np.ndarray  # (trees, leaves, features)
    uses: np.ndarray  # (trees, leaves, features) bool
    last: np.ndarray  # (trees, leaves) int
    fallback: np.ndarray  # (trees, leaves)
    booster: lgb.Booster
    iterations: int

    @classmethod
    def of(cls, booster: lgb.Booster, iterations: int) -> PathExplainer:
        """Read the first ``iterations`` trees of ``booster``."""
        model = booster.dump_model(num_iteration=iterations)
        trees = cast(list[dict[str, Any]], model["tree_info"])
        n_features = len(model["feature_names"])
        width = max([int(t["num_leaves"]) for t in trees] or [1])
        path = np.zeros((len(trees), width, n_features + 1))
        coef = np.zeros((len(trees), width, n_features))
        uses = np.zeros((len(trees), width, n_features), bool)
        last = np.full((len(trees), width), n_features, np.int64)
        fallback = np.zeros((len(trees), width))
        for t, info in enumerate(trees):
            root = info["tree_structure"]
            if "split_feature" not in root:  # a tree that is one leaf
                root = {**root, "leaf_index": root.get("leaf_index", 0)}
            bias = float(root.get("internal_value", 0.0)) if "split_feature" in root else 0.0
            for leaf, steps, parent in _leaves(root, [], None):
                index = int(leaf["leaf_index"])
                const = float(leaf.get("leaf_const", leaf["leaf_value"]))
                path[t, index, n_features] += bias
                for feature, change in steps:
                    path[t, index, feature] += change
                if parent is None:
                    path[t, index, n_features] += const
                else:
                    last[t, index] = parent[0]
                    path[t, index, parent[0]] += const - parent[1]
                fallback[t, index] = float(leaf["leaf_value"]) - const
                features = [int(f) for f in leaf.get("leaf_features", [])]
                coef[t, index, features] = [float(c) for c in leaf.get("leaf_coeff", [])]
                uses[t, index, features] = True
        return cls(path, coef, uses, last, fallback, booster, iterations)

    def __call__(self, x: pd.DataFrame) -> np.ndarray:
        """``(rows, features + 1)`` contributions (features, then bias) to the raw score."""
        leaf_of = np.asarray(self.booster.predict(x, num_iteration=self.iterations, pred_leaf=True), np.int64)
        leaf_of = leaf_of.reshape(len(x), -1)
        values = _numeric(x)
        out = np.zeros((len(x), self.path.shape[2]))
        trees = np.arange(self.path.shape[0])[None, :]
        for start in range(0, len(x), ROWS_PER_PASS):
            rows = slice(start, start + ROWS_PER_PASS)
            leaves = leaf_of[rows]
            v = values[rows][:, None, :]  # (rows, 1, features)
            missing = (self.uses[trees, leaves] & np.isnan(v)).any(axis=2)  # (rows, trees)
            linear = np.where(missing[:, :, None], 0.0, self.coef[trees, leaves] * np.nan_to_num(v))
            part = self.path[trees, leaves].sum(axis=1)
            part[:, :-1] += linear.sum(axis=1)
            shift = np.where(missing, self.fallback[trees, leaves], 0.0)  # (rows, trees)
            target = self.last[trees, leaves]
            np.add.at(part, (np.repeat(np.arange(len(shift)), shift.shape[1]), target.ravel()), shift.ravel())
            out[rows] = part
        return out


def _leaves(
    node: dict[str, Any], steps: list[tuple[int, float]], parent: tuple[int, float] | None
) -> list[tuple[dict[str, Any], list[tuple[int, float]], tuple[int, float] | None]]:
    """Each leaf under ``node`` with the (feature, value change) steps of its path to its
    parent, and that parent's split feature and value (None: ``node`` is the leaf)."""
    if "leaf_index" in node:
        return [(node, steps, parent)]
    feature, value = int(node["split_feature"]), float(node["internal_value"])
    found = []
    for side in ("left_child", "right_child"):
        child = node[side]
        more = (
            [*steps, (feature, float(child["internal_value"]) - value)] if "split_feature" in child else steps
        )
        found += _leaves(child, more, (feature, value))
    return found


def _numeric(x: pd.DataFrame) -> np.ndarray:
    """The features as float64 (categorical columns NaN: linear leaves never use them)."""
    columns = [
        np.full(len(x), np.nan) if isinstance(x[c].dtype, pd.CategoricalDtype) else x[c].to_numpy(np.float64)
        for c in x.columns
    ]
    return np.column_stack(columns) if columns else np.zeros((len(x), 0))
