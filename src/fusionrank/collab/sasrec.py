"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's last N items,
learned positions, dropout; trained to predict the next item at every position with
cross-entropy over all items (or sampled negatives)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from fusionrank.collab.torch_base import TorchRecommender, shuffled_batches
from fusionrank.collab.trainer import SampledTrainConfig
from fusionrank.columns import ITEM_IDX, TIMESTAMP, USER_IDX
from fusionrank.errors import InvalidArgumentError

if TYPE_CHECKING:
    from fusionrank.data.splits import Split
    from fusionrank.recommender import Stage


@dataclass(frozen=True)
class SASRecConfig(SampledTrainConfig):
    """Transformer sizes, sequence length, loss, and the training loop."""

    max_len: int = 50
    """Items of history used (the most recent)."""
    hidden: int = 64
    """Model width."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 2
    """Attention heads."""
    inner: int = 256
    """Feed-forward width."""
    dropout: float = 0.2
    """Dropout on embeddings, attention and feed-forward."""
    loss: Literal["ce", "sampled"] = "ce"
    """``ce``: softmax over all items; ``sampled``: BCE against one sampled negative."""
    batch_size: int = 16
    learning_rate: float = 2e-3

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"dim": ("hidden",)}


class SASRecModule(nn.Module):
    """Item ids are shifted by one: 0 is padding."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden,
            cfg.heads,
            cfg.inner,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, L) item ids (0 = padding, left-padded) -> (batch, L, hidden) states."""
        b, length = seq.shape
        pos = torch.arange(length, device=seq.device)
        x = self.items(seq) * self.cfg.hidden**0.5 + self.positions(pos)[None]
        x = self.dropout(x) * (seq > 0).unsqueeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)  # True = blocked
        blocked = causal[None] | (seq == 0)[:, None, :]
        blocked = (
            blocked & ~torch.eye(length, dtype=torch.bool, device=seq.device)[None]
        )  # self always visible
        mask = blocked.repeat_interleave(self.cfg.heads, dim=0)  # (batch * heads, L, L)
        return self.norm(self.encoder(x, mask=mask))

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every real item (ids 1..n) from states (..., hidden)."""
        return states @ self.items.weight[1:].T


class SASRec(TorchRecommender):
    """Scores a user from their most recent ``max_len`` items: training history at the
    ``valid`` stage, training + validation history at the ``test`` stage (after ``fit``)."""

    config_class = SASRecConfig

    def build(self) -> nn.Module:
        return SASRecModule(self.n_items, self.config)

    def prepare(self, split: Split) -> None:
        if TIMESTAMP not in split.train.columns:
            raise InvalidArgumentError("SASRec needs interactions with timestamps (map a timestamp column)")
        super().prepare(split)
        self._stages = {
            "valid": self.sequences(split.train),
            "test": self.sequences(pd.concat([split.train, split.valid])),
        }
        self.at_stage("valid")
        self._train_users = np.flatnonzero((self._sequences > 0).sum(axis=1) >= 2)

    def at_stage(self, stage: Stage) -> None:
        self._sequences = self._stages[stage]

    def sequences(self, interactions: pd.DataFrame) -> np.ndarray:
        """Users' item sequences (time order, most recent ``max_len + 1``), left-padded with 0."""
        length = self.config.max_len + 1
        frame = interactions.sort_values([USER_IDX, TIMESTAMP], kind="stable")
        seqs = np.zeros((self.n_users, length), dtype=np.int64)
        users = frame[USER_IDX].to_numpy()
        items = frame[ITEM_IDX].to_numpy() + 1
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        ends = np.r_[starts[1:], len(users)]
        for s, e in zip(starts, ends):
            tail = items[max(s, e - length) : e]
            seqs[users[s], length - len(tail) :] = tail
        return seqs

    def extra_state(self) -> dict[str, np.ndarray]:
        return {**super().extra_state(), **{f"sequences.{k}": v for k, v in self._stages.items()}}

    def load_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._stages = {k: arrays[f"sequences.{k}"] for k in ("valid", "test")}
        self.at_stage("test")

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[tuple[Any, ...]]:
        for idx in shuffled_batches(len(self._train_users), config.batch_size, rng):
            seq = self._sequences[self._train_users[idx]]
            inputs, targets = seq[:, :-1], seq[:, 1:]
            negs = None
            if self.config.loss == "sampled":
                users = np.repeat(self._train_users[idx], targets.shape[1])
                negs = self.sampler.sample(users, rng, 1).reshape(targets.shape) + 1
            yield torch.from_numpy(inputs), torch.from_numpy(targets), negs

    def batch_loss(self, batch: Any) -> torch.Tensor:
        inputs, targets, negs = batch
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        m: SASRecModule = self.module  # type: ignore[assignment]
        states = m(inputs)
        valid = (targets > 0) & (inputs > 0)
        h = states[valid]  # (n, hidden)
        tgt = targets[valid] - 1
        if self.config.loss == "ce":
            return nn.functional.cross_entropy(m.logits(h), tgt)
        neg = torch.from_numpy(negs).to(self.device)[valid] - 1
        w = m.items.weight[1:]
        pos_s, neg_s = (h * w[tgt]).sum(-1), (h * w[neg]).sum(-1)
        return nn.functional.softplus(-pos_s).mean() + nn.functional.softplus(neg_s).mean()

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        seq = torch.from_numpy(self._sequences[users][:, 1:]).to(self.device)  # the last max_len items
        m: SASRecModule = self.module  # type: ignore[assignment]
        states = m(seq)[:, -1]
        return m.logits(states).cpu().numpy()
