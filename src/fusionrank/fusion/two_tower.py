"""A DropoutNet-style two-tower hybrid: a bag-of-items user tower and a content item tower
with an ID part that is dropped at random in training, so the content alone ranks well."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.trainer import Trainable, TrainConfig, seed_everything, train_loop
from fusionrank.fusion.content_models import ContentRecommender
from fusionrank.fusion.validation import pseudo_cold_items
from fusionrank.recommender import csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class TwoTowerConfig(TrainConfig):
    """Two-tower hybrid: a bag-of-items user tower and a content item tower (+ ID dropout)."""

    dim: int = 128
    """Shared space size."""
    hidden: int = 512
    """Content tower hidden width."""
    dropout: float = 0.2
    """Dropout in the content tower."""
    id_dropout: float = 0.5
    """Probability of hiding a warm item's ID embedding in training (DropoutNet)."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg, genres)."""
    valid_share: float = 0.1
    """Share of warm items held out as pseudo-cold items to pick the epoch."""
    epochs: int = 60
    batch_size: int = 1024
    """(user, item) pairs per step."""
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 8


class TwoTowerModule(nn.Module):
    def __init__(self, n_items: int, content_dim: int, cfg: TwoTowerConfig) -> None:
        super().__init__()
        self.bag = nn.Embedding(n_items, cfg.dim)  # user tower: items a user has seen
        self.ids = nn.Embedding(n_items, cfg.dim)  # warm item ID part
        nn.init.normal_(self.bag.weight, std=0.05)
        nn.init.zeros_(self.ids.weight)
        self.tower = nn.Sequential(
            nn.Linear(content_dim, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.dim + 1),
        )

    def items(self, content: torch.Tensor, use_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item vectors (n, dim) and biases (n,); ``use_ids`` (n,) bool adds the ID part."""
        out = self.tower(content)
        vec, bias = out[:, :-1], out[:, -1]
        if use_ids is not None:
            vec = vec + self.ids.weight * use_ids[:, None]
        return vec, bias

    def users(self, history: torch.Tensor) -> torch.Tensor:
        """history (batch, n_items) 0/1 -> (batch, dim), a normalised bag of item vectors."""
        n = history.sum(dim=1, keepdim=True).clamp(min=1)
        return (history @ self.bag.weight) / n.sqrt()


class TwoTower(ContentRecommender, Trainable):
    """Content -> CF space, trained with a full softmax over warm items on warm users.

    The user is a bag of the items they saw (the target item removed from its own bag);
    items are the content tower's output, plus a learned ID vector for warm items that is
    dropped at random in training, so the tower alone must rank well (cold items).
    """

    config_class = TwoTowerConfig
    module: TwoTowerModule

    def _fit_content(self, split: Split) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        warm = np.flatnonzero(self.warm)
        held = pseudo_cold_items(warm, cfg.valid_share, cfg.seed) if cfg.validation else np.empty(0, np.int64)
        fit_items = np.setdiff1d(warm, held)
        train = self.train.tolil(copy=True)
        train[:, held] = 0
        self._fit_train = sp.csr_matrix(train)
        self._fit_train.eliminate_zeros()
        self.module = TwoTowerModule(self.n_items, self._vectors().shape[1], cfg)
        self._x = torch.from_numpy(self._vectors().astype(np.float32))
        coo = self._fit_train.tocoo()
        self._pairs = coo.row.astype(np.int64), coo.col.astype(np.int64)
        self._fit_mask = torch.zeros(self.n_items, dtype=torch.bool)
        self._fit_mask[torch.from_numpy(fit_items)] = True
        validate = None
        if len(held):
            truth = sp.csr_matrix(self.train[:, held])

            def validate() -> float:
                from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

                return evaluate_ranking(
                    lambda us: self.score(us)[:, held], truth, None, EvalConfig(ks=(10,))
                ).metrics["ndcg@10"]

        self.history = train_loop(self, cfg, validate, desc=self.name).as_dict()
        self._use_ids = torch.from_numpy(self.warm) & self._fit_mask
        self._prepare_scoring(self.train, use_ids=self._use_ids)

    def training_batches(
        self, rng: np.random.Generator, config: Any
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        users, items = self._pairs
        for idx in np.array_split(rng.permutation(len(users)), max(1, len(users) // config.batch_size)):
            yield users[idx], items[idx]

    def batch_loss(self, batch: Any) -> torch.Tensor:
        u, j = batch
        train, rows, target = self._fit_train, torch.arange(len(u)), torch.from_numpy(j)
        hist = torch.from_numpy(train[u].toarray())
        hist[rows, target] = 0  # the target is not in its own bag
        keep_ids = (torch.rand(self.n_items) > self.config.id_dropout) & self._fit_mask
        vec, bias = self.module.items(self._x, keep_ids)
        logits = self.module.users(hist) @ vec.T + bias  # (batch, n_items)
        logits = logits.masked_fill(~self._fit_mask, -torch.inf)
        others = torch.from_numpy(train[u].toarray() > 0)
        others[rows, target] = False
        logits = logits.masked_fill(others, -torch.inf)  # other positives are not negatives
        return nn.functional.cross_entropy(logits, target)

    def on_epoch_end(self) -> None:
        self._prepare_scoring(self._fit_train, use_ids=self._fit_mask)

    @torch.inference_mode()
    def _prepare_scoring(self, history: sp.csr_matrix, use_ids: torch.Tensor) -> None:
        self.module.eval()
        vec, bias = self.module.items(self._x, use_ids)
        self._items, self._bias, self._history = vec, bias, history

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        hist = torch.from_numpy(self._history[users].toarray())
        return (self.module.users(hist) @ self._items.T + self._bias).numpy()

    def item_vectors(self) -> np.ndarray:
        """Every item's vector in the shared space (cold items from content alone)."""
        return self._items.numpy()

    def state(self) -> dict[str, np.ndarray]:
        module = {f"module.{k}": v.detach().numpy() for k, v in self.module.state_dict().items()}
        return {
            **module,
            "content": self._x.numpy(),
            "use_ids": self._use_ids.numpy(),
            **csr_to_arrays("train", self.train),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.train = csr_from_arrays("train", arrays)
        self._x = torch.from_numpy(arrays["content"].copy())
        self._use_ids = torch.from_numpy(arrays["use_ids"].copy())
        self.module = TwoTowerModule(self.n_items, self._x.shape[1], self.config)
        self.module.load_state_dict(
            {k[7:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("module.")}
        )
        self._prepare_scoring(self.train, use_ids=self._use_ids)
