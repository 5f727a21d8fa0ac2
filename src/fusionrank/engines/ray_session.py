"""Ray for one job: start a local instance, join a cluster, or use the one already running.

One contract for every stage that runs on Ray (batch embedding, the distributed ranker):
inside a process that already runs Ray (``ray.is_initialized()``), that instance is used
and left as it is. Else ``address`` (or ``$RAY_ADDRESS``, as set by ``ray job submit``)
joins a running cluster, which is left running (the driver only disconnects); with
neither, a local instance is started for the job with the machine's cores, no dashboard
and its files under the system temp folder (never the working directory), and shut down
at the end, also on an error; its session folder (Ray's logs) is removed after a job that
finished and kept after one that failed. :func:`ray_in_background` does the same from a
thread of its own, so that a job can load its model while Ray starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fusionrank.errors import InvalidArgumentError

RAY_MISSING = "the ray engine needs Ray: pip install 'fusionrank[ray]'"


def require_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a one-line error naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise InvalidArgumentError(RAY_MISSING) from exc
    return ray


def ray_temp_dir() -> Path:
    """Where a local Ray instance keeps its sessions and logs: outside any work tree."""
    return Path(tempfile.gettempdir()) / "fusionrank-ray"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(signum)


class _NotMainThreadNote(logging.Filter):
    """Drops ray.init's note that it set no SIGTERM handler outside the main thread
    (:func:`ray_in_background` sets the same one there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


_NOT_MAIN_THREAD_NOTE = _NotMainThreadNote()


class RaySession:
    """One job's hold on Ray: :meth:`start` gets it (running, joined or started here),
    :meth:`stop` gives back what ``start`` took."""

    def __init__(self, address: str | None = None, quiet: bool = False) -> None:
        self.address, self.quiet = address, quiet
        self.ray: Any = None
        self._owned = False  # started or joined here, so shut down or left here
        self._session: Path | None = None

    def start(self) -> Any:
        """The ``ray`` module, connected."""
        ray = require_ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            if address is None:
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
                ray.init(
                    address="local",
                    num_cpus=_cores(),
                    include_dashboard=False,
                    log_to_driver=not self.quiet,
                    logging_level=logging.WARNING,
                    _temp_dir=str(ray_temp_dir()),
                )
                self._session = ray_temp_dir() / ray.get_runtime_context().get_session_name()
            else:
                ray.init(address=address)
            self._owned = True
        self.ray = ray
        return ray

    def stop(self, ok: bool) -> None:
        """Shut down a local instance started here (its logs removed when ``ok``, kept to
        be read after a failure), disconnect from a cluster joined here, else nothing."""
        if not self._owned:
            return
        self._owned = False
        self.ray.shutdown()
        if self._session is not None and ok:
            shutil.rmtree(self._session, ignore_errors=True)


@contextmanager
def ray_session(address: str | None = None, quiet: bool = False) -> Iterator[Any]:
    """Ray for one job: the running instance of this process, a joined cluster, or a local
    instance started here; what this function started or joined it shuts down or leaves."""
    session = RaySession(address, quiet)
    ray = session.start()
    ok = False
    try:
        yield ray
        ok = True
    finally:
        session.stop(ok)


@contextmanager
def ray_in_background(address: str | None = None, quiet: bool = False) -> Iterator[Callable[[], Any]]:
    """:func:`ray_session` started in a thread of its own, so that Ray's start-up (seconds:
    its processes, the first workers) overlaps what the caller does meanwhile, such as
    loading a model. Yields a function that waits for Ray and returns the ``ray`` module (or
    raises what starting it raised). The thread lives until the block ends and shuts Ray
    down itself: the processes a local instance starts die with the thread that started
    them. For example (``load_model`` standing for the caller's own work)::

        with ray_in_background() as get_ray:
            model = load_model()  # meanwhile Ray starts
            get_ray().data.from_items([1, 2]).count()
    """
    if (address or os.environ.get("RAY_ADDRESS") or "").startswith("ray://"):
        with ray_session(address, quiet) as ray:  # Ray Client keeps its connection per thread
            yield lambda: ray
        return
    sigterm = threading.current_thread() is threading.main_thread()
    sigterm = sigterm and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if sigterm:  # what ray.init does in the main thread: SIGTERM unwinds, so Ray is shut down
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.getLogger("ray._private.worker").addFilter(_NOT_MAIN_THREAD_NOTE)
    session = RaySession(address, quiet)
    up, end = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def own() -> None:
        try:
            session.start()
        except BaseException as exc:  # handed to the caller by get_ray()
            outcome["error"] = exc
            return
        finally:
            up.set()
        end.wait()
        session.stop(outcome.get("ok", False))

    def get_ray() -> Any:
        up.wait()
        if "error" in outcome:
            raise outcome["error"]
        return session.ray

    owner = threading.Thread(target=own, name="fusionrank-ray", daemon=True)
    owner.start()
    try:
        yield get_ray
        outcome["ok"] = True
    finally:
        end.set()
        owner.join()
        if sigterm and signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
