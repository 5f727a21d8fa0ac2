"""Matrix factorisation trained with the BPR loss (Rendle et al., 2009)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fusionrank.collab.torch_base import PairwiseRecommender
from fusionrank.collab.trainer import SampledTrainConfig


@dataclass(frozen=True)
class BPRConfig(SampledTrainConfig):
    """Embedding size, L2 strength, and the training loop (defaults tuned on ml-100k)."""

    embedding_dim: int = 64
    """Size of user and item vectors."""
    reg: float = 7e-3
    """L2 on the embeddings and biases used in a batch (sum of squares / batch size)."""
    init_std: float = 0.01
    """Standard deviation of the initial embeddings."""
    epochs: int = 200
    learning_rate: float = 1e-2
    num_negatives: int = 4

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"dim": ("embedding_dim",)}


class MFModule(nn.Module):
    """score(u, i) = <p_u, q_i> + b_i (the item bias carries popularity)."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.users.weight, std=init_std)
        nn.init.normal_(self.items.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (batch,) users against (batch, k) items -> (batch, k)."""
        return (self.users(users).unsqueeze(1) * self.items(items)).sum(-1) + self.item_bias(items).squeeze(
            -1
        )


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(pos - neg), averaged; ``neg`` is (batch, k)."""
    return -torch.nn.functional.logsigmoid(pos.unsqueeze(-1) - neg).mean()


def fixed_schedule(seed: int, batch_size: int = 2048) -> BPRConfig:
    """25 epochs at learning rate 1e-2 with 4 negatives and no validation: the BPR that
    fusion models fit inside themselves as their collaborative space."""
    return BPRConfig(epochs=25, batch_size=batch_size, validation=False, seed=seed, progress=False)


class BPR(PairwiseRecommender):
    """MF-BPR with uniformly sampled negatives."""

    config_class = BPRConfig

    def build(self) -> nn.Module:
        return MFModule(self.n_users, self.n_items, self.config.embedding_dim, self.config.init_std)

    def batch_loss(self, batch: Any) -> torch.Tensor:
        users, pos, neg = (t.to(self.device) for t in batch)
        m: MFModule = self.module  # type: ignore[assignment]
        u, p, n = m.users(users), m.items(pos), m.items(neg)  # (b, d), (b, d), (b, k, d)
        bp, bn = m.item_bias(pos).squeeze(-1), m.item_bias(neg).squeeze(-1)  # (b,), (b, k)
        pos_s = (u * p).sum(-1) + bp
        neg_s = (u.unsqueeze(1) * n).sum(-1) + bn
        reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum() + bp.pow(2).sum() + bn.pow(2).sum()) / len(
            users
        )
        return bpr_loss(pos_s, neg_s) + self.config.reg * reg

    def user_embeddings(self) -> np.ndarray:
        m: MFModule = self.module  # type: ignore[assignment]
        return m.users.weight.detach().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        m: MFModule = self.module  # type: ignore[assignment]
        return m.items.weight.detach().cpu().numpy()

    def item_bias(self) -> np.ndarray:
        m: MFModule = self.module  # type: ignore[assignment]
        return m.item_bias.weight.detach().cpu().numpy().ravel()

    def user_vectors(self) -> np.ndarray:
        """User embeddings with a last column of ones (it meets the item bias)."""
        u = self.user_embeddings()
        return np.hstack([u, np.ones((len(u), 1), u.dtype)])

    def item_vectors(self) -> np.ndarray:
        """Item embeddings with the item bias as the last column: score = user · item."""
        return np.hstack([self.item_embeddings(), self.item_bias()[:, None]])

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        m: MFModule = self.module  # type: ignore[assignment]
        u = m.users.weight[torch.from_numpy(users).to(self.device)]
        return (u @ m.items.weight.T + m.item_bias.weight.T).cpu().numpy()
