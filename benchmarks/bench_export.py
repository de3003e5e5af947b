"""Benchmark the exports: size and agreement with the Keras model, read back in a fresh process.

Trains ``mobilenetv2-tv`` (the offline ImageNet weights) on the ML.NET tutorial's SDNET2018
sample with the tutorial's split, exports a SavedModel and TFLite files (float32, float16,
int8), reads each back in a fresh process with plain TensorFlow (``tests/export_worker.py``)
and prints, per artifact: size, max abs difference of the probabilities from the Keras model,
the share of images with the same class as Keras, and accuracy, on the validation and test
images. The table goes into benchmarks/README.md ("Export").

    VITL_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/bench_export.py [--preset=mlnet]

``--preset=mlnet`` trains the head with ML.NET's settings instead of vitl's defaults.

    .venv/bin/python benchmarks/bench_export.py --quick    # plumbing check (~1-2 min)

``--quick``: 100 of the images (50 a class, then the tutorial split), 96 px, the head capped
at 5 epochs; the same five artifacts, each read back in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("VITL_DATA_MIRROR", str(REPO.parent / "shared" / "data"))

import numpy as np

ARTIFACTS = [("SavedModel", "savedmodel", None), ("TFLite float32", "tflite", None),
             ("TFLite float16", "tflite", "float16"), ("TFLite int8", "tflite", "int8"),
             ("TFLite int8, all training images", "tflite", "int8")]
QUICK_PER_CLASS, QUICK_SIZE, QUICK_EPOCHS = 50, 96, 5


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:  # ~100 MB of artifacts
        return run(Path(folder))


def run(tmp: Path) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["mlnet"], default=None,
                        help="train the head with ML.NET's settings")
    parser.add_argument("--quick", action="store_true",
                        help=f"plumbing check: {2 * QUICK_PER_CLASS} images, {QUICK_SIZE} px, "
                             f"at most {QUICK_EPOCHS} epochs")
    args = parser.parse_args()

    import vitl
    from vitl.data import read_image, tutorial_split
    from vitl.datasets import sdnet2018_decks
    from vitl.training import HeadConfig

    images = vitl.load_image_folder(sdnet2018_decks(data_dir=tmp / "data", verbose=0), verbose=0)
    quick = {}
    if args.quick:
        images = images.subset(np.concatenate([np.flatnonzero(images.labels == label)[
            :QUICK_PER_CLASS] for label in range(len(images.class_names))]))
        head = HeadConfig.mlnet if args.preset == "mlnet" else HeadConfig
        quick = {"input_size": QUICK_SIZE, "head": head(epochs=QUICK_EPOCHS)}
        print(f"--quick (plumbing check, not the real numbers): {len(images)} images, "
              f"{QUICK_SIZE} px, at most {QUICK_EPOCHS} epochs")
    parts = tutorial_split(images)
    make = vitl.ImageClassifier.mlnet if args.preset == "mlnet" else vitl.ImageClassifier
    clf = make("mobilenetv2-tv", cache=tmp / "cache", verbose=0, **quick)
    clf.fit(parts.train, parts.validation)
    held = list(parts.validation.paths) + list(parts.test.paths)
    truth = np.array([clf.classes_.tolist().index(parts.validation.class_names[label])
                      for label in parts.validation.labels]
                     + [clf.classes_.tolist().index(parts.test.class_names[label])
                        for label in parts.test.labels])
    size = clf.extractor_.input_size
    pixels = np.stack([read_image(p, size) for p in held]).astype(np.float32)
    np.save(tmp / "images.npy", pixels)
    keras_proba = clf.predict_proba(held)
    # The default int8 calibration set is ~100 training images; the last row uses them all.
    exported = {name: clf.export(tmp / f"export{i}", format=fmt, quantize=q,
                                 representative=parts.train.paths if "all" in name else None)
                for i, (name, fmt, q) in enumerate(ARTIFACTS)}
    read_back = {}
    for i, path in enumerate(exported.values()):  # same file names: read one folder at a time
        subprocess.run([sys.executable, str(REPO / "tests" / "export_worker.py"),
                        str(tmp / "images.npy"), str(tmp / f"out{i}.npz"), str(path)], check=True)
        read_back[path] = np.load(tmp / f"out{i}.npz")[Path(path).name]
    print(f"mobilenetv2-tv at {size} px, SDNET2018 sample, tutorial split: {len(held)} "
          f"validation and test images; Keras accuracy "
          f"{np.mean(keras_proba.argmax(1) == truth):.3f}\n")
    print("| artifact | size | max abs diff | same class as Keras | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for name, path in exported.items():
        proba = read_back[path]
        print(f"| {name} | {size_of(Path(path)) / 1e6:.1f} MB "
              f"| {np.abs(proba - keras_proba).max():.2g} "
              f"| {np.mean(proba.argmax(1) == keras_proba.argmax(1)):.0%} "
              f"| {np.mean(proba.argmax(1) == truth):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
