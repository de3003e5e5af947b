"""Error helpers: every message says what was expected, what was received and how to fix it."""

from __future__ import annotations


def problem(what: str, expected: str, received: object, fix: str) -> str:
    """Format a three-part error message.

    Args:
        what: the thing that is wrong, e.g. ``"batch_size"``.
        expected: what would have been right.
        received: what was given.
        fix: how the caller can fix it.

    Returns:
        ``"<what>: expected <expected>, received <received>. Fix: <fix>"``.

    Example:
        >>> problem("epochs", "an integer >= 1", 0, "pass epochs=10")
        'epochs: expected an integer >= 1, received 0. Fix: pass epochs=10'
    """
    return f"{what}: expected {expected}, received {received!r}. Fix: {fix}"


def check_int(name: str, value: object, minimum: int = 0, fix: str | None = None) -> int:
    """Return ``value`` if it is an integer >= ``minimum`` (bools refused).

    Args:
        name: the parameter's name, for the message.
        value: the value given.
        minimum: the smallest value allowed.
        fix: the message's fix; default ``"pass <name>=<minimum> or more"``.

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is not an integer >= ``minimum``.

    Example:
        >>> check_int("epochs", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: epochs: expected an integer >= 1, received 0. Fix: pass epochs=1 or more
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fix = fix or f"pass {name}={minimum} or more"
        raise ValueError(problem(name, f"an integer >= {minimum}", value, fix))
    return value


def check_fraction(name: str, value: object, low: float = 0.0, high: float = 1.0) -> float:
    """Return ``value`` as a float if it is a number in ``[low, high]``.

    Args:
        name: the parameter's name, for the message.
        value: the value given.
        low, high: the closed range allowed.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: ``value`` is not a number in ``[low, high]``.

    Example:
        >>> check_fraction("dropout", 1.5)
        Traceback (most recent call last):
        ...
        ValueError: dropout: expected a number in [0.0, 1.0], received 1.5. Fix: pass a value such as 0.2
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(problem(name, f"a number in [{low}, {high}]", value,
                                 "pass a value such as 0.2"))
    return float(value)


def check_choice(name: str, value: object, choices) -> object:
    """Return ``value`` if it is one of ``choices``.

    Args:
        name: the parameter's name, for the message.
        value: the value given.
        choices: the allowed values.

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is not among ``choices``.

    Example:
        >>> check_choice("format", "onnx", ["savedmodel", "tflite"])
        Traceback (most recent call last):
        ...
        ValueError: format: expected one of 'savedmodel', 'tflite', received 'onnx'. Fix: pick one of those
    """
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(problem(name, f"one of {listed}", value, "pick one of those"))
    return value


def check_verbose(verbose) -> int:
    """Return ``verbose`` as 0, 1 or 2 (True is 1, False is 0); raise ValueError otherwise.

    Args:
        verbose: 0 silent, 1 progress bars and one-line summaries, 2 also a line per epoch.

    Returns:
        The level as an int.

    Raises:
        ValueError: anything else (e.g. ``"bar"`` or 3).

    Example:
        >>> check_verbose(True), check_verbose(2)
        (1, 2)
        >>> check_verbose("bar")
        Traceback (most recent call last):
        ...
        ValueError: verbose: expected 0 (silent), 1 (progress bars) or 2 (also a line per epoch), received 'bar'. Fix: pass verbose=1
    """
    if verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError(problem("verbose", "0 (silent), 1 (progress bars) or 2 (also a line per epoch)",
                             verbose, "pass verbose=1"))


__all__ = ["check_choice", "check_fraction", "check_int", "check_verbose", "problem"]
