"""Ray for one job: start a local instance, join a cluster, or use the one already running.

One contract for every stage that runs on Ray (batch embedding, the distributed ranker):
inside a process that already runs Ray (``ray.is_initialized()``), that instance is used
and left as it is. Else ``address`` (or ``$RAY_ADDRESS``, as set by ``ray job submit``)
joins a running cluster, which is left running (the driver only disconnects); with
neither, a local instance is started for the job with the machine's cores, no dashboard
and its files under the system temp folder (never the working directory), and shut down
at the end, also on an error; its session folder (Ray's logs) is removed after a job that
finished and kept after one that failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RAY_MISSING = "the ray engine needs Ray: pip install 'fusionrank[ray]'"


def require_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a one-line error naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ValueError(RAY_MISSING) from exc
    return ray


def ray_temp_dir() -> Path:
    """Where a local Ray instance keeps its sessions and logs: outside any work tree."""
    return Path(tempfile.gettempdir()) / "fusionrank-ray"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def ray_session(address: str | None = None, quiet: bool = False) -> Iterator[Any]:
    """Ray for one job: the running instance of this process, a joined cluster, or a local
    instance started here; what this function started or joined it shuts down or leaves."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
        ray.init(
            address="local",
            num_cpus=_cores(),
            include_dashboard=False,
            log_to_driver=not quiet,
            logging_level=logging.WARNING,
            _temp_dir=str(ray_temp_dir()),
        )
        session = ray_temp_dir() / ray.get_runtime_context().get_session_name()
    else:
        ray.init(address=address)
        session = None
    done = False
    try:
        yield ray
        done = True
    finally:
        ray.shutdown()  # stops an instance started here; only disconnects from a cluster
        if session is not None and done:  # a finished job's logs go; a failed one's stay to be read
            shutil.rmtree(session, ignore_errors=True)
