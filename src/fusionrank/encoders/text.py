"""Text encoder: a BERT-family transformers model with mean or CLS pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fusionrank.encoders.weights import DEFAULT_TEXT_MODEL, resolve_hf_model


@dataclass(frozen=True)
class TextEncoderConfig:
    """Which model and how to turn token states into one vector."""

    model: str = DEFAULT_TEXT_MODEL
    """A model folder, or a hub id found in the HF cache; the default ships in a package."""
    pooling: Literal["mean", "cls"] = "mean"
    """Mean of token states over the attention mask, or the first ([CLS]) token."""
    max_length: int = 256
    """Tokens kept per text (all-MiniLM-L6-v2 was trained with 256)."""
    normalize: bool = True
    """L2-normalise the vectors (cosine = dot product)."""

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")
        if self.max_length < 2:
            raise ValueError("max_length must be >= 2")


class TextEncoder:
    """``encode(list[str]) -> float32 (n, dim)``; the engine uses ``tokenize``/``forward``."""

    kind = "text"

    def __init__(self, config: TextEncoderConfig | None = None, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.config = config or TextEncoderConfig()
        folder, self.identity = resolve_hf_model(self.config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval().to(device)
        self.device = torch.device(device)
        self.dim = int(self.model.config.hidden_size)
        self.normalized = self.config.normalize

    def tokenize(self, texts: list[str]) -> dict:
        """Token ids without padding (the engine pads per batch after sorting by length)."""
        return self.tokenizer(
            texts,
            truncation=True,
            max_length=self.config.max_length,
            padding=False,
            return_attention_mask=False,
        )

    def collate(self, input_ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad a batch of token id lists to its own longest length."""
        batch = self.tokenizer.pad({"input_ids": input_ids}, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled (and normalised) vectors of one padded batch, (batch, dim) float32."""
        out = self.model(**batch).last_hidden_state  # (batch, seq, dim)
        if self.config.pooling == "cls":
            pooled = out[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)  # (batch, seq, 1)
            pooled = (out * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = pooled.float()
        if self.config.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts in order (sorted by length internally to cut padding)."""
        ids = self.tokenize(list(texts))["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.forward(self.collate([ids[i] for i in rows])).cpu().numpy()
        return out
