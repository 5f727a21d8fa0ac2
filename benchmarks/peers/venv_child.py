"""Run one job of a peer library in that library's own virtual environment: the job goes to
the child script as JSON on stdin, the result comes back on a ``RESULT <json>`` line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def run_in_venv(
    python: Path,
    script: Path,
    job: dict[str, Any],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout: int,
    what: str,
) -> dict[str, Any]:
    """The child's result dict; a RuntimeError naming ``what`` with the end of its stderr
    when it prints no result. ``env`` is added to this process's environment."""
    done = subprocess.run(
        [str(python), str(script)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        cwd=cwd,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
