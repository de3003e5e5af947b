"""Error helpers: every message says what was expected, what was received and how to fix it."""

from __future__ import annotations

import math
import numbers
from dataclasses import fields


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


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1.

    Example:
        >>> counted(1, "seed"), counted(3, "run")
        ('1 seed', '3 runs')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def require(ok, what: str, expected: str, received: object, fix: str) -> None:
    """Raise ``ValueError(problem(what, expected, received, fix))`` unless ``ok``.

    Args:
        ok: the condition that must hold.
        what, expected, received, fix: :func:`problem`'s parts.

    Raises:
        ValueError: ``ok`` is false.

    Example:
        >>> require(2 > 1, "n", "more than 1", 2, "pass n=2")
        >>> require(0 > 1, "n", "more than 1", 0, "pass n=2")
        Traceback (most recent call last):
        ...
        ValueError: n: expected more than 1, received 0. Fix: pass n=2
    """
    if not ok:
        raise ValueError(problem(what, expected, received, fix))


def is_int(value) -> bool:
    """True for Python and numpy integers, False for bools and anything else.

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """True for finite Python and numpy ints and floats, False for bools, NaN, inf and the rest.

    Example:
        >>> is_real(0.5), is_real(2), is_real(float("nan")), is_real(False)
        (True, True, False, False)
    """
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def check_fields(config, rules):
    """Check a dataclass's fields against a table of rules; return ``config``.

    Args:
        config: a dataclass instance.
        rules: rows ``(field names, expected text, predicate)`` or
            ``(field names, expected text, predicate, fix)``; without a fix the
            message says ``"pass <name>=<default> (the default)"``.

    Returns:
        ``config``.

    Raises:
        ValueError: the first field whose value fails its predicate.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Config:
        ...     epochs: int = 10
        >>> rules = [(("epochs",), "an integer >= 1", lambda v: is_int(v) and v >= 1)]
        >>> check_fields(Config(epochs=0), rules)
        Traceback (most recent call last):
        ...
        ValueError: epochs: expected an integer >= 1, received 0. Fix: pass epochs=10 (the default)
    """
    defaults = {f.name: f.default for f in fields(config)}
    for names, expected, ok, *fix in rules:
        for name in names:
            value = getattr(config, name)
            require(ok(value), name, expected, value,
                    fix[0] if fix else f"pass {name}={defaults[name]!r} (the default)")
    return config


def changed_fields_repr(config) -> str:
    """``Name(field=value, ...)`` with only the fields that differ from the class defaults.

    scikit-learn's ``print_changed_only`` for config dataclasses, so a classifier's repr
    stays one readable line instead of every field.

    Args:
        config: a dataclass instance whose class can be built without arguments.

    Returns:
        The repr string.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Config:
        ...     epochs: int = 10
        ...     seed: int = 0
        >>> changed_fields_repr(Config(epochs=5)), changed_fields_repr(Config())
        ('Config(epochs=5)', 'Config()')
    """
    default = type(config)()
    changed = [f"{f.name}={getattr(config, f.name)!r}" for f in fields(config)
               if f.repr and getattr(config, f.name) != getattr(default, f.name)]
    return f"{type(config).__name__}({', '.join(changed)})"


def config_from_dict(cls, values: dict):
    """Build the dataclass ``cls`` from ``{field: value}``, rejecting keys that are not fields.

    Args:
        cls: a dataclass whose fields all have defaults.
        values: ``{field: value}`` (a ``to_dict`` output); missing fields keep their defaults.

    Returns:
        ``cls(**values)``.

    Raises:
        ValueError: a key that is not a field.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Config:
        ...     epochs: int = 10
        >>> config_from_dict(Config, {"epochs": 3})
        Config(epochs=3)
        >>> config_from_dict(Config, {"epoch": 3})
        Traceback (most recent call last):
        ...
        ValueError: Config keys: expected names among ['epochs'], received ['epoch']. Fix: remove or rename the unknown keys
    """
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    require(not unknown, f"{cls.__name__} keys", f"names among {names}", unknown,
            "remove or rename the unknown keys")
    return cls(**values)


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
    require(is_int(value) and value >= minimum, name, f"an integer >= {minimum}", value,
            fix or f"pass {name}={minimum} or more")
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
    require(is_real(value) and low <= value <= high, name, f"a number in [{low}, {high}]", value,
            "pass a value such as 0.2")
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
    listed = ", ".join(repr(c) for c in choices)
    require(value in choices, name, f"one of {listed}", value, "pick one of those")
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
    require(verbose in (0, 1, 2), "verbose",
            "0 (silent), 1 (progress bars) or 2 (also a line per epoch)", verbose, "pass verbose=1")
    return int(verbose)


__all__ = ["check_choice", "check_fields", "check_fraction", "check_int", "check_verbose",
           "config_from_dict", "is_int", "is_real", "problem", "require"]
