"""CLIP encoder (open_clip): text and images in one joint, L2-normalised space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fusionrank.encoders.base import Batch, InputKind, images_of, texts_of
from fusionrank.encoders.device import to_device
from fusionrank.encoders.precision import (
    Backend,
    Cast,
    Precision,
    autocast,
    cast_input,
    cast_model,
    check_precision,
    quantize_linears,
    resolve_cast,
)
from fusionrank.encoders.weights import ModelNotFoundError, file_identity, folder_identity, hub_offline

DEFAULT_CLIP_MODEL = "ViT-B-32"


@dataclass(frozen=True)
class ClipEncoderConfig:
    """Which open_clip model and weights."""

    model: str | None = None
    """An open_clip model name, or a local folder with ``open_clip_config.json`` and
    weights; None: ViT-B-32."""
    pretrained: str | None = None
    """A pretrained tag (e.g. ``laion2b_s34b_b79k``, served from the HF cache), a local
    checkpoint file, or ``None`` for random weights (tests, benchmarks)."""
    precision: Precision = "fp32"
    """``fp32``; ``int8`` (the transformers' linear layers, dynamically quantised; CPU);
    ``bf16``/``fp16`` (GPU)."""
    backend: Backend = "torch"
    """``torch``: the only backend of CLIP (ONNX Runtime serves the text encoder)."""
    cast: Cast = "auto"
    """How bf16/fp16 run: ``weights`` cast once, ``autocast`` per batch, ``auto`` (weights on
    CUDA, autocast on the CPU)."""

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"clip_pretrained": ("pretrained",)}
    """``clip_pretrained`` (the ``fusionrank embed --clip-pretrained`` flag) sets ``pretrained``."""


class ClipEncoder:
    """Text and images into one space: ``encode(texts or images)``, ``encode_text``,
    ``encode_images``; always normalised. The engine's fast paths tokenise a shard at once
    (a fixed context: rows run in order) and preprocess images in DataLoader workers."""

    config_class: ClassVar[type] = ClipEncoderConfig
    inputs: ClassVar[tuple[InputKind, ...]] = ("text", "image")
    sort_by_length = False

    def __init__(self, config: ClipEncoderConfig | None = None, device: str = "cpu") -> None:
        import open_clip

        self.config = config or ClipEncoderConfig()
        self.check(self.config, device)
        self.precision: str = self.config.precision
        self.backend: str = self.config.backend
        self.identity: dict[str, Any]
        name, pretrained = self.config.model or DEFAULT_CLIP_MODEL, self.config.pretrained
        if Path(name).expanduser().is_dir():
            folder = Path(name).expanduser()
            name = f"local-dir:{folder}"
            pretrained = None
            self.identity = folder_identity(folder, "local folder")
        elif pretrained and Path(pretrained).expanduser().exists():
            self.identity = file_identity(Path(pretrained).expanduser())
        elif pretrained:
            self.identity = {"source": "open_clip tag via the HF cache", "model": name, "tag": pretrained}
        else:
            self.identity = {"source": "random init", "model": name}
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except RuntimeError as exc:
            if pretrained and "download" in str(exc).lower():
                raise ModelNotFoundError(
                    f"open_clip weights {name}/{pretrained} are not in the Hugging Face "
                    f"cache{' (HF_HUB_OFFLINE is set)' if hub_offline() else ''} and cannot be "
                    "downloaded here. Pass a local checkpoint with --clip-pretrained /path/to/"
                    "open_clip_model.safetensors, or a folder with open_clip_config.json as --model."
                ) from exc
            raise
        self.tokenizer = open_clip.get_tokenizer(name)
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.cast: str = resolve_cast(self.config.cast, self.precision, self.device)
        model = model.eval()
        if self.precision == "int8":
            model = quantize_linears(model)
        built: Any = cast_model(model.to(self.device), self.precision, self.cast)
        self.model = built
        projection = getattr(built, "text_projection", None)
        self.dim = int(projection.shape[1]) if projection is not None else int(built.visual.output_dim)
        self.normalized = True

    @classmethod
    def check(cls, config: ClipEncoderConfig, device: str) -> None:
        """Refuse a precision or backend that cannot run on ``device``."""
        check_precision(config.precision, device, config.backend, "clip")

    def tokenize(self, texts: list[str]) -> list[torch.Tensor]:
        """Each text's token ids, padded to the model's fixed context length."""
        return list(self.tokenizer(texts))  # (context,) rows of one (n, context) tensor

    def encode_tokens(self, tokens: Sequence[torch.Tensor], rows: list[int]) -> torch.Tensor:
        """Vectors (len(rows), dim) of the token rows ``tokens[r]``, ``r`` in ``rows``; normalised."""
        return self.forward_text(torch.stack([tokens[i] for i in rows]))

    def collate_tokens(self, tokens: Sequence[torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
        """The batch of token rows ``tokens[r]``, ``r`` in ``rows``, on the host."""
        return {"tokens": torch.stack([tokens[i] for i in rows])}

    def forward_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Vectors of a batch from :meth:`collate_tokens`, already on the device."""
        return self.forward_text(batch["tokens"])

    @torch.inference_mode()
    def forward_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, context) token ids -> (batch, dim), normalised."""
        with autocast(self.device, self.precision, self.cast):
            out = self.model.encode_text(to_device(tokens, self.device))
        return torch.nn.functional.normalize(out.float(), dim=-1)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) preprocessed pixels -> (batch, dim), normalised."""
        with autocast(self.device, self.precision, self.cast):
            pixels = cast_input(to_device(pixels, self.device), self.precision, self.cast)
            out = self.model.encode_image(pixels)
        return torch.nn.functional.normalize(out.float(), dim=-1)

    def encode(self, batch: Batch) -> np.ndarray:
        """Vectors of texts or of PIL images (one kind per batch), in order."""
        if batch and not isinstance(batch[0], str):
            return self.encode_images(images_of(batch, self))
        return self.encode_text(texts_of(batch, self))

    def encode_text(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = [
            self.forward_text(self.tokenizer(texts[s : s + batch_size])).cpu().numpy()
            for s in range(0, len(texts), batch_size)
        ]
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    def encode_images(self, images: list, batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack(
                [self.preprocess(im.convert("RGB")) for im in images[start : start + batch_size]]
            )
            out.append(self.encode_pixels(pixels).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)
