"""Fresh-process reader of vitl exports, for tests/test_export.py.

Usage::

    python export_worker.py IMAGES.npy OUT.npz ARTIFACT...
    python export_worker.py --vitl-load MODEL.keras PATHS.txt OUT.npy

The first form reads each ARTIFACT with plain TensorFlow only (no vitl import):
a SavedModel folder via ``tf.saved_model.load``, a ``.tflite`` file via
``tf.lite.Interpreter``, a ``.keras`` file via ``keras.saving.load_model``; it
saves each one's ``(N, classes)`` probabilities on IMAGES (float32 0..255) in
OUT.npz under the artifact's file name. The second form loads the model with
``vitl.ImageClassifier.load`` and saves ``predict_proba`` of the image paths
listed in PATHS.txt (one per line).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def predict(artifact: str, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    if artifact.endswith(".tflite"):
        runner = tf.lite.Interpreter(model_path=artifact).get_signature_runner("serving_default")
        return np.concatenate([runner(image=images[i:i + 1])["probabilities"]
                               for i in range(len(images))])
    if artifact.endswith(".keras"):
        import keras

        return np.asarray(keras.saving.load_model(artifact, compile=False)(images))
    served = tf.saved_model.load(artifact).signatures["serving_default"]
    return served(image=tf.constant(images))["probabilities"].numpy()


def main(argv) -> None:
    if argv[0] == "--vitl-load":
        from vitl.classifier import ImageClassifier

        model, paths_file, out = argv[1:4]
        paths = Path(paths_file).read_text(encoding="utf-8").splitlines()
        clf = ImageClassifier.load(model, cache=None, verbose=False)
        np.save(out, clf.predict_proba(paths))
        return
    images_path, out, *artifacts = argv
    images = np.load(images_path)
    np.savez(out, **{Path(a).name: predict(a, images) for a in artifacts})


if __name__ == "__main__":
    main(sys.argv[1:])
