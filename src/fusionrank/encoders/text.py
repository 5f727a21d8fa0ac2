"""Text encoder: a BERT-family transformers model with mean or CLS pooling, run by torch
(fp32, int8, bf16/fp16 with the weights cast or under autocast) or ONNX Runtime (fp32, int8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from fusionrank.encoders.base import Batch, InputKind, texts_of
from fusionrank.encoders.device import to_device
from fusionrank.encoders.graphs import GraphedForward, pow2_rows
from fusionrank.encoders.precision import (
    BACKENDS,
    PRECISIONS,
    Backend,
    Cast,
    Precision,
    autocast,
    cast_model,
    check_cast,
    check_precision,
    quantize_linears,
    resolve_cast,
)
from fusionrank.encoders.weights import DEFAULT_TEXT_MODEL, resolve_hf_model
from fusionrank.errors import InvalidArgumentError


@dataclass(frozen=True)
class TextEncoderConfig:
    """Which model, how to turn token states into one vector, and what runs it."""

    model: str | None = None
    """A model folder, or a hub id found in the HF cache; None: all-MiniLM-L6-v2, which
    ships in a package."""
    pooling: Literal["mean", "cls"] = "mean"
    """Mean of token states over the attention mask, or the first ([CLS]) token."""
    max_length: int = 256
    """Tokens kept per text (all-MiniLM-L6-v2 was trained with 256)."""
    normalize: bool = True
    """L2-normalise the vectors (cosine = dot product)."""
    precision: Precision = "fp32"
    """``fp32``; ``int8`` (dynamic quantisation, CPU); ``bf16``/``fp16`` (GPU)."""
    backend: Backend = "torch"
    """``torch``, or ``onnx`` (ONNX Runtime on the CPU; fp32 or int8)."""
    cast: Cast = "auto"
    """How bf16/fp16 run: ``weights`` cast once at load, ``autocast`` per batch, ``auto``
    (weights on CUDA, autocast on the CPU); see :mod:`fusionrank.encoders.precision`."""

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls"):
            raise InvalidArgumentError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")
        if self.max_length < 2:
            raise InvalidArgumentError("max_length must be >= 2")
        if self.precision not in PRECISIONS or self.backend not in BACKENDS:
            check_precision(self.precision, "cpu", self.backend)  # names the bad value
        check_cast(self.cast)


def pool_tokens(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, normalize: bool
) -> torch.Tensor:
    """One float32 vector per row of ``hidden`` (batch, seq, dim): the mean over the
    attention mask or the first token, L2-normalised if asked, computed in float32 whatever
    the model's precision. Both backends use it."""
    hidden = hidden.float()  # a no-op for float32
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (int64, on the host) of token id lists padded to
    the longest: what ``tokenizer.pad(..., return_tensors="pt")`` gives, in numpy."""
    lengths = np.fromiter((len(x) for x in seqs), dtype=np.int64, count=len(seqs))
    width = int(lengths.max()) if len(seqs) else 0
    cols = np.arange(width)
    mask = cols >= (width - lengths)[:, None] if left else cols < lengths[:, None]
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    ids[mask] = np.fromiter((t for x in seqs for t in x), dtype=np.int64, count=int(lengths.sum()))
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def sdpa_model(model: torch.nn.Module) -> bool:
    """Whether a transformers model runs its attention through torch's SDPA."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa"


