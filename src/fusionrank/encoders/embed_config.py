"""The settings of an embedding job (:class:`EmbedConfig`) and the encoder they load."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from fusionrank.columns import ITEM_ID

EncoderKind = Literal["text", "image", "clip"]
Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class EmbedConfig:
    """Everything that decides an embedding job's output, and how fast it runs."""

    encoder: EncoderKind = "text"
    """``text`` (transformers), ``image`` (torchvision ResNet) or ``clip`` (open_clip)."""
    model: str | None = None
    """Model name or local path; default per encoder: all-MiniLM-L6-v2, resnet50, ViT-B-32."""
    weights: str | None = "DEFAULT"
    """Image encoder weights: enum name (from the torch hub cache), checkpoint path, or None."""
    clip_pretrained: str | None = None
    """CLIP pretrained tag (from the HF cache) or checkpoint path; None = random weights."""
    fields: tuple[str, ...] | None = None
    """Catalogue columns joined into the item text (text, and CLIP without images)."""
    template: str | None = None
    """Alternative to ``fields``: a format string such as ``"{title} ({year})"``."""
    id_column: str = ITEM_ID
    """Catalogue column with the item id."""
    image_column: str | None = None
    """Column with image paths relative to ``image_root`` (image, and CLIP on images)."""
    image_root: str | None = None
    """Folder that every image path must stay inside."""
    pooling: Literal["mean", "cls"] = "mean"
    """Text pooling."""
    max_length: int = 256
    """Text tokens kept."""
    normalize: bool = True
    """L2-normalise vectors (CLIP always is)."""
    precision: Precision = "fp32"
    """bf16/fp16 run under autocast (fp16 only on CUDA)."""
    shard_size: int = 4096
    """Catalogue rows per output shard (and per resumable unit of work)."""
    batch_size: int = 64
    """Rows per forward pass."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    workers: int = 2
    """DataLoader worker processes that decode images."""
    quiet: bool = False
    """No progress bar (for logs); the summary line is still printed."""

    def __post_init__(self) -> None:
        if self.encoder not in ("text", "image", "clip"):
            raise ValueError(f"encoder must be text, image or clip, got {self.encoder!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("fp16 needs --device cuda; use bf16 or fp32 on the CPU")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is available")
        if self.encoder == "image" and not self.image_column:
            raise ValueError("the image encoder needs --image-column")
        if self.image_column and not self.image_root:
            raise ValueError("--image-column needs --image-root (images must stay inside it)")
        if self.modality == "text" and not (self.fields or self.template):
            raise ValueError("text embedding needs --fields (e.g. title,genres) or a template")
        if self.shard_size < 1 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("shard_size and batch_size must be >= 1, workers >= 0")

    @property
    def modality(self) -> str:
        return "image" if self.encoder == "image" or self.image_column else "text"

    def decisive(self) -> dict[str, Any]:
        """The settings that decide the output (every field but the speed knobs)."""
        speed = ("batch_size", "device", "workers", "quiet")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in speed}


def build_encoder(config: EmbedConfig) -> Any:
    """The encoder object a config asks for (loaded through the real loading code)."""
    if config.encoder == "text":
        from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

        kwargs = {"model": config.model} if config.model else {}
        return TextEncoder(
            TextEncoderConfig(
                pooling=config.pooling, max_length=config.max_length, normalize=config.normalize, **kwargs
            ),
            config.device,
        )
    if config.encoder == "image":
        from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig

        return ImageEncoder(
            ImageEncoderConfig(
                model=config.model or "resnet50", weights=config.weights, normalize=config.normalize
            ),
            config.device,
        )
    from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig

    return ClipEncoder(
        ClipEncoderConfig(model=config.model or "ViT-B-32", pretrained=config.clip_pretrained), config.device
    )


def autocast(config: EmbedConfig) -> contextlib.AbstractContextManager:
    if config.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if config.device.startswith("cuda") else "cpu", dtype=dtype)
