"""Per-feature contributions of boosters with linear leaves (``linear_tree``).

LightGBM's TreeSHAP (``pred_contrib``) refuses linear trees, so their explanations use the
path attribution of Saabas instead: along the path a row takes through a tree, each split's
change of the node value (child's ``internal_value`` minus its parent's) goes to the
split's feature; at the leaf, the step to the leaf's constant goes to the last split's
feature and each linear term ``coefficient × value`` to its own feature. Every tree's
root value goes to ``bias``, so a row's contributions add up to its raw score exactly, as
TreeSHAP's do. Rows whose leaf features are missing get the leaf's fallback value, as
LightGBM scores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd


@dataclass
class _Leaf:
    """One leaf: the (feature, value change) steps of its path, its constant and fallback,
    and its linear model."""

    steps: list[tuple[int, float]] = field(default_factory=list)
    parent: tuple[int, float] | None = None
    """The last split's feature and node value (None: a tree that is one leaf)."""
    const: float = 0.0
    fallback: float = 0.0
    features: list[int] = field(default_factory=list)
    coeffs: list[float] = field(default_factory=list)


def _leaves(
    node: dict[str, Any],
    steps: list[tuple[int, float]],
    parent: tuple[int, float] | None,
    out: dict[int, _Leaf],
) -> None:
    """Each leaf of the subtree at ``node`` by its index (``steps``: the path's changes so far)."""
    if "leaf_index" in node:
        out[int(node["leaf_index"])] = _Leaf(
            steps,
            parent,
            float(node.get("leaf_const", node["leaf_value"])),
            float(node["leaf_value"]),
            [int(f) for f in node.get("leaf_features", [])],
            [float(c) for c in node.get("leaf_coeff", [])],
        )
        return
    feature, value = int(node["split_feature"]), float(node["internal_value"])
    for side in ("left_child", "right_child"):
        child = node[side]
        child_value = float(child["internal_value"]) if "internal_value" in child else None
        more = steps if child_value is None else [*steps, (feature, child_value - value)]
        _leaves(child, more, (feature, value), out)


def _root_value(node: dict[str, Any]) -> float:
    return float(node["internal_value"]) if "internal_value" in node else 0.0


def _numeric(x: pd.DataFrame) -> np.ndarray:
    """The features as float64 (categorical columns NaN: linear leaves never use them)."""
    columns = [
        np.full(len(x), np.nan) if isinstance(x[c].dtype, pd.CategoricalDtype) else x[c].to_numpy(np.float64)
        for c in x.columns
    ]
    return np.column_stack(columns) if columns else np.zeros((len(x), 0))


def path_contributions(booster: lgb.Booster, x: pd.DataFrame, iterations: int) -> np.ndarray:
    """``(rows, features + 1)`` contributions of each feature and (last) the bias to the
    raw score of the first ``iterations`` trees, by path attribution (module docstring)."""
    model = booster.dump_model(num_iteration=iterations)
    leaf_of = np.asarray(booster.predict(x, num_iteration=iterations, pred_leaf=True), np.int64)
    leaf_of = leaf_of.reshape(len(x), -1)
    values = _numeric(x)
    n, f = values.shape
    out = np.zeros((n, f + 1))
    rows_all = np.arange(n)
    for t, info in enumerate(cast(list[dict[str, Any]], model["tree_info"])):
        root = info["tree_structure"]
        leaves: dict[int, _Leaf] = {}
        if "leaf_index" not in root and "split_feature" not in root:  # a constant tree
            root = {**root, "leaf_index": 0}
        _leaves(root, [], None, leaves)
        for index, leaf in leaves.items():
            rows = rows_all[leaf_of[:, t] == index]
            if not len(rows):
                continue
            linear = values[np.ix_(rows, leaf.features)] if leaf.features else np.zeros((len(rows), 0))
            missing = np.isnan(linear).any(axis=1)
            base = np.where(missing, leaf.fallback, leaf.const)
            for feature, change in leaf.steps:
                out[rows, feature] += change
            if leaf.parent is None:
                out[rows, f] += base
            else:
                out[rows, f] += _root_value(root)
                out[rows, leaf.parent[0]] += base - leaf.parent[1]
            for j, (feature, coeff) in enumerate(zip(leaf.features, leaf.coeffs)):
                out[rows, feature] += np.where(missing, 0.0, coeff * np.nan_to_num(linear[:, j]))
    return out
