"""The one model contract: ``fit(split)``, ``score(users)``, ``recommend(user_ids, k)``,
``save(folder)`` / :meth:`Recommender.load`.

Every model — collaborative, neighbourhood, content, hybrid, profile, cross-domain, or a
user's own class named by its dotted path — subclasses :class:`Recommender`. ``fit``
takes a :class:`~fusionrank.data.splits.Split` and reads what the model needs from it:
train (and valid, for early stopping), content vectors, side features and domains come
through the split's dataset, never as extra arguments. Inside, a model works with
internal indices; external ids are mapped here, at the boundary.

On disk a model is a folder: ``config.json`` (dotted class path, registry name, config,
sizes), ``weights.safetensors`` (arrays only: nothing is unpickled) and the id maps
``users.parquet`` / ``items.parquet``.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from fusionrank.capabilities import ServesUnknownUsers
from fusionrank.columns import ITEM_ID, RANK, SCORE, TRAIN, USER_ID, VALID
from fusionrank.data.errors import DataError
from fusionrank.data.idmap import IdMap
from fusionrank.errors import FusionRankError, InvalidArgumentError, MissingInputError, NotFittedError
from fusionrank.io import atomic_path, read_json, write_json
from fusionrank.scoring import top_k
from fusionrank.settings import build_settings

if TYPE_CHECKING:
    from fusionrank.data.splits import Split

Stage = Literal["valid", "test"]
_R = TypeVar("_R", bound="Recommender")


class UnknownUserError(FusionRankError, ValueError):
    """A user id the model was not fitted on, and the model has no cold-start path for it."""


class Recommender(ABC):
    """Base class of every model.

    Subclasses set ``config_class`` (a frozen dataclass) and implement :meth:`_fit` and
    :meth:`score`. Optional hooks: :meth:`at_stage` (models that read history as a
    sequence) and :meth:`state` / :meth:`load_state` for persistence. Abilities beyond the
    contract (a cold-start path, item-item weights, vectors, scoring new items) are the
    protocols of :mod:`fusionrank.capabilities`: a model has one by defining its method.
    """

    config_class: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.name = type(self).__name__.lower()
        """The registry name the model was built under (reports and saved folders use it)."""
        self.users: IdMap | None = None
        self.items: IdMap | None = None
        self.n_users = 0
        self.n_items = 0
        self.seen: sp.csr_matrix | None = None
        """Users x items the model saw when fitted (train + valid); excluded by ``recommend``."""
        self.fit_seconds = 0.0
        self.history: dict[str, Any] | None = None
        """Training history of models with a training loop (epochs, best epoch, valid metric)."""

    # --- the contract -------------------------------------------------------------------
    def fit(self: _R, split: Split) -> _R:
        """Learn from ``split.train`` (and ``split.valid`` where the model stops early);
        returns self. Refitting starts from scratch."""
        t0 = time.perf_counter()
        self.users, self.items = split.users, split.items
        self.n_users, self.n_items = split.n_users, split.n_items
        self.seen = split.matrix(TRAIN, VALID)
        self.history = None
        self._fit(split)
        self.fit_seconds = time.perf_counter() - t0
        return self

    @abstractmethod
    def _fit(self, split: Split) -> None:
        """Model-specific fitting (the ids, sizes and seen matrix are already set)."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for user indices ``users``, shape (len(users), n_items),
        float32; ``-inf`` for items the model cannot score."""

    def at_stage(self, stage: Stage) -> None:  # noqa: B027 - a hook; most models have no stages
        """Score as of ``stage``: history up to train (``valid``) or up to valid (``test``,
        the state after ``fit``). Only models that read history as a sequence differ."""

    # --- the public, id-level API -------------------------------------------------------
    def recommend(
        self,
        users: Sequence[str] | str,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        user_features: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Top-``k`` items per user as ``user_id, item_id, score, rank`` (external ids, rank 1
        is best), users in the order given. Items the user saw in training are excluded
        unless ``exclude_seen`` is false. A user unknown to training goes to the model's
        cold-start path (:class:`~fusionrank.capabilities.ServesUnknownUsers`;
        ``user_features``: a table with ``user_id`` and side columns), or raises
        :class:`UnknownUserError`.

        >>> import tempfile, pandas as pd, fusionrank as fr
        >>> events = pd.DataFrame({"user_id": list("aabbbcc"), "item_id": list("xyxyzyz")})
        >>> split = fr.split(fr.Dataset.from_files(events, cache_dir=tempfile.mkdtemp()), "leave-last")
        >>> fr.build_model("pop").fit(split).recommend(["a"], k=2)  # "a" saw x in training
          user_id item_id  score  rank
        0       a       y    1.0     1
        1       a       z    0.0     2
        """
        self._check_fitted()
        if isinstance(users, str):
            users = [users]
        if k < 1:
            raise InvalidArgumentError(f"k must be >= 1, got {k}")
        ids = [str(u) for u in users]
        assert self.users is not None and self.items is not None  # noqa: S101 - checked above
        index = self.users.to_index(ids, missing=-1)
        known = index >= 0
        frames = []
        if known.any():
            rows = index[known]
            idx, vals = top_k(self.score, rows, k, self.seen if exclude_seen else None)
            frames.append(_top_frame(np.asarray(ids, dtype=object)[known], idx, vals))
        if (~known).any():
            unknown = [u for u, ok in zip(ids, known) if not ok]
            if not isinstance(self, ServesUnknownUsers):
                raise UnknownUserError(
                    f"{self.name}: user(s) {unknown[:5]} were not in training and this model has no "
                    "cold-start path; use a model that serves new users from side features (e.g. 'profile')"
                )
            scores = np.asarray(self.score_unknown(unknown, user_features), dtype=np.float32)
            idx, vals = top_k(lambda r: scores[r], np.arange(len(unknown)), k)
            frames.append(_top_frame(np.asarray(unknown, dtype=object), idx, vals))
        out = pd.concat(frames, ignore_index=True)
        out[ITEM_ID] = self.items.to_ids(out[ITEM_ID].to_numpy())
        order = {u: n for n, u in enumerate(dict.fromkeys(ids))}
        out = out.sort_values([USER_ID, RANK], key=lambda c: c.map(order) if c.name == USER_ID else c)
        return out.reset_index(drop=True)

    # --- checks used by subclasses -------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.items is None or self.n_items == 0:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(split) first")

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(
                f"user index out of range [0, {self.n_users}); unknown users need a cold-start model"
            )
        return users

    # --- persistence ---------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that, with the config, restore the fitted model."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved (no state())")

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded (no load_state())")

    def meta(self) -> dict[str, Any]:
        """JSON values that, with :meth:`state`, restore the model (names, settings found in fit)."""
        return {}

    def load_meta(self, meta: dict[str, Any]) -> None:  # noqa: B027 - a hook
        """Restore what :meth:`meta` saved (called before :meth:`load_state`)."""

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json``, ``weights.safetensors`` and the id maps into ``folder``.

        Scores after :func:`fusionrank.load_model` are identical."""
        self._check_fitted()
        assert self.users is not None and self.items is not None and self.seen is not None  # noqa: S101
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in self.state().items()}
        arrays.update(csr_to_arrays("seen", self.seen))
        with atomic_path(folder / "weights.safetensors") as tmp:
            save_file(arrays, str(tmp))
        self.users.save(folder / "users.parquet")
        self.items.save(folder / "items.parquet")
        cls = type(self)
        write_json(
            folder / "config.json",
            {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "name": self.name,
                "config": dataclasses.asdict(self.config),
                "n_users": self.n_users,
                "n_items": self.n_items,
                "fit_seconds": self.fit_seconds,
                "history": self.history,
                "meta": self.meta(),
            },
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path, model_class: type | None = None) -> Recommender:
        """Load a model saved by :meth:`save` as ``model_class`` (default: the class this is
        called on). ``fr.load_model(folder)`` finds the class from the saved dotted path."""
        folder = Path(folder)
        meta = saved_config(folder)
        model_cls = model_class or (cls if cls is not Recommender else None)
        if model_cls is None:
            raise InvalidArgumentError(
                "Recommender.load needs the model's class; fr.load_model(folder) finds it in the saved model"
            )
        if not (isinstance(model_cls, type) and issubclass(model_cls, Recommender)):
            raise TypeError(f"{meta['class']} is not a Recommender")
        config = build_settings(model_cls.config_class, meta["config"], owner=str(folder / "config.json"))
        model = model_cls(config)
        model.name = meta.get("name", model.name)
        model.users = _read_saved(folder / "users.parquet", IdMap.load)
        model.items = _read_saved(folder / "items.parquet", IdMap.load)
        model.n_users, model.n_items = meta["n_users"], meta["n_items"]
        model.fit_seconds = meta.get("fit_seconds", 0.0)
        model.history = meta.get("history")
        weights = folder / "weights.safetensors"
        arrays = _read_saved(weights, lambda path: load_file(str(path)))
        try:
            model.seen = csr_from_arrays("seen", arrays)
            model.load_meta(meta.get("meta") or {})
            model.load_state(arrays)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise DataError(
                f"saved weights do not fit the model ({exc}); save it again", file=weights
            ) from exc
        return model


def saved_config(folder: Path) -> dict[str, Any]:
    """A saved model's ``config.json`` (its class path, name, config and sizes)."""
    if not (folder / "config.json").exists():
        raise MissingInputError(f"{folder} is not a saved model (no config.json)")
    config: dict[str, Any] = _read_saved(folder / "config.json", read_json)
    return config


