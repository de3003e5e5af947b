"""Error helpers: every message says what was expected, what was received and how to fix it."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError


def problem(what: str, expected: str, received: object, fix: str) -> str:
    """Format a three-part error message.

    Args:
        what: the thing that is wrong, e.g. ``"batch_size"``.
        expected: what would have been right.
        received: what was given.
        fix: how the caller can fix it.

    Returns:
        A message in the form ``"<what>: expected <expected>, received <received>. Fix: <fix>"``.

    Example:
        >>> problem("epochs", "an integer >= 1", 0, "pass epochs=10")
        'epochs: expected an integer >= 1, received 0. Fix: pass epochs=10'
    """
    return f"{what}: expected {expected}, received {received!r}. Fix: {fix}"


def check_int(name: str, value: object, minimum: int = 0, fix: str | None = None) -> int:
    """Validate an integer parameter and return it.

    Args:
        name: the parameter's name, for the message.
        value: the value given.
        minimum: the smallest value allowed.
        fix: the message's fix; default ``"pass <name>=<minimum> or more"``.

    Returns:
        ``value``.

    Raises:
        ValueError: when ``value`` is not an integer >= ``minimum``.

    Example:
        >>> check_int("epochs", 5, minimum=1)
        5
        >>> check_int("epochs", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: epochs: expected an integer >= 1, received 0. Fix: pass epochs=1 or more
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            problem(name, f"an integer >= {minimum}", value, fix or f"pass {name}={minimum} or more")
        )
    return value


def check_fraction(name: str, value: object, low: float = 0.0, high: float = 1.0) -> float:
    """Validate a number in ``[low, high]`` and return it as float.

    Args:
        name: the parameter's name, for the message.
        value: the value given.
        low, high: the closed range allowed.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: ``value`` is not a number in ``[low, high]``.

    Example:
        >>> check_fraction("dropout", 0.2)
        0.2
        >>> check_fraction("dropout", 1.5)
        Traceback (most recent call last):
        ...
        ValueError: dropout: expected a number in [0.0, 1.0], received 1.5. Fix: pass a value such as 0.2
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(
            problem(name, f"a number in [{low}, {high}]", value, "pass a value such as 0.2")
        )
    return float(value)


def check_choice(name: str, value: object, choices) -> object:
    """Validate that ``value`` is one of ``choices``.

    Args:
        name: the parameter's name, for the message.
        value: the value given.
        choices: the allowed values.

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is not among ``choices``.

    Example:
        >>> check_choice("format", "tflite", ["savedmodel", "tflite"])
        'tflite'
        >>> check_choice("format", "onnx", ["savedmodel", "tflite"])
        Traceback (most recent call last):
        ...
        ValueError: format: expected one of 'savedmodel', 'tflite', received 'onnx'. Fix: pick one of those
    """
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(problem(name, f"one of {listed}", value, "pick one of those"))
    return value


def check_is_fitted(estimator, attribute: str = "classes_") -> None:
    """Raise scikit-learn's ``NotFittedError`` unless ``estimator`` has a non-None ``attribute``.

    The test and message of ``sklearn.utils.validation.check_is_fitted``, which
    refuses objects that are not scikit-learn estimators (no ``__sklearn_tags__``);
    this one accepts any object.

    Args:
        estimator: the object to check.
        attribute: the fitted attribute that must be set.

    Returns:
        None.

    Raises:
        NotFittedError: ``attribute`` is missing or None.

    Example:
        >>> class Model: pass
        >>> check_is_fitted(Model())
        Traceback (most recent call last):
        ...
        sklearn.exceptions.NotFittedError: This Model instance is not fitted yet. Call 'fit' with appropriate arguments before using this estimator.
    """
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. "
            "Call 'fit' with appropriate arguments before using this estimator."
        )


def check_verbose(verbose) -> int:
    """Return ``verbose`` as 0, 1 or 2 (True is 1, False is 0); raise ValueError otherwise."""
    if verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError(problem("verbose", "0 (silent), 1 (progress bars) or 2 (also a line per epoch)",
                             verbose, "pass verbose=1"))


__all__ = ["check_verbose", "NotFittedError", "check_choice", "check_fraction", "check_int", "check_is_fitted",
           "problem"]
