"""Process resource readings: peak memory for benchmarks, available memory for the models
that must refuse a job before allocating more than the machine has."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from fusionrank.errors import FusionRankError


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    Reads ``VmHWM`` from ``/proc/self/status``, which starts afresh at ``exec``; the
    ``ru_maxrss`` of ``getrusage`` does not (a child reports its parent's peak at fork
    time when that is larger), so it is only the fallback where /proc is missing.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class InsufficientMemoryError(FusionRankError, MemoryError):
    """A job would need more memory than allowed or available; raised before allocating."""


def available_memory_bytes() -> int:
    """Memory the kernel can give this process now (``MemAvailable``), else physical memory.

    >>> available_memory_bytes() > 0
    True
    """
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
