"""Run every benchmark script in this folder, one after another, and say how each ended.

    .venv/bin/python benchmarks/run_all.py            # each bench_*.py --quick (plumbing check)
    .venv/bin/python benchmarks/run_all.py --full     # the published tables (long)
    .venv/bin/python benchmarks/run_all.py --only bench_training

Convention: a benchmark is a ``bench_*.py`` file here that prints its own table;
it takes ``--quick`` for a small run of the same code paths. A script without a
``--quick`` option is skipped in quick mode (and named) rather than run in full.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover(only=None) -> list[Path]:
    """The ``bench_*.py`` scripts beside this file, by name (optionally only those named)."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if s.stem in only or s.name in only]
    return scripts


def has_quick(script: Path) -> bool:
    """Whether the script declares a ``--quick`` option."""
    return '"--quick"' in script.read_text(encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="full runs instead of --quick")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="run only these scripts (e.g. bench_training)")
    args = parser.parse_args(argv)
    scripts = discover(args.only)
    if not scripts:
        print(f"no benchmarks matched {args.only} in {HERE}", file=sys.stderr)
        return 2
    summary = []
    for script in scripts:
        if not args.full and not has_quick(script):
            summary.append((script.name, "skipped: no --quick option (run it with --full)", 0.0))
            continue
        command = [sys.executable, str(script)] + ([] if args.full else ["--quick"])
        print(f"\n=== {' '.join([script.name] + command[2:])}", flush=True)
        start = time.perf_counter()
        status = subprocess.call(command)
        summary.append((script.name, "ok" if status == 0 else f"FAILED (exit {status})",
                        time.perf_counter() - start))
    print("\nbenchmark         result" + " " * 46 + "seconds")
    for name, result, seconds in summary:
        print(f"{name:24} {result:58} {seconds:7.0f}")
    return 1 if any(r.startswith("FAILED") for _, r, _ in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
