"""The common shape of every recommender: fit on a user x item matrix, score users.

A model holds internal indices only; external ids are mapped at the boundary by the
caller (``fusionrank.data.splits.Split`` holds the id maps). On disk a model is a folder
with ``config.json`` (its dotted class path and config) and ``weights.safetensors``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from fusionrank.io import atomic_path, read_json, write_json


class Recommender(ABC):
    """Base class: ``fit(train)`` then ``score(users) -> (len(users), n_items)`` float32."""

    config_class: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.n_users = 0
        self.n_items = 0

    @abstractmethod
    def fit(self, train: sp.csr_matrix) -> Recommender:
        """Learn from a binary user x item training matrix; returns self."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for the given user indices, shape (len(users), n_items)."""

    def _check_fitted(self) -> None:
        if self.n_items == 0:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(
                f"user index out of range [0, {self.n_users}); unknown users need a cold-start model"
            )
        return users

    # --- persistence -----------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that, with the config, restore the fitted model."""
        raise NotImplementedError

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``weights.safetensors`` into ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in self.state().items()}
        with atomic_path(folder / "weights.safetensors") as tmp:
            save_file(arrays, str(tmp))
        cls = type(self)
        write_json(
            folder / "config.json",
            {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "config": asdict(self.config) if is_dataclass(self.config) else {},
                "n_users": self.n_users,
                "n_items": self.n_items,
                **self.extra_config(),
            },
        )

    def extra_config(self) -> dict[str, Any]:
        """More JSON settings to save beside the config (e.g. the training settings)."""
        return {}

    @classmethod
    def from_saved(cls, config: Any, meta: dict[str, Any]) -> Recommender:
        """An unfitted instance from a saved config (hook for models with more settings)."""
        return cls(config)

    @classmethod
    def load(cls, folder: str | Path) -> Recommender:
        """Load a model saved by :meth:`save`; the class comes from its dotted path."""
        folder = Path(folder)
        meta = read_json(folder / "config.json")
        module, _, name = meta["class"].rpartition(".")
        if not module.startswith("fusionrank."):
            raise ValueError(f"refusing to load class {meta['class']!r} from outside fusionrank")
        model_cls = getattr(importlib.import_module(module), name)
        if not (isinstance(model_cls, type) and issubclass(model_cls, cls)):
            raise TypeError(f"{meta['class']} is not a {cls.__name__}")
        known = {f.name for f in fields(model_cls.config_class)}
        config = model_cls.config_class(**{k: _tuple(v) for k, v in meta["config"].items() if k in known})
        model = model_cls.from_saved(config, meta)
        model.n_users, model.n_items = meta["n_users"], meta["n_items"]
        model.load_state(load_file(str(folder / "weights.safetensors")))
        return model


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def csr_to_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Flatten a CSR matrix into named arrays for safetensors."""
    m = sp.csr_matrix(m)
    return {
        f"{prefix}.data": m.data.astype(np.float32),
        f"{prefix}.indices": m.indices.astype(np.int64),
        f"{prefix}.indptr": m.indptr.astype(np.int64),
        f"{prefix}.shape": np.asarray(m.shape, np.int64),
    }


def csr_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}.shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]), shape=shape
    )
