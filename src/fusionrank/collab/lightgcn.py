"""LightGCN (He et al., 2020): embeddings smoothed over the symmetric-normalised
user-item graph, K layers, layer mean; BPR loss with L2 on the ego embeddings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.mf import bpr_loss
from fusionrank.collab.torch_base import PairwiseRecommender
from fusionrank.collab.trainer import SampledTrainConfig

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class LightGCNConfig(SampledTrainConfig):
    """Embedding size, propagation depth, L2 strength, and the training loop."""

    embedding_dim: int = 64
    """Size of user and item vectors."""
    layers: int = 2
    """Propagation layers K (the final vector is the mean of layers 0..K)."""
    reg: float = 1e-3
    """L2 on the batch's ego (layer-0) embeddings, sum of squares / batch size."""
    epochs: int = 300
    batch_size: int = 4096
    learning_rate: float = 2e-2
    num_negatives: int = 4
    loss_chunk: int = 65_536
    """Batch rows whose loss is computed at once. A step propagates the graph once; a
    larger batch is scored in chunks of this size whose gradients are summed, so the
    step's memory stays bounded whatever ``batch_size`` is (same gradient, up to float
    rounding)."""

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"dim": ("embedding_dim",)}


def normalised_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph A = [[0, R], [R^T, 0]] as a sparse CSR tensor."""
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32)
    # CSR blocks in, format="csr": a csr_matrix (the stubs only promise the spmatrix mixin)
    a = cast(sp.csr_matrix, sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32))
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    norm = sp.diags(inv) @ a @ sp.diags(inv)
    norm = sp.csr_matrix(norm, dtype=np.float32)
    with warnings.catch_warnings():  # "beta" and "invariant checks" notices; scipy built a valid CSR
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(norm.indptr.astype(np.int64)),
            torch.from_numpy(norm.indices.astype(np.int64)),
            torch.from_numpy(norm.data),
            size=norm.shape,
        )


class LightGCNModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, layers: int) -> None:
        super().__init__()
        self.n_users, self.layers = n_users, layers
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.adjacency: torch.Tensor | None = None

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user (n_users, dim) and item (n_items, dim) vectors."""
        x = self.embedding.weight
        total = x
        for _ in range(self.layers):
            x = torch.sparse.mm(self.adjacency, x)
            total = total + x
        final = total / (self.layers + 1)
        return final[: self.n_users], final[self.n_users :]


class LightGCN(PairwiseRecommender):
    """LightGCN: score(u, i) = <e_u, e_i> of the propagated embeddings."""

    config_class = LightGCNConfig

    def build(self) -> nn.Module:
        module = LightGCNModule(self.n_users, self.n_items, self.config.embedding_dim, self.config.layers)
        module.adjacency = normalised_adjacency(self.train_matrix).to(self.device)
        return module

    def prepare(self, split: Split) -> None:
        super().prepare(split)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def batch_loss(self, batch: Any) -> torch.Tensor:
        users, pos, neg = (t.to(self.device) for t in batch)
        m: LightGCNModule = self.module  # type: ignore[assignment]
        u_all, i_all = m.propagate()
        ego = m.embedding.weight
        if len(users) <= self.config.loss_chunk:
            return self._loss(u_all, i_all, ego, users, pos, neg, len(users))
        # Large batch: the per-row tensors (batch x negatives x dim) would grow with the
        # batch. Sum the chunks' gradients on detached copies of the propagated and ego
        # vectors, then hand them back through a surrogate whose gradient is that sum
        # and whose value is the batch loss.
        lu, li, le = (t.detach().requires_grad_() for t in (u_all, i_all, ego))
        value = 0.0
        for s in range(0, len(users), self.config.loss_chunk):
            part = slice(s, s + self.config.loss_chunk)
            loss = self._loss(lu, li, le, users[part], pos[part], neg[part], len(users))
            loss.backward()
            value += float(loss.detach())
        assert lu.grad is not None and li.grad is not None and le.grad is not None  # noqa: S101
        surrogate = (u_all * lu.grad).sum() + (i_all * li.grad).sum() + (ego * le.grad).sum()
        return surrogate - surrogate.detach() + value

    def _loss(
        self,
        u_all: torch.Tensor,
        i_all: torch.Tensor,
        ego: torch.Tensor,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        batch: int,
    ) -> torch.Tensor:
        """BPR + L2 of rows ``users, pos, neg`` as their share of a batch of ``batch`` rows."""
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        share = len(users) / batch
        loss = bpr_loss((u * p).sum(-1), (u.unsqueeze(1) * n).sum(-1)) * share
        n_users = int(self.n_users)
        reg = (
            ego[users].pow(2).sum() + ego[n_users + pos].pow(2).sum() + ego[n_users + neg].pow(2).sum()
        ) / batch
        return loss + self.config.reg * reg

    def on_epoch_end(self) -> None:
        self._cache = None

    def _final(self) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(self, "_cache", None) is None:
            with torch.inference_mode():
                self._cache = self.module.propagate()  # type: ignore[union-attr,operator]
        assert self._cache is not None  # noqa: S101
        return self._cache

    def user_embeddings(self) -> np.ndarray:
        return self._final()[0].cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        return self._final()[1].cpu().numpy()

    def user_vectors(self) -> np.ndarray:
        return self.user_embeddings()

    def item_vectors(self) -> np.ndarray:
        return self.item_embeddings()

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        u, i = self._final()
        return (u[torch.from_numpy(users).to(self.device)] @ i.T).cpu().numpy()
