"""Process resource readings for benchmarks."""

from __future__ import annotations

import resource
from pathlib import Path


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
