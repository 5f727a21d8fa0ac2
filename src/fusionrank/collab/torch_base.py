"""Base for the neural recommenders: holds the module, runs the shared trainer, saves
weights as safetensors and exports user/item embeddings."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fusionrank.collab.base import Recommender
from fusionrank.collab.negatives import NegativeSampler
from fusionrank.collab.trainer import Trainable, TrainConfig, TrainHistory, seed_everything, train_loop


class TorchRecommender(Recommender, Trainable):
    """A recommender trained by :func:`fusionrank.collab.trainer.train_loop`.

    Subclasses set ``default_train`` (good settings on ml-100k), build their module in
    :meth:`build`, and implement ``training_batches`` / ``batch_loss`` / ``score``.
    """

    default_train: ClassVar[TrainConfig] = TrainConfig()

    def __init__(self, config: Any = None, train_config: TrainConfig | None = None) -> None:
        super().__init__(config)
        self.train_config = train_config or self.default_train
        self.history: TrainHistory | None = None
        self.module: torch.nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.train_config.device)

    def build(self) -> torch.nn.Module:  # pragma: no cover - each model builds its own
        raise NotImplementedError

    def prepare(self, train: sp.csr_matrix, interactions: pd.DataFrame | None) -> None:
        """Per-model data preparation before training (graphs, sequences...)."""
        self.train_matrix = train
        self.sampler = NegativeSampler(train, self.train_config.negatives)

    def fit(
        self,
        train: sp.csr_matrix,
        valid: sp.csr_matrix | None = None,
        interactions: pd.DataFrame | None = None,
    ) -> TorchRecommender:
        """Train on ``train`` (users x items); with ``valid``, stop early on the validation
        metric and restore the best epoch. ``interactions`` (with ``user_idx``, ``item_idx``,
        ``timestamp``) is needed by sequential models."""
        train = sp.csr_matrix(train, dtype=np.float32)
        self.n_users, self.n_items = train.shape
        seed_everything(self.train_config.seed)
        self.prepare(train, interactions)
        self.module = self.build().to(self.device)
        self.history = train_loop(
            self, self.train_config, valid, train if valid is not None else None, desc=type(self).__name__
        )
        return self

    def _check_fitted(self) -> None:
        if self.module is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # embeddings for fusion and retrieval
    def user_embeddings(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no user embeddings; use score()")

    def item_embeddings(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no item embeddings; use score()")

    # persistence: module weights + whatever the model needs to score
    def state(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        arrays = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        arrays.update(self.extra_state())
        return arrays

    def extra_state(self) -> dict[str, np.ndarray]:
        m = sp.csr_matrix(self.train_matrix)
        return {"train.indptr": m.indptr.astype(np.int64), "train.indices": m.indices.astype(np.int64)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        indptr, indices = arrays["train.indptr"], arrays["train.indices"]
        self.train_matrix = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(self.n_users, self.n_items)
        )
        self.load_extra_state(arrays)
        self.module = self.build().to(self.device)
        self.module.load_state_dict(
            {
                k[len("module.") :]: torch.from_numpy(v.copy())
                for k, v in arrays.items()
                if k.startswith("module.")
            }
        )
        self.module.eval()
        self.on_epoch_end()

    def load_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Hook for models whose scoring needs more than the training matrix."""

    def extra_config(self) -> dict[str, Any]:
        return {"train_config": dataclasses.asdict(self.train_config)}

    @classmethod
    def from_saved(cls, config: Any, meta: dict[str, Any]) -> TorchRecommender:
        train = meta.get("train_config", {})
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        return cls(config, TrainConfig(**{k: v for k, v in train.items() if k in known}))


def pairs_from_matrix(train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    coo = sp.coo_matrix(train)
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for s in range(0, n, batch_size):
        yield order[s : s + batch_size]


class PairwiseRecommender(TorchRecommender):
    """Base of the models trained on (user, positive item, sampled negatives) triples."""

    def prepare(self, train: sp.csr_matrix, interactions: pd.DataFrame | None) -> None:
        super().prepare(train, interactions)
        self._users, self._items = pairs_from_matrix(train)

    def training_batches(self, rng: np.random.Generator, config: TrainConfig):
        """One epoch: every training pair once, shuffled, with fresh negatives (b,), (b,), (b, k)."""
        negs = self.sampler.sample(self._users, rng, config.num_negatives)
        for idx in shuffled_batches(len(self._users), config.batch_size, rng):
            yield (
                torch.from_numpy(self._users[idx]),
                torch.from_numpy(self._items[idx]),
                torch.from_numpy(negs[idx]),
            )
