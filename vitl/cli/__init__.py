"""The ``vitl`` command line.

Each sub-command lives in its own module here with ``register(subparsers)``,
which adds a parser and ``set_defaults(run=...)``; ``run(args)`` returns the
exit code. Unusable input raises :class:`CLIError` (or ValueError /
FileNotFoundError), which ``main`` turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order ``vitl --help`` lists them.
_COMMAND_MODULES = ["demo", "data", "weights", "cache", "featurize", "train", "evaluate", "predict", "export",
                    "explain"]


class CLIError(Exception):
    """A usage problem reported as one line and exit code 2."""


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "unusable input": reported in one line with exit code 2.

    vitl's own error types are looked up only in modules already imported, so a
    command that never touched TensorFlow does not import it just to catch errors.
    """
    errors = [CLIError, ValueError, FileNotFoundError, NotADirectoryError]
    for module, name in (("vitl.backbones.weights", "WeightsUnavailableError"),
                         ("vitl.datasets", "DatasetUnavailableError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitl", description="Visual inspection by transfer learning."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"vitl.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``vitl`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except _usage_errors() as err:
        print(f"vitl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
