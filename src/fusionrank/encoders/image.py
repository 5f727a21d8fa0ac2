"""Image encoder: a torchvision ResNet with its classifier removed (pooled penultimate
features), batch norm folded into the convolutions and run channels_last."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fusionrank.encoders.base import Batch, InputKind, images_of
from fusionrank.encoders.device import to_device
from fusionrank.encoders.precision import (
    Backend,
    Cast,
    Precision,
    autocast,
    cast_input,
    cast_model,
    check_cast,
    check_precision,
    resolve_cast,
)
from fusionrank.encoders.weights import ModelNotFoundError, file_identity
from fusionrank.errors import InvalidArgumentError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
DEFAULT_IMAGE_MODEL = "resnet50"


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Architecture, weights and output normalisation."""

    model: str | None = None
    """A torchvision ResNet name (resnet18 ... resnet152); None: resnet50."""
    weights: str | None = "DEFAULT"
    """torchvision weight enum name (``DEFAULT``, ``IMAGENET1K_V2`` ...; used only when in the
    torch hub cache), a local checkpoint (``.safetensors``, or a ``torch.save`` state dict
    loaded with ``weights_only=True``), or ``None`` for random weights (tests, benchmarks)."""
    normalize: bool = True
    """L2-normalise the pooled features."""
    precision: Precision = "fp32"
    """``fp32``, or ``bf16``/``fp16`` on a GPU (int8 has no linear layer to act on)."""
    optimize: bool = True
    """Fold batch norm into the convolutions and run channels_last (the same features to
    ~1e-6); ``False`` runs torchvision's module as it is."""
    backend: Backend = "torch"
    """``torch``: the only backend of the ResNets (ONNX Runtime serves the text encoder)."""
    cast: Cast = "auto"
    """How bf16/fp16 run: ``weights`` cast once, ``autocast`` per batch, ``auto`` (weights on
    CUDA, autocast on the CPU)."""

    def __post_init__(self) -> None:
        if self.model is not None and self.model not in RESNETS:
            raise InvalidArgumentError(f"unknown image model {self.model!r}; expected one of {RESNETS}")
        check_cast(self.cast)


def _weights_enum(model: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(model)


def _cached_enum_weights(model: str, tag: str) -> Any:
    """The weight enum member, only if its file is already in the torch hub cache."""
    enum = _weights_enum(model)
    try:
        member = enum[tag] if tag != "DEFAULT" else enum.DEFAULT
    except KeyError as exc:
        raise InvalidArgumentError(
            f"{model} has no weights {tag!r}; known: {[w.name for w in enum]}"
        ) from exc
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
    if not cached.exists():
        raise ModelNotFoundError(
            f"weights {model}.{member.name} are not in the torch hub cache ({cached}) and this "
            "machine cannot download them. Copy the file there, or pass a local checkpoint "
            "with --weights /path/to/resnet.safetensors (or a torch.save state dict)."
        )
    return member, cached


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely: safetensors, or torch.load with ``weights_only=True``."""
    if not path.exists():
        raise ModelNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def inference_graph(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode ResNet with each batch norm folded into the convolution before it
    (``torch.fx`` checks that the convolution feeds only the norm) and its weights in
    channels_last, the layout oneDNN's and cuDNN's fast convolutions use."""
    from torch.fx.experimental.optimization import fuse

    return fuse(model.eval()).to(memory_format=torch.channels_last)


class ImageEncoder:
    """``encode(images) -> float32 (n, dim)``; the engine's fast path runs ``preprocess(PIL)
    -> tensor`` in DataLoader workers and ``encode_pixels(tensor batch) -> (n, dim)``."""

    config_class: ClassVar[type] = ImageEncoderConfig
    inputs: ClassVar[tuple[InputKind, ...]] = ("image",)

    def __init__(self, config: ImageEncoderConfig | None = None, device: str = "cpu") -> None:
        from torchvision.models import get_model

        self.config = config or ImageEncoderConfig()
        self.check(self.config, device)
        self.precision: str = self.config.precision
        self.backend: str = self.config.backend
        self.identity: dict[str, Any]
        name = self.config.model or DEFAULT_IMAGE_MODEL
        enum = _weights_enum(name)
        model = get_model(name, weights=None)
        weights = self.config.weights
        if weights is None:
            self.identity = {"source": "random init", "model": name}
            self.preprocess = enum.DEFAULT.transforms()
        elif Path(weights).suffix in (".safetensors", ".pt", ".pth", ".bin") or Path(weights).exists():
            path = Path(weights).expanduser()
            model.load_state_dict(load_state_dict(path))
            self.identity = file_identity(path)
            self.preprocess = enum.DEFAULT.transforms()
        else:
            member, cached = _cached_enum_weights(name, weights)
            model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
            self.identity = {**file_identity(cached, "torch hub cache"), "weights": str(member)}
            self.preprocess = member.transforms()
        self.dim = int(model.fc.in_features)
        model.fc = torch.nn.Identity()
        self.device = torch.device(device)
        self.cast: str = resolve_cast(self.config.cast, self.precision, self.device)
        model = model.eval()
        model = (inference_graph(model) if self.config.optimize else model).to(self.device)
        self.model = cast_model(model, self.precision, self.cast)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input size per job: tune once
        self.normalized: bool = self.config.normalize

    @classmethod
    def check(cls, config: ImageEncoderConfig, device: str) -> None:
        """Refuse a precision or backend that cannot run on ``device``."""
        check_precision(config.precision, device, config.backend, "image")

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) preprocessed pixels -> (batch, dim) float32."""
        layout = torch.channels_last if self.config.optimize else torch.preserve_format
        with autocast(self.device, self.precision, self.cast):
            pixels = to_device(pixels, self.device, memory_format=layout)
            feats = self.model(cast_input(pixels, self.precision, self.cast)).float()
        if self.config.normalize:
            feats = torch.nn.functional.normalize(feats, p=2, dim=1)
        return feats

    def encode(self, batch: Batch, batch_size: int = 32) -> np.ndarray:
        """Encode PIL images in order."""
        images = images_of(batch, self)
        out = []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack(
                [self.preprocess(im.convert("RGB")) for im in images[start : start + batch_size]]
            )
            out.append(self.encode_pixels(pixels).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)
