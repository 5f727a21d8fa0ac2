"""NeuMF (He et al., 2017): a GMF branch and an MLP branch fused by a final linear layer,
trained pointwise with binary cross-entropy on sampled negatives."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from fusionrank.collab.torch_base import TorchRecommender, pairs_from_matrix, shuffled_batches
from fusionrank.collab.trainer import SampledTrainConfig

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class NeuMFConfig(SampledTrainConfig):
    """Sizes of both branches, dropout of the MLP, and the training loop."""

    mf_dim: int = 64
    """GMF embedding size."""
    mlp_dim: int = 64
    """MLP embedding size (user and item each)."""
    hidden: tuple[int, ...] = (128, 64)
    """MLP hidden layer sizes."""
    dropout: float = 0.1
    """Dropout after each MLP layer."""
    epochs: int = 100
    batch_size: int = 4096
    learning_rate: float = 2e-3
    num_negatives: int = 2

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"dim": ("mf_dim", "mlp_dim")}


class NeuMFModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: NeuMFConfig) -> None:
        super().__init__()
        self.user_mf, self.item_mf = nn.Embedding(n_users, cfg.mf_dim), nn.Embedding(n_items, cfg.mf_dim)
        self.user_mlp, self.item_mlp = nn.Embedding(n_users, cfg.mlp_dim), nn.Embedding(n_items, cfg.mlp_dim)
        for emb in (self.user_mf, self.item_mf, self.user_mlp, self.item_mlp):
            nn.init.normal_(emb.weight, std=0.01)
        layers, width = [], 2 * cfg.mlp_dim
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(cfg.mf_dim + width, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for aligned (users, items) pairs, shape (n,)."""
        gmf = self.user_mf(users) * self.item_mf(items)
        mlp = self.mlp(torch.cat([self.user_mlp(users), self.item_mlp(items)], dim=-1))
        return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def score_all(self, users: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Logits of every item for each user, (len(users), n_items).

        The first MLP layer acts on [p_u; q_i], so it splits into a user part and an item
        part computed once each; only the later layers run per (user, item) pair.
        """
        first = cast(nn.Linear, self.mlp[0])
        d = self.user_mlp.embedding_dim
        item_h = self.item_mlp.weight @ first.weight[:, d:].T + first.bias  # (n_items, h1)
        gmf_items = self.item_mf.weight * self.out.weight[0, : self.item_mf.embedding_dim]  # (n_items, d_mf)
        w_mlp = self.out.weight[0, self.item_mf.embedding_dim :]
        out = []
        for s in range(0, len(users), chunk):
            u = users[s : s + chunk]
            user_h = self.user_mlp(u) @ first.weight[:, :d].T  # (c, h1)
            h = torch.relu(user_h[:, None, :] + item_h[None, :, :])  # (c, n_items, h1)
            h = self.mlp[3:](h) if len(self.mlp) > 3 else h  # later layers (dropout is off in eval)
            gmf = self.user_mf(u) @ gmf_items.T  # (c, n_items)
            out.append(gmf + h @ w_mlp + self.out.bias)
        return torch.cat(out)


class NeuMF(TorchRecommender):
    """No separate user/item vectors: ``score`` runs the network over every item."""

    config_class = NeuMFConfig

    def build(self) -> nn.Module:
        return NeuMFModule(self.n_users, self.n_items, self.config)

    def prepare(self, split: Split) -> None:
        super().prepare(split)
        self._users, self._items = pairs_from_matrix(self.train_matrix)

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[tuple[torch.Tensor, ...]]:
        k = config.num_negatives
        negs = self.sampler.sample(self._users, rng, k)
        for idx in shuffled_batches(len(self._users), config.batch_size, rng):
            users = np.concatenate([self._users[idx], np.repeat(self._users[idx], k)])
            items = np.concatenate([self._items[idx], negs[idx].reshape(-1)])
            labels = np.concatenate([np.ones(len(idx)), np.zeros(len(idx) * k)]).astype(np.float32)
            yield torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(labels)

    def batch_loss(self, batch: Any) -> torch.Tensor:
        users, items, labels = (t.to(self.device) for t in batch)
        m: NeuMFModule = self.module  # type: ignore[assignment]
        return nn.functional.binary_cross_entropy_with_logits(m(users, items), labels)

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return self.module.score_all(torch.from_numpy(users).to(self.device)).cpu().numpy()  # type: ignore[union-attr,operator]
