"""Exports print no TensorFlow chatter (INFO lines, fully_quantize), and the int8
calibration bar still reaches the terminal while TensorFlow's output is filtered (issue 14)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import sys

    import vitl  # first, as a user would: TensorFlow then loads quietly
    import keras
    from PIL import Image
    from vitl.export import export_model

    folder = sys.argv[1]
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(f"{folder}/{i}.png")
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    export_model(model, ["a", "b"], f"{folder}/out", format="savedmodel")
    export_model(model, ["a", "b"], f"{folder}/out", format="tflite", quantize="int8",
                 representative=folder)
    print("exported")
""")


def test_export_prints_only_the_calibration_bar(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], check=False,
                          capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "exported"
    for noise in ("INFO:tensorflow", "Assets written", "fully_quantize", "absl::InitializeLog"):
        assert noise not in done.stderr, done.stderr
    assert "calibrating int8: 100%" in done.stderr
