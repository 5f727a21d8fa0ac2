"""Image decoding for the batch engine: which decoder a job uses, and the GPU path.

The choice is made once per job, here (:func:`choose_decoder`), and recorded in the
manifest: ``nvjpeg`` when the job runs on CUDA, the encoder has the pixel fast path and its
preprocessing is one the GPU can apply (a resize of the shorter side, a centre crop, a
normalisation: :func:`pixel_spec`); ``pil`` otherwise (the CPU path: PIL decodes and the
encoder's own ``preprocess`` runs in the DataLoader workers).

With ``nvjpeg`` the workers only read each file's bytes; a batch of JPEGs is decoded on the
GPU in one call (``torchvision.io.decode_jpeg(list, device="cuda")``), resized, cropped and
normalised there. What the GPU decoder refuses (another format, a CMYK or broken JPEG, a
whole batch it fails on: then each file is tried alone) is decoded by PIL with the
encoder's ``preprocess`` on the host, so no row is lost; a file PIL cannot read either is an
error row, as on the CPU path.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fusionrank.encoders.base import Encoder, PixelEncoder
from fusionrank.encoders.device import to_device

DECODERS: tuple[str, ...] = ("pil", "nvjpeg")
JPEG_MAGIC = b"\xff\xd8\xff"

_PASS_THROUGH = {"MaybeConvertMode", "_convert_to_rgb", "ToTensor", "MaybeToTensor", "PILToTensor"}
"""Steps of a torchvision ``Compose`` that a decoded RGB uint8 tensor scaled to [0, 1] has
already been through (mode conversion, to-tensor)."""


@dataclass(frozen=True)
class PixelSpec:
    """The preprocessing the GPU path applies: the shorter side resized to ``resize``, a
    centre crop of ``crop`` (height, width), then ``(x / 255 - mean) / std`` per channel."""

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"


def _size(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, Sequence) and len(value) == 1 and isinstance(value[0], int):
        return int(value[0])
    return None


def _crop(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) in (1, 2) and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[-1])
    return None


def pixel_spec(preprocess: Any) -> PixelSpec | None:
    """The GPU's version of an encoder's ``preprocess``, when it is one of torchvision's
    classification presets or a ``Compose`` of resize, centre crop, to-tensor and normalise
    (open_clip's); None for anything else (that encoder's images stay on the PIL path)."""
    from torchvision import transforms as T

    name = type(preprocess).__name__
    if name == "ImageClassification":
        resize, crop = _size(preprocess.resize_size), _crop(preprocess.crop_size)
        mode = getattr(preprocess.interpolation, "value", None)
        if resize is None or crop is None or mode not in ("bilinear", "bicubic"):
            return None
        return PixelSpec(resize, crop, tuple(preprocess.mean), tuple(preprocess.std), mode)
    if not isinstance(preprocess, T.Compose):
        return None
    steps = list(preprocess.transforms)
    if len(steps) < 3 or not isinstance(steps[0], T.Resize) or not isinstance(steps[1], T.CenterCrop):
        return None
    if not isinstance(steps[-1], T.Normalize):
        return None
    middle = [getattr(s, "__name__", type(s).__name__) for s in steps[2:-1]]
    if not all(m in _PASS_THROUGH for m in middle):
        return None
    resize, crop = _size(steps[0].size), _crop(steps[1].size)
    mode = getattr(steps[0].interpolation, "value", None)
    if resize is None or crop is None or steps[0].max_size is not None or mode not in ("bilinear", "bicubic"):
        return None
    norm = steps[-1]
    return PixelSpec(resize, crop, tuple(norm.mean), tuple(norm.std), mode)


def gpu_decoder_available() -> bool:
    """torchvision's batched JPEG decoder with a device argument is importable."""
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return True


