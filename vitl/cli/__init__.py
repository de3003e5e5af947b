"""The ``vitl`` command line: a mirror of the Python API.

:data:`COMMANDS` lists the sub-commands; each is a module here whose docstring is its
``--help`` description (its first line the one-line help), with ``register(parser)`` adding
its options and ``run(args)`` returning the exit code (``cache`` and ``weights`` set a
``run`` per action). Options are the API's parameters in kebab-case; what several commands
share is in :mod:`vitl.cli.common`. Every error is one line on stderr and exit code 2: bad
arguments through :class:`Parser`, and what a command raises (:class:`CLIError`, ValueError,
FileNotFoundError, any other ``OSError``, sqlite errors) through :func:`error_line`.
Warnings print as one ``vitl: warning: ...`` line each.

Example:
    Every command's parser, as ``vitl`` builds it (the examples below use it too):

    >>> args = build_parser().parse_args(["train", "photos", "--out", "m"])
    >>> args.backbone, args.seed, args.split, args.cache
    ('auto', 0, None, 'default')
"""

import argparse
import importlib
import os
import re
import sys
import warnings

#: The sub-commands, in the order ``vitl --help`` lists them.
COMMANDS = ("demo", "data", "weights", "cache", "featurize", "train", "evaluate", "predict",
            "export", "explain")


class CLIError(Exception):
    """A usage problem reported as one line and exit code 2.

    Example:
        >>> str(CLIError("--out: expected a folder, received 'x'. Fix: pass a folder"))[:5]
        '--out'
    """


#: argparse's own message for a value outside ``choices=``.
_INVALID_CHOICE = re.compile(r"argument (?P<name>\S+): invalid choice: (?P<value>.*) "
                             r"\(choose from (?P<choices>.*)\)$")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one ``vitl <cmd>: error: ...`` line (exit 2).

    Example:
        >>> parser = Parser(prog="vitl demo")
        >>> _ = parser.add_argument("--precision", choices=["float32", "bfloat16"])
        >>> parser.parse_args(["--precision", "int8"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: vitl demo: error: --precision: expected 'float32' or 'bfloat16', ...
    """

    def error(self, message: str):
        """Raise :class:`CLIError` with argparse's ``message`` in vitl's one-line form.

        Args:
            message: argparse's message, e.g. ``argument --epochs: invalid choice: ...``.

        Returns:
            Never: it raises.

        Example:
            >>> Parser(prog="vitl data").error(
            ...     "the following arguments are required: DIR")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            vitl.cli.CLIError: vitl data: error: the following arguments are required: DIR. Fix: ...
        """
        choice = _INVALID_CHOICE.match(message)
        if choice:
            *others, last = choice["choices"].split(", ")
            expected = f"{', '.join(others)} or {last}" if others else last
            message = (f"{choice['name']}: expected {expected}, received {choice['value']}. "
                       f"Fix: pass one of them (see {self.prog} --help)")
        elif "Fix:" not in message:
            message += f". Fix: see {self.prog} --help"
        raise CLIError(f"{self.prog}: error: {message.removeprefix('argument ')}")


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


def error_line(err: Exception) -> str | None:
    """What ``main`` prints after ``vitl <cmd>: error:`` for ``err``; None for a bug (traceback).

    Args:
        err: the exception a command raised.

    Returns:
        One line (expected / received / fix), or None.

    Example:
        >>> error_line(OSError(28, "No space left on device", "/data/p.csv"))  # doctest: +ELLIPSIS
        "file system: expected to read or write /data/p.csv, received 'OSError: No space ...
        >>> error_line(KeyError("x")) is None
        True
    """
    import sqlite3

    from .._errors import problem

    if isinstance(err, _usage_errors()):
        return str(err)
    if isinstance(err, OSError):
        where = " -> ".join(os.fsdecode(f) for f in (err.filename, err.filename2) if f)
        reason = err.strerror or str(err) or type(err).__name__
        return problem("file system", f"to read or write {where or 'a file'}",
                       f"{type(err).__name__}: {reason}", "check that the path exists, is the "
                       "right kind (file or folder), has free space and is writable by you, or "
                       "choose another path")
    if isinstance(err, MemoryError):
        return ("out of memory. Fix: use smaller --batch-size or --input-size, or fewer images "
                "at once")
    if isinstance(err, sqlite3.Error) and "locked" in str(err):
        from ..features.cache import BUSY_TIMEOUT_S

        return problem("feature cache", "a cache no other process holds for over "
                       f"{BUSY_TIMEOUT_S:.0f} s", f"{type(err).__name__}: {err}",
                       "wait for the other vitl run on this --cache to finish (or stop it), "
                       "then retry; or pass another --cache DIR")
    if isinstance(err, sqlite3.Error):
        return problem("feature cache", "an sqlite database on a disk with free space",
                       f"{type(err).__name__}: {err}", "free disk space if it is full, then "
                       "retry; or pass --no-cache (or another --cache DIR)")
    return None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"vitl: warning: {' '.join(str(message).split())}", file=sys.stderr)


def build_parser() -> Parser:
    """The ``vitl`` parser with every sub-command.

    Returns:
        The :class:`Parser`.

    Example:
        >>> build_parser().parse_args(["train", "photos", "--out", "m"]).backbone
        'auto'
    """
    parser = Parser(prog="vitl", description="Visual inspection by transfer learning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"vitl.cli.{name}")
        description = module.__doc__.split("\nExample:")[0]  # --help shows no doctests
        summary = description.split("\n")[0].rstrip(".").replace("%", "%%")  # %-formatted
        command = sub.add_parser(name, help=summary, description=description)
        command.set_defaults(run=getattr(module, "run", None))
        module.register(command)
    parser.set_defaults(commands=sub.choices)  # to report unknown options as the command's
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``vitl`` command line and return its exit code.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for unusable input (one line on stderr), 130 when interrupted.

    Example:
        >>> main(["train", "photos", "--out", "m", "--epochs", "0"])
        2
    """
    # File names that are not UTF-8 reach stdout (CSV rows) as their own bytes.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            args.commands.get(args.command, parser).error(
                f"unrecognized arguments: {' '.join(unknown)}")
    except CLIError as err:
        print(err, file=sys.stderr)
        return 2
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # the CLI's own format, also when embedded
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        line = error_line(err)
        if line is None:
            raise
        print(f"vitl {args.command}: error: {line}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
