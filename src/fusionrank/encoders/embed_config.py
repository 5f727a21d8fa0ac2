"""The settings of an embedding job (:class:`EmbedConfig`) and the encoder they load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from fusionrank.columns import ITEM_ID
from fusionrank.encoders.device import check_device
from fusionrank.encoders.precision import Backend, Precision, check_precision

EncoderKind = Literal["text", "image", "clip"]


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
    """``fp32``; ``int8``: dynamic quantisation of the linear layers (text, CLIP; CPU);
    ``bf16``/``fp16``: autocast (GPU; fp16 only on CUDA, bf16 on the CPU is slow)."""
    backend: Backend = "torch"
    """``torch``, or ``onnx``: ONNX Runtime on the CPU (text encoder; fp32 or int8)."""
    shard_size: int = 4096
    """Catalogue rows per output shard (and per resumable unit of work)."""
    batch_size: int = 64
    """Rows per forward pass."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``cuda:N``."""
    workers: int | None = None
    """DataLoader worker processes that decode images; None: one on the CPU, one per spare
    core (at most 8) with a GPU."""
    quiet: bool = False
    """No progress bar (for logs); the summary line is still printed."""

    def __post_init__(self) -> None:
        if self.encoder not in ("text", "image", "clip"):
            raise ValueError(f"encoder must be text, image or clip, got {self.encoder!r}")
        check_precision(self.precision, self.device, self.backend, self.encoder)
        check_device(self.device)
        if self.encoder == "image" and not self.image_column:
            raise ValueError("the image encoder needs --image-column")
        if self.image_column and not self.image_root:
            raise ValueError("--image-column needs --image-root (images must stay inside it)")
        if self.modality == "text" and not (self.fields or self.template):
            raise ValueError("text embedding needs --fields (e.g. title,genres) or a template")
        if self.shard_size < 1 or self.batch_size < 1 or (self.workers is not None and self.workers < 0):
            raise ValueError("shard_size and batch_size must be >= 1, workers >= 0")

    @property
    def modality(self) -> str:
        return "image" if self.encoder == "image" or self.image_column else "text"

    def decisive(self) -> dict[str, Any]:
        """The settings that decide the output (every field but the speed knobs). The
        default backend is left out, so that settings written before it existed (job.json,
        the content vectors' folder key) read the same."""
        speed = ("batch_size", "device", "workers", "quiet")
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in speed}
        if out["backend"] == "torch":
            del out["backend"]
        return out


def build_encoder(config: EmbedConfig) -> Any:
    """The encoder object a config asks for (loaded through the real loading code)."""
    if config.encoder == "text":
        from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

        kwargs = {"model": config.model} if config.model else {}
        return TextEncoder(
            TextEncoderConfig(
                pooling=config.pooling,
                max_length=config.max_length,
                normalize=config.normalize,
                precision=config.precision,
                backend=config.backend,
                **kwargs,
            ),
            config.device,
        )
    if config.encoder == "image":
        from fusionrank.encoders.image import ImageEncoder, ImageEncoderConfig

        return ImageEncoder(
            ImageEncoderConfig(
                model=config.model or "resnet50",
                weights=config.weights,
                normalize=config.normalize,
                precision=config.precision,
            ),
            config.device,
        )
    from fusionrank.encoders.clip import ClipEncoder, ClipEncoderConfig

    return ClipEncoder(
        ClipEncoderConfig(
            model=config.model or "ViT-B-32", pretrained=config.clip_pretrained, precision=config.precision
        ),
        config.device,
    )
