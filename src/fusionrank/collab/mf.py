"""Matrix factorisation trained with the BPR loss (Rendle et al., 2009)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fusionrank.collab.torch_base import TorchRecommender, pairs_from_matrix, shuffled_batches
from fusionrank.collab.trainer import TrainConfig


@dataclass(frozen=True)
class BPRConfig:
    """Embedding size and L2 strength."""

    embedding_dim: int = 64
    """Size of user and item vectors."""
    reg: float = 1e-4
    """L2 on the embeddings used in a batch (sum of squares / batch size)."""


class MFModule(nn.Module):
    """score(u, i) = <p_u, q_i>."""

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.users(users).unsqueeze(1) * self.items(items)).sum(-1)  # (batch, k)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(pos - neg), averaged; ``neg`` is (batch, k)."""
    return -torch.nn.functional.logsigmoid(pos.unsqueeze(-1) - neg).mean()


class BPR(TorchRecommender):
    """MF-BPR with uniformly sampled negatives."""

    config_class = BPRConfig
    default_train = TrainConfig(epochs=200, batch_size=1024, learning_rate=5e-3, patience=10)

    def build(self) -> nn.Module:
        return MFModule(self.n_users, self.n_items, self.config.embedding_dim)

    def prepare(self, train, interactions) -> None:
        super().prepare(train, interactions)
        self._users, self._items = pairs_from_matrix(train)

    def training_batches(self, rng: np.random.Generator, config: TrainConfig):
        negs = self.sampler.sample(self._users, rng, config.num_negatives)
        for idx in shuffled_batches(len(self._users), config.batch_size, rng):
            yield (
                torch.from_numpy(self._users[idx]),
                torch.from_numpy(self._items[idx]),
                torch.from_numpy(negs[idx]),
            )

    def batch_loss(self, batch) -> torch.Tensor:
        users, pos, neg = (t.to(self.device) for t in batch)
        m: MFModule = self.module  # type: ignore[assignment]
        u, p, n = m.users(users), m.items(pos), m.items(neg)  # (b, d), (b, d), (b, k, d)
        pos_s = (u * p).sum(-1)
        neg_s = (u.unsqueeze(1) * n).sum(-1)
        reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / len(users)
        return bpr_loss(pos_s, neg_s) + self.config.reg * reg

    def user_embeddings(self) -> np.ndarray:
        return self.module.users.weight.detach().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        return self.module.items.weight.detach().cpu().numpy()

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        m: MFModule = self.module  # type: ignore[assignment]
        return (m.users.weight[torch.from_numpy(users).to(self.device)] @ m.items.weight.T).cpu().numpy()