def attention_mask_4d(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with its padding mask as ``(batch, 1, 1, seq)`` booleans (True: attend),
    the mask SDPA takes as it is. Given the 2-D mask, transformers first asks the GPU
    whether any token is padded (``mask.all()``, to skip the mask), which makes the host
    wait for every queued batch before it can queue the next one; a 4-D mask is used as
    given. The same attention, without the wait."""
    mask = batch["attention_mask"]
    return {**batch, "attention_mask": mask[:, None, None, :].bool()}


class TextEncoder:
    """``encode(texts) -> float32 (n, dim)``; the engine's fast path tokenises a shard at
    once and runs batches of rows sorted by token length (``tokenize``, then
    ``collate_tokens`` on the host and ``forward_tokens`` on the device)."""

    config_class: ClassVar[type] = TextEncoderConfig
    inputs: ClassVar[tuple[InputKind, ...]] = ("text",)
    sort_by_length = True

    def __init__(self, config: TextEncoderConfig | None = None, device: str = "cpu") -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.config = config or TextEncoderConfig()
        self.check(self.config, device)
        name = self.config.model or DEFAULT_TEXT_MODEL
        folder, self.identity = resolve_hf_model(name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.device = torch.device(device)
        self.precision: str = self.config.precision
        self.backend: str = self.config.backend
        self.cast: str = resolve_cast(self.config.cast, self.precision, self.device)
        self.model: torch.nn.Module | None = None
        self.onnx = None
        self.mask_4d = False
        """Give the model its attention mask as ``(batch, 1, 1, seq)`` booleans (see
        :func:`attention_mask_4d`): on CUDA with SDPA attention."""
        self.graphed: GraphedForward | None = None
        self.graph_step = 16
        if self.backend == "onnx":
            from fusionrank.encoders.onnx_text import OnnxTextModel, ensure_onnx, require_onnx

            require_onnx()
            path = ensure_onnx(folder, self.identity, self.precision, self.tokenizer, name)
            self.onnx = OnnxTextModel(path)
            self.dim = int(AutoConfig.from_pretrained(str(folder)).hidden_size)
        else:
            model = AutoModel.from_pretrained(str(folder)).eval()
            if self.precision == "int8":
                model = quantize_linears(model)
            self.model = cast_model(model.to(self.device), self.precision, self.cast)
            self.dim = int(model.config.hidden_size)
            self.mask_4d = self.device.type == "cuda" and sdpa_model(model)
        self.normalized: bool = self.config.normalize

    @classmethod
    def check(cls, config: TextEncoderConfig, device: str) -> None:
        """Refuse a precision or backend that cannot run on ``device``."""
        check_precision(config.precision, device, config.backend, "text")

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without padding (batches are padded to their own longest row)."""
        return self.tokenizer(
            texts,
            truncation=True,
            max_length=self.config.max_length,
            padding=False,
            return_attention_mask=False,
        )["input_ids"]

    def encode_tokens(self, tokens: Sequence[list[int]], rows: list[int]) -> torch.Tensor:
        """Vectors (len(rows), dim) of the token id lists ``tokens[r]``, ``r`` in ``rows``."""
        return self.forward(self.collate([tokens[i] for i in rows]))

    def collate_tokens(self, tokens: Sequence[list[int]], rows: list[int]) -> dict[str, torch.Tensor]:
        """The padded batch of ``tokens[r]``, ``r`` in ``rows``, on the host (the engine
        makes it in its feeding workers and copies it to the device itself)."""
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        return pad_ids([tokens[i] for i in rows], int(self.tokenizer.pad_token_id or 0), left)

    def forward_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Vectors of a batch from :meth:`collate_tokens`, already on the device."""
        return self.forward(batch)

    def collate(self, input_ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad a batch of token id lists to its own longest length (on the device; to a GPU
        through pinned memory, without blocking)."""
        batch = self.collate_tokens(input_ids, list(range(len(input_ids))))
        return {k: to_device(v, self.device) for k, v in batch.items()}

    def use_cuda_graphs(self, on: bool = True, step: int = 16) -> None:
        """Replay the forward pass from CUDA graphs (:mod:`~fusionrank.encoders.graphs`):
        each batch padded to a power-of-two number of rows and a multiple of ``step``
        tokens, one graph per such shape. For a torch model on CUDA in fp32 or with the
        weights cast; what :meth:`forward` returns is then valid until its next call."""
        if on and (self.model is None or self.device.type != "cuda" or self.cast == "autocast"):
            raise InvalidArgumentError(
                "CUDA graphs need the torch backend on cuda, in fp32 or with the weights cast"
            )
        self.graphed = GraphedForward(self._forward) if on else None
        self.graph_step = step

    def _graph_shape(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch padded to a graph's shape: rows to a power of two (padding rows attend
        to their first token only), tokens to a multiple of ``graph_step`` (padding tokens
        masked out, as a batch's own padding is)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b, s = ids.shape
        rows = pow2_rows(b)
        width = min(-(-s // self.graph_step) * self.graph_step, max(s, self.config.max_length))
        if (rows, width) == (b, s):
            return batch
        pad = int(self.tokenizer.pad_token_id or 0)
        padded_ids = torch.full((rows, width), pad, dtype=ids.dtype, device=ids.device)
        padded_mask = torch.zeros((rows, width), dtype=mask.dtype, device=mask.device)
        padded_ids[:b, :s] = ids
        padded_mask[:b, :s] = mask
        padded_mask[b:, 0] = 1
        return {"input_ids": padded_ids, "attention_mask": padded_mask}

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.onnx is not None:
            hidden = self.onnx(batch)
        else:
            assert self.model is not None
            inputs = attention_mask_4d(batch) if self.mask_4d else batch
            with autocast(self.device, self.precision, self.cast):
                hidden = self.model(**inputs).last_hidden_state  # (batch, seq, dim)
        return pool_tokens(hidden, batch["attention_mask"], self.config.pooling, self.config.normalize)

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled (and normalised) vectors of one padded batch, (batch, dim) float32."""
        if self.graphed is not None:
            return self.graphed(self._graph_shape(batch))[: len(batch["input_ids"])]
        return self._forward(batch)

    def encode(self, batch: Batch, batch_size: int = 64) -> np.ndarray:
        """Encode texts in order (sorted by length internally to cut padding)."""
        texts = texts_of(batch, self)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.encode_tokens(ids, rows.tolist()).cpu().numpy()
        return out
