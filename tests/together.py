"""Run ``python -c SCRIPT`` processes at the same moment and collect what they print.

For the tests of processes that share a file (a cache, a data folder, an export folder).
A script either spins until a start time given as an argument (precise, for races of
microseconds: sleeping between polls spread the starts too far apart to reproduce them), or,
when its imports and set-up take a while (TensorFlow), prints "ready" and waits for a go
file that :func:`release` creates once every process is ready.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(script: str, args_per_process, **env) -> list[subprocess.Popen]:
    """Start one ``python -c script ARGS...`` per args list, with vitl on PYTHONPATH and ``env``."""
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return [subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environ) for args in args_per_process]


def release(workers, go: Path) -> None:
    """Wait until every worker printed "ready", then create ``go`` so they all start at once."""
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.communicate()
    go.touch()


def outputs(workers, timeout: float = 120) -> list[str]:
    """Each worker's stdout, once it exited 0 (else its stderr's end is the failure message)."""
    printed = []
    for worker in workers:
        out, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err[-1000:]
        printed.append(out)
    return printed
