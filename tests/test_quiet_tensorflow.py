"""TensorFlow's native start-up lines never reach a vitl user's stderr; real errors do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _stderr_of(code: str) -> str:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, check=True)
    return done.stderr


def test_importing_tensorflow_after_vitl_prints_no_startup_lines():
    err = _stderr_of("import vitl, keras, tensorflow as tf; print(float(tf.constant(2.0) + 1))")
    assert "absl::InitializeLog" not in err and "oneDNN" not in err, err
    assert "cpu_feature_guard" not in err, err


def test_without_vitl_tensorflow_is_noisy_here():
    """The control: this TensorFlow does print start-up lines, so the test above can fail."""
    err = _stderr_of("import tensorflow")
    if "absl::InitializeLog" not in err and "oneDNN" not in err:
        pytest.skip("this TensorFlow build prints no start-up lines on this CPU")


def test_lines_that_are_not_startup_noise_are_replayed():
    code = ("import os\n"
            "from vitl._tensorflow import filtered_native_stderr\n"
            "with filtered_native_stderr():\n"
            "    os.write(2, b'oneDNN custom operations are on\\n')\n"
            "    os.write(2, b'E0000 real failure: libfoo.so missing\\n')\n")
    err = _stderr_of(code)
    assert "real failure: libfoo.so missing" in err and "oneDNN" not in err


def test_threads_and_devices_can_still_be_configured_after_the_quiet_import():
    """The hook runs no op: TensorFlow's context stays unset (Ray actors set threads)."""
    _stderr_of("import vitl, tensorflow as tf\n"
               "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
               "tf.config.threading.set_inter_op_parallelism_threads(1)\n"
               "tf.config.set_visible_devices([], 'GPU')\n")


_MANY_FITS = ("import numpy as np, keras\n"
              "x, y = np.zeros((8, 4), 'float32'), np.zeros(8, 'int32')\n"
              "for _ in range(8):  # what run_grid and fine-tuning do: one Keras model per run\n"
              "    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
              "    model.compile('sgd', 'sparse_categorical_crossentropy')\n"
              "    model.fit(x, y, epochs=1, verbose=0)\n")


def test_keras_retracing_warnings_of_many_fits_are_dropped_but_the_users_own_stay():
    assert "triggered tf.function retracing" in _stderr_of(_MANY_FITS)  # the control
    err = _stderr_of("import vitl\n" + _MANY_FITS + "import tensorflow as tf\n"
                     "def f(x):\n    return x + 1\n"
                     "for i in range(8):\n    tf.function(f)(tf.constant(i))\n")
    assert "TensorFlowTrainer" not in err, err
    assert "triggered tf.function retracing" in err, err  # the user's own function still warns