def choose_decoder(device: str, encoder: Encoder) -> str:
    """``nvjpeg`` or ``pil`` for a job on ``device`` with ``encoder`` (see the module doc):
    the one place the choice is made."""
    if not device.startswith("cuda") or not isinstance(encoder, PixelEncoder):
        return "pil"
    if pixel_spec(encoder.preprocess) is None or not gpu_decoder_available():
        return "pil"
    return "nvjpeg"


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """torchvision's batched JPEG decoder: uint8 (3, H, W) RGB images on ``device``."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return list(out) if isinstance(out, list | tuple) else [out]


Decode = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]
"""A batch JPEG decoder: byte tensors -> uint8 (3, H, W) images on the device (raises to refuse)."""


def _resized(images: torch.Tensor, spec: PixelSpec) -> torch.Tensor:
    """Same-size decoded uint8 images ``(n, 3, H, W)`` -> float32 ``(n, 3, crop_h, crop_w)``
    on their device: the shorter side resized (antialiased, as torchvision resizes), then
    centre-cropped; values in [0, 255]."""
    _, _, h, w = images.shape
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(spec.resize * long / short)
    size = (spec.resize, new_long) if h <= w else (new_long, spec.resize)
    x = images.float()
    if (h, w) != size:
        x = torch.nn.functional.interpolate(
            x, size=size, mode=spec.interpolation, antialias=True, align_corners=False
        ).clamp_(0, 255)
    ch, cw = spec.crop
    top, left = int(round((size[0] - ch) / 2.0)), int(round((size[1] - cw) / 2.0))
    return x[:, :, top : top + ch, left : left + cw]


def to_pixels(image: torch.Tensor, spec: PixelSpec) -> torch.Tensor:
    """One decoded uint8 (3, H, W) image -> float32 (3, crop_h, crop_w) pixels, on its device."""
    return _resized(image.unsqueeze(0), spec)[0]


def batch_pixels(images: list[torch.Tensor], spec: PixelSpec) -> torch.Tensor:
    """Decoded uint8 (3, H, W) images -> float32 (n, 3, crop_h, crop_w), in their order:
    the images of one size resized together (one kernel per size, not per image)."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for k, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(k)
    if len(by_size) == 1:  # the usual batch: one size, resized as it is
        return _resized(torch.stack(images), spec)
    ch, cw = spec.crop
    out = torch.empty((len(images), 3, ch, cw), dtype=torch.float32, device=images[0].device)
    for ks in by_size.values():
        out[to_device(torch.tensor(ks), out.device)] = _resized(torch.stack([images[k] for k in ks]), spec)
    return out


@functools.lru_cache(maxsize=16)
def _mean_std(spec: PixelSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec's mean and std as (1, 3, 1, 1) tensors on ``device``, made once: a tensor
    made from Python numbers on a GPU is a blocking copy, which would make the host wait
    for every batch already queued."""
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    return mean, std


def normalise(pixels: torch.Tensor, spec: PixelSpec) -> torch.Tensor:
    """A (batch, 3, H, W) float tensor in [0, 255] -> the encoder's normalised pixels."""
    mean, std = _mean_std(spec, pixels.device)
    return (pixels / 255.0 - mean) / std


def host_pixels(data: torch.Tensor, preprocess: Callable) -> torch.Tensor:
    """PIL's decoding and the encoder's own preprocessing of one file's bytes (the CPU path)."""
    from PIL import Image

    with Image.open(io.BytesIO(data.numpy().tobytes())) as im:
        return preprocess(im.convert("RGB"))


def gpu_batch(
    items: list[tuple[int, torch.Tensor, str]],
    spec: PixelSpec,
    device: torch.device,
    preprocess: Callable,
    decode: Decode = decode_jpegs,
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """Pixels ``(n, 3, H, W)`` on ``device`` of a batch of ``(row, file bytes, path)``: the
    JPEGs decoded together by ``decode``, each file it refuses (or, when the whole call
    fails, each it refuses alone) decoded on the host; the rows kept and the rows PIL could
    not read either, with their reasons."""
    jpeg = [k for k, (_, data, _) in enumerate(items) if bytes(data[:3].tolist()) == JPEG_MAGIC]
    decoded: dict[int, torch.Tensor] = {}
    if jpeg:
        try:
            decoded = dict(zip(jpeg, decode([items[k][1] for k in jpeg], device)))
        except Exception:  # one bad file can fail the whole batch: then each alone
            for k in jpeg:
                try:
                    decoded[k] = decode([items[k][1]], device)[0]
                except Exception:
                    pass  # the host decodes it below
    gpu_rows = [items[k][0] for k in decoded]
    parts = []
    if decoded:
        parts.append(normalise(batch_pixels(list(decoded.values()), spec), spec))
    host_rows: list[int] = []
    host: list[torch.Tensor] = []
    bad: list[tuple[int, str]] = []
    for k, (row, data, rel) in enumerate(items):
        if k in decoded:
            continue
        try:
            host.append(host_pixels(data, preprocess))
        except Exception as exc:  # what PIL cannot read is an error row, as on the CPU path
            bad.append((row, f"unreadable image {rel!r}: {type(exc).__name__}: {exc}"))
            continue
        host_rows.append(row)
    if host:
        parts.append(torch.stack(host).to(device, non_blocking=True))
    if not parts:
        return [], None, bad
    return gpu_rows + host_rows, torch.cat(parts), bad
