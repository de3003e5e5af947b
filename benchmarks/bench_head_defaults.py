"""Does the default head match or beat a logistic regression on the same features?

For every data set at hand, features come once from the frozen ``mobilenetv2-tv``
backbone (ImageNet weights, offline) through vitl's feature cache. Then, for
each seed, the images are split 70/30 train/test (stratified, exact per-class
counts, :func:`vitl.data.split` seeded by the seed) and three heads learn from
the *same* training images and are scored on the same test images:

* ``vitl default``: ``train_head`` with ``HeadConfig()``, on the training part
  minus the stratified 10% validation hold-out ``ImageClassifier.fit`` makes
  (``validation_fraction=0.1``, same seed) - exactly what ``vitl train DIR``
  does with a training folder.
* ``ML.NET preset``: the same with ``HeadConfig.mlnet()``.
* ``LogisticRegression``: ``sklearn.linear_model.LogisticRegression(max_iter=5000)``
  on all training images (it needs no validation part).

Data sets (``--sets`` picks some): the SDNET2018 deck sample (``VITL_DATA_MIRROR``)
at 224 px and at its tiles' own 256 px; the concrete-cracks sample
(``--concrete-zip``, development only, never committed) at 224 and its own 227
px; synthetic cracks (``vitl.make_synthetic_cracks``, 150 a class, 224 px).
``--train-fraction`` changes the 70/30 split (e.g. 0.3 for small training sets).

    VITL_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/bench_head_defaults.py
    .venv/bin/python benchmarks/bench_head_defaults.py --sets sdnet-256 --seeds 0 1 2 \\
        --candidate '{"optimizer": "adam", "learning_rate": 0.001}'

``--candidate JSON`` adds a row for ``HeadConfig(**JSON)`` (used to choose the defaults).

    .venv/bin/python benchmarks/bench_head_defaults.py --quick   # plumbing check (~1 min)

``--quick``: one set per source (sdnet-224, concrete-227 if its zip is there,
synthetic-224 with 30 a class), all at 96 px, the first seed, heads capped at 5 epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
from sklearn.linear_model import LogisticRegression

from vitl.backbones import build_feature_extractor
from vitl.data import load_image_folder, split
from vitl.datasets import make_synthetic_cracks, sdnet2018_decks
from vitl.features import Featurizer
from vitl.training import HeadConfig, predict_proba, train_head

BACKBONE = "mobilenetv2-tv"
SETS = {  # name -> (source, input size)
    "sdnet-224": ("sdnet", 224), "sdnet-256": ("sdnet", 256),
    "concrete-224": ("concrete", 224), "concrete-227": ("concrete", 227),
    "synthetic-224": ("synthetic", 224),
}
WORK = Path(tempfile.gettempdir()) / "vitl-bench-head"
QUICK_SETS, QUICK_SIZE, QUICK_EPOCHS = ["sdnet-224", "concrete-227", "synthetic-224"], 96, 5


def folder(source: str, concrete_zip: Path, synthetic_per_class: int = 150) -> Path:
    if source == "sdnet":
        return sdnet2018_decks(verbose=0)
    if source == "synthetic":
        out = WORK / ("synthetic" if synthetic_per_class == 150 else
                      f"synthetic-{synthetic_per_class}")
        return make_synthetic_cracks(out, synthetic_per_class, size=224, seed=0, verbose=0)
    out = WORK / "concrete"
    if not (out / "concrete-cracks-sample").is_dir():
        with zipfile.ZipFile(concrete_zip) as archive:
            archive.extractall(out)
    return out / "concrete-cracks-sample"


def features(name: str, concrete_zip: Path, cache, quick=False):
    source, size = SETS[name]
    images = load_image_folder(folder(source, concrete_zip, 30 if quick else 150), verbose=0)
    extractor = build_feature_extractor(BACKBONE, input_size=QUICK_SIZE if quick else size)
    x = Featurizer(extractor, cache=cache, verbose=1).featurize(images)
    return images, x


def rows_of(collection, index: dict) -> np.ndarray:
    return np.array([index[p] for p in collection.paths])


def accuracy(y, proba) -> float:
    return float(np.mean(np.asarray(proba).argmax(axis=1) == y))


def run_head(config, x, y, train, validation, test, n_classes):
    xv = x[validation] if len(validation) else None
    yv = y[validation] if len(validation) else None
    start = time.perf_counter()
    model, history = train_head(x[train], y[train], xv, yv, n_classes=n_classes,
                                config=config, verbose=False)
    return (accuracy(y[test], predict_proba(model, x[test])), len(history),
            time.perf_counter() - start)


def mean_sd(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=None,
                        help=f"default all; --quick: {' '.join(QUICK_SETS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--candidate", action="append", default=[], metavar="JSON",
                        help="extra row: HeadConfig(**JSON), e.g. '{\"l2\": 1e-4}'")
    parser.add_argument("--no-mlnet", action="store_true", help="skip the ML.NET preset row")
    parser.add_argument("--cache", default="default")
    parser.add_argument("--concrete-zip", type=Path,
                        default=Path(os.environ.get("VITL_DATA_MIRROR", REPO.parent / "shared"
                                                    / "data")) / "concrete-cracks-sample.zip")
    parser.add_argument("--quick", action="store_true",
                        help=f"plumbing check: one set per source at {QUICK_SIZE} px, the first "
                             f"seed, at most {QUICK_EPOCHS} epochs")
    args = parser.parse_args()
    sets = args.sets or (QUICK_SETS if args.quick else list(SETS))
    seeds = args.seeds[:1] if args.quick else args.seeds

    heads = {"vitl default": HeadConfig()}
    if not args.no_mlnet:
        heads["ML.NET preset"] = HeadConfig.mlnet()
    for text in args.candidate:
        heads[f"candidate {text}"] = HeadConfig(**json.loads(text))
    if args.quick:
        heads = {head: dataclasses.replace(config, epochs=QUICK_EPOCHS)
                 for head, config in heads.items()}
        print(f"--quick (plumbing check, not the real numbers): every set at {QUICK_SIZE} px, "
              f"at most {QUICK_EPOCHS} epochs")
    print(f"backbone {BACKBONE}; split {args.train_fraction:.0%} train (of which "
          f"{args.validation_fraction:.0%} validation for vitl's heads) / "
          f"{1 - args.train_fraction:.0%} test; seeds {seeds}\n")
    header = "| set (train / test images) | head | test accuracy | epochs | seconds |"
    print(header + "\n|---|---|---|---:|---:|", flush=True)
    for name in sets:
        if args.quick and SETS[name][0] == "concrete" and not args.concrete_zip.is_file():
            print(f"| {name} | skipped: no {args.concrete_zip} | | | |", flush=True)
            continue
        images, x = features(name, args.concrete_zip, None if args.cache == "none"
                             else args.cache, args.quick)
        y = images.labels
        index = {p: i for i, p in enumerate(images.paths)}
        results = {head: [] for head in [*heads, "LogisticRegression"]}
        for seed in seeds:
            outer = split(images, args.train_fraction, 0.0, 1 - args.train_fraction, seed=seed)
            inner = split(outer.train, 1 - args.validation_fraction, args.validation_fraction,
                          0.0, seed=seed)
            train_all, test = rows_of(outer.train, index), rows_of(outer.test, index)
            train, validation = rows_of(inner.train, index), rows_of(inner.validation, index)
            for head, config in heads.items():
                config.seed = seed
                results[head].append(run_head(config, x, y, train, validation, test,
                                              len(images.class_names)))
            start = time.perf_counter()
            lr = LogisticRegression(max_iter=5000).fit(x[train_all], y[train_all])
            results["LogisticRegression"].append(
                (accuracy(y[test], lr.predict_proba(x[test])), 0, time.perf_counter() - start))
        label = f"{name} ({len(train_all)} / {len(test)})"
        for head, runs in results.items():
            acc, epochs, seconds = zip(*runs)
            print(f"| {label} | {head} | {mean_sd(acc)} | "
                  f"{statistics.mean(epochs):.0f} | {statistics.mean(seconds):.1f} |", flush=True)
    print(f"\none test image is worth {1 / len(test):.3f} of accuracy on the last set")


if __name__ == "__main__":
    main()