def _read_saved(path: Path, read: Callable[[Path], Any]) -> Any:
    """Read one file of a saved model; a missing, truncated or damaged file is a DataError."""
    if not path.exists():
        raise DataError(
            "missing from the saved model (it was not saved completely); save it again", file=path
        )
    try:
        return read(path)
    except Exception as exc:  # each reader has its own error types (JSON, Arrow, safetensors)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"the saved model's file is damaged or truncated ({reason}); save it again", file=path
        ) from exc


def _top_frame(user_ids: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> pd.DataFrame:
    keep = idx >= 0
    ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)
    return pd.DataFrame(
        {
            USER_ID: np.repeat(user_ids, idx.shape[1])[keep.ravel()],
            ITEM_ID: idx[keep],
            SCORE: vals[keep].astype(np.float32),
            RANK: ranks[keep].astype(np.int64),
        }
    )


def csr_to_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Flatten a CSR matrix into named arrays for safetensors."""
    csr = sp.csr_matrix(m)
    return {
        f"{prefix}.data": csr.data.astype(np.float32),
        f"{prefix}.indices": csr.indices.astype(np.int64),
        f"{prefix}.indptr": csr.indptr.astype(np.int64),
        f"{prefix}.shape": np.asarray(csr.shape, np.int64),
    }


def csr_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    n_rows, n_cols = (int(x) for x in arrays[f"{prefix}.shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
        shape=(n_rows, n_cols),
    )
