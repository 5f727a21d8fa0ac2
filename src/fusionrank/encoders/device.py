"""Where the encoders run: device checks, host-to-device copies and decoding workers."""

from __future__ import annotations

import os

import torch

from fusionrank.errors import InvalidArgumentError


def check_device(device: str) -> None:
    """Refuse a device that is not here (``cpu``, ``cuda`` or ``cuda:N``), in one line."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise InvalidArgumentError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError("--device cuda was asked for but no CUDA device is available")
        if index and int(index) >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )


def to_device(tensor: torch.Tensor, device: torch.device, **kwargs: object) -> torch.Tensor:
    """``tensor`` on ``device``; to a GPU through pinned memory, without blocking the host."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True, **kwargs)  # type: ignore[call-overload]
    return tensor.to(device, **kwargs)  # type: ignore[call-overload]


def decode_workers(requested: int | None, device: str) -> int:
    """Image decoding worker processes: ``requested``, else one per spare core on a GPU
    (at most 8: the GPU outruns decoding) and one on the CPU (decoding a 256 px JPEG costs
    a few ms against >100 ms of forward pass, and the workers share the cores with it)."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores - 1)) if device.startswith("cuda") else 1
