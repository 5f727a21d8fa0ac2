"""Where the encoders run: device checks, host-to-device copies (one batch ahead, on a
side stream) and the feeding workers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

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


T = TypeVar("T")


class DeviceFeed:
    """Host batches (dicts of tensors) on the device, double-buffered: on CUDA each batch is
    pinned (if it is not already) and copied without blocking on a side stream while the
    model runs the batch before it; the model's stream waits for the copy only when it
    takes the batch. Elsewhere the batch is moved as it is (on the CPU: the same tensors)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def __call__(
        self, items: Iterable[tuple[T, dict[str, torch.Tensor]]]
    ) -> Iterator[tuple[T, dict[str, torch.Tensor]]]:
        """``(tag, batch)`` pairs with each batch on the device, in order."""
        if self.stream is None:
            for tag, batch in items:
                yield tag, {k: v.to(self.device) for k, v in batch.items()}
            return
        ahead = None
        for tag, batch in items:
            with torch.cuda.stream(self.stream):
                moved = {
                    k: (v if v.is_pinned() else v.pin_memory()).to(self.device, non_blocking=True)
                    for k, v in batch.items()
                }
            copied = self.stream.record_event()
            if ahead is not None:
                yield self._take(*ahead)
            ahead = (tag, moved, copied)
        if ahead is not None:
            yield self._take(*ahead)

    def _take(
        self, tag: T, moved: dict[str, torch.Tensor], copied: torch.cuda.Event
    ) -> tuple[T, dict[str, torch.Tensor]]:
        """The batch for the current stream: it waits for the copy, and the allocator keeps
        the batch's memory until the current stream's work on it is done."""
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        for v in moved.values():
            v.record_stream(current)
        return tag, moved


def text_workers(requested: int | None, device: str) -> int:
    """Text feeding worker processes (composing, tokenising and collating shards): ``requested``,
    else one per spare core on a GPU (at most 8) and none on the CPU, where the shard is
    prepared inline (workers would only take cores from the model)."""
    if requested is not None:
        return requested
    return decode_workers(None, device) if device.startswith("cuda") else 0


def decode_workers(requested: int | None, device: str) -> int:
    """Image decoding worker processes: ``requested``, else one per spare core on a GPU
    (at most 8: the GPU outruns decoding) and one on the CPU (decoding a 256 px JPEG costs
    a few ms against >100 ms of forward pass, and the workers share the cores with it)."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores - 1)) if device.startswith("cuda") else 1
