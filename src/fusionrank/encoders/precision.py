"""Numeric precision of inference: which precision runs where, autocast, and int8.

- ``fp32``: the reference; every other setting is measured against it.
- ``int8``: dynamic quantisation of the linear layers (weights int8 per output channel,
  activations quantised per batch over the full 8-bit range), CPU only.
- ``bf16`` / ``fp16``: for GPUs. fp16 is refused on the CPU; bf16 runs there but is slow on
  cores without native bf16 instructions. How the model gets there is its ``cast``
  (:data:`CASTS`): the weights cast once to the half type when the model loads
  (``weights``: no per-batch casts, every activation half-size: the faster on a GPU) or
  autocast around every batch (``autocast``: fp32 weights, each op in the precision autocast
  picks, for a model that needs fp32 somewhere). ``auto`` is ``weights`` on CUDA and
  ``autocast`` elsewhere (the CPU's vectors stay those of before ``cast`` existed).
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from typing import Literal

import torch

from fusionrank.errors import InvalidArgumentError

Precision = Literal["fp32", "int8", "bf16", "fp16"]
Backend = Literal["torch", "onnx"]
Cast = Literal["auto", "weights", "autocast"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "bf16", "fp16")
BACKENDS: tuple[str, ...] = ("torch", "onnx")
CASTS: tuple[str, ...] = ("auto", "weights", "autocast")

KEEP_FP32 = (r"(^|\.)layer\.0\.output\.dense$",)
"""Linear layers that int8 leaves in fp32 (module names, regular expressions): the first
transformer block's feed-forward output projection of a BERT-family model, whose input has
the largest activation outliers. Quantising it alone costs MiniLM about 0.0015 mean cosine
against fp32 (0.993 -> 0.994 on short texts, 0.989 -> 0.991 on ~200-token texts)."""

BF16_CPU_NOTE = (
    "note: bf16 on the CPU runs under autocast and is slow without native bf16 instructions "
    "(AVX512-BF16 or AMX); fp32 or int8 are faster there"
)


def check_precision(precision: str, device: str, backend: str = "torch", kind: str = "text") -> None:
    """Refuse a precision that cannot run here, with a one-line reason (:class:`InvalidArgumentError`)."""
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be torch or onnx, got {backend!r}")
    cuda = device.startswith("cuda")
    if precision == "fp16" and not cuda:
        raise InvalidArgumentError(
            "fp16 needs --device cuda; use fp32 or int8 on the CPU (bf16 runs there, slowly)"
        )
    if precision == "int8" and cuda:
        raise InvalidArgumentError(
            "int8 (dynamic quantisation) runs on the CPU only; on cuda use bf16 or fp16"
        )
    if precision == "int8" and kind == "image":
        raise InvalidArgumentError(
            "int8 quantises linear layers and a ResNet has none once its classifier is removed; "
            "use fp32 (already channels_last with fused batch norm) or bf16/fp16 on a GPU"
        )
    if backend == "onnx":
        if kind != "text":
            raise InvalidArgumentError(f"--backend onnx serves the text encoder only, not {kind}")
        if cuda:
            raise InvalidArgumentError(
                "--backend onnx runs on the CPU (onnxruntime's CPU provider); use torch on cuda"
            )
        if precision not in ("fp32", "int8"):
            raise InvalidArgumentError(f"--backend onnx runs fp32 or int8, not {precision}")


def half_dtype(precision: str) -> torch.dtype | None:
    """The torch dtype of a half precision (bf16, fp16); None for fp32 and int8."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def check_cast(cast: str) -> None:
    """Refuse a ``cast`` setting that is not one of :data:`CASTS`, naming it."""
    if cast not in CASTS:
        raise InvalidArgumentError(f"cast must be one of {', '.join(CASTS)}, got {cast!r}")


def resolve_cast(cast: str, precision: str, device: torch.device | str) -> str:
    """How a model runs ``precision`` on ``device``: ``weights`` (cast once), ``autocast``
    (per batch), or ``none`` (fp32, int8). ``auto``: ``weights`` on CUDA, where it is the
    faster (no weight casts per batch, half-size activations in every op), else
    ``autocast`` (the CPU's bf16 vectors as before)."""
    check_cast(cast)
    if half_dtype(precision) is None:
        return "none"
    if cast == "auto":
        return "weights" if torch.device(device).type == "cuda" else "autocast"
    return cast


def cast_model(model: torch.nn.Module, precision: str, cast: str) -> torch.nn.Module:
    """``model`` with its weights in the half type when ``cast`` (resolved) is ``weights``;
    unchanged otherwise. Done once, at load."""
    dtype = half_dtype(precision)
    return model.to(dtype) if cast == "weights" and dtype is not None else model


def cast_input(x: torch.Tensor, precision: str, cast: str) -> torch.Tensor:
    """A float input in the half type of weights cast by :func:`cast_model` (they must
    match); unchanged otherwise."""
    dtype = half_dtype(precision)
    return x.to(dtype) if cast == "weights" and dtype is not None else x


def autocast(
    device: torch.device | str, precision: str, cast: str = "autocast"
) -> contextlib.AbstractContextManager:
    """Autocast for bf16/fp16 run with ``cast="autocast"``; nothing for fp32, int8 and
    weights already cast."""
    dtype = half_dtype(precision)
    if dtype is None or cast != "autocast":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def quantize_linears(model: torch.nn.Module, keep_fp32: tuple[str, ...] = KEEP_FP32) -> torch.nn.Module:
    """``model`` with its ``nn.Linear`` layers dynamically quantised to int8 (in place; CPU).

    Weights are int8 per output channel; activations are quantised per call over the full
    8-bit range (torch's module quantises them to 7 bits, which costs MiniLM 0.02 mean
    cosine). Layers whose name matches a pattern of ``keep_fp32`` stay fp32."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    keep = [re.compile(p) for p in keep_fp32]
    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if type(module) is torch.nn.Linear and not any(p.search(name) for p in keep)
    }
    with warnings.catch_warnings():  # torch.ao's deprecation notices, once per layer
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            model, spec, dtype=torch.qint8, mapping={torch.nn.Linear: _full_range_linear()}, inplace=True
        )


@functools.cache
def _full_range_linear() -> type:
    """torch's dynamic int8 ``Linear`` with 8-bit (not 7-bit) activation quantisation."""
    import torch.ao.nn.quantized.dynamic as nnqd

    class FullRangeDynamicLinear(nnqd.Linear):
        int8_original_dtype = torch.float32
        """The dtype around the layer (open_clip asks int8 layers for it instead of ``weight``)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            packed = self._packed_params._packed_params
            return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False).to(x.dtype)

    return FullRangeDynamicLinear
