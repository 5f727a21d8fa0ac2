"""A user's own model and a user's own encoder, outside fusionrank, plugged in by their
dotted class paths."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fusionrank.data.vectors import unit_rows
from fusionrank.encoders.base import BaseEncoder
from fusionrank.recommender import Recommender


@dataclass(frozen=True)
class MostRecentConfig:
    boost: float = 1.0
    """Extra weight of the items in the last 10% of training interactions."""


class MostRecent(Recommender):
    """Popularity plus a boost for recently popular items."""

    config_class = MostRecentConfig

    def _fit(self, split) -> None:
        train = split.train.sort_values("timestamp")
        recent = train.tail(max(1, len(train) // 10))
        self.counts = np.bincount(train["item_idx"], minlength=self.n_items).astype(np.float32)
        self.counts += self.config.boost * np.bincount(recent["item_idx"], minlength=self.n_items)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(self._check_users(users)), self.n_items)).copy()

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"]


@dataclass(frozen=True)
class HashingEncoderConfig:
    dim: int = 64
    """Buckets (the vectors' length)."""
    n: int = 3
    """Characters per n-gram."""

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n < 1:
            raise ValueError(f"dim and n must be >= 1, got dim={self.dim}, n={self.n}")


class HashingEncoder(BaseEncoder):
    """A user's own text encoder, outside fusionrank: the counts of a text's character
    n-grams hashed into ``dim`` buckets, L2-normalised. Deterministic, no weights."""

    config_class = HashingEncoderConfig
    inputs = ("text",)
    normalized = True

    def __init__(self, config: HashingEncoderConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.dim = config.dim
        self.identity = {"source": "hashed character n-grams", "hash": "blake2b-8"}

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        n = self.config.n
        for row, text in enumerate(batch):
            padded = f" {text.lower()} "
            for k in range(max(1, len(padded) - n + 1)):
                digest = hashlib.blake2b(padded[k : k + n].encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        return unit_rows(out)
