"""Import TensorFlow without its native start-up lines, whoever imports it first.

TensorFlow 2.21 writes absl/oneDNN notices ("All log messages before
absl::InitializeLog() ...", "oneDNN custom operations are on ...") straight to
file descriptor 2 while it loads, which ``TF_CPP_MIN_LOG_LEVEL`` does not stop.
:func:`quiet_tensorflow_import` installs an import hook: when ``tensorflow`` is
first imported (by vitl, Keras or the user), fd 2 goes to a temporary file during
the import, then every line that is not a known start-up notice is written back to
stderr, so real errors stay visible. The import runs no op (that would fix TensorFlow's
threads and devices); :func:`vitl.backbones.build_feature_extractor` filters the
notices some CPUs print at the first ops the same way.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager

#: Native start-up notices dropped from stderr (everything else is replayed).
STARTUP_NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations are on|cpu_feature_guard|rebuild TensorFlow with"
    r"|This TensorFlow binary is optimized|Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning"
    r"|computation_placer|Could not find cuda drivers|cuda_(dnn|fft|blas)\.cc|cudart_stub|cuda_executor")


@contextmanager
def filtered_native_stderr(noise: re.Pattern = STARTUP_NOISE):
    """Send fd 2 to a temporary file meanwhile; replay its lines that are not ``noise``.

    Args:
        noise: lines matching it are dropped.

    Returns:
        A context manager yielding a text stream to the real stderr, for progress
        bars that must show live (``sys.stderr`` itself when that is not fd 2, as
        in a notebook).

    Example:
        >>> with filtered_native_stderr():
        ...     _ = os.write(2, b"oneDNN custom operations are on\\n")
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (some embedded interpreters)
        yield sys.stderr
        return
    try:
        direct = sys.stderr.fileno() == 2
    except (OSError, ValueError, AttributeError):  # notebooks: sys.stderr is not a file
        direct = False
    with tempfile.TemporaryFile() as captured, os.fdopen(saved, "w") as real:
        os.dup2(captured.fileno(), 2)
        try:
            yield real if direct else sys.stderr
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                    if line.strip() and not noise.search(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual, but runs its import inside :func:`filtered_native_stderr`."""

    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path) if name == "tensorflow" else None
        if spec is None or spec.loader is None:
            return None
        run_import = spec.loader.exec_module  # a fresh loader per find_spec: safe to wrap

        def exec_module(module):
            # No op here: a first op would initialise TensorFlow's context, after which thread
            # counts and GPU memory growth can no longer be set (Ray actors and users set them).
            # Notices some CPUs print at the first op are filtered where vitl builds its models.
            with filtered_native_stderr():
                run_import(module)

        spec.loader.exec_module = exec_module
        return spec


def _not_keras_retracing(record: logging.LogRecord) -> bool:
    """False for TF's retracing warning about Keras' own fit/evaluate/predict functions.

    vitl fits a new Keras model per run (run_grid, fine-tuning, continue_training), so
    TensorFlow warns "triggered tf.function retracing" and advises the reader to change
    code they did not write; the warning about the user's own functions stays.
    """
    message = record.getMessage()
    return not ("triggered tf.function retracing" in message and "TensorFlowTrainer" in message)


def quiet_tensorflow_import() -> None:
    """Silence TensorFlow's native start-up lines for this process (idempotent, instant).

    Also drops TensorFlow's retracing warnings about Keras' training functions
    (:func:`_not_keras_retracing`). The import hook is not installed once
    TensorFlow is imported, or under ``VITL_TF_STARTUP_LOG=1``.

    Returns:
        None.

    Example:
        >>> quiet_tensorflow_import()
        >>> sum(isinstance(f, _QuietFinder) for f in sys.meta_path) <= 1
        True
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_logger = logging.getLogger("tensorflow")
    if _not_keras_retracing not in tf_logger.filters:
        tf_logger.addFilter(_not_keras_retracing)
    if "tensorflow" in sys.modules or os.environ.get("VITL_TF_STARTUP_LOG") == "1":
        return
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
