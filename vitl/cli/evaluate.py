"""Score a trained model on a folder of labelled images.

Score a saved model on every image of DATA_DIR (sub-folders named like the classes):
accuracy, macro accuracy, log-loss, per-class precision/recall, the confusion matrix and, for
two classes, ROC/PR-AUC and a threshold for 95% recall; --json prints one JSON object.

Example:
    Needs a trained model (tested in ``tests/test_cli_models.py``):

    >>> from vitl.cli import build_parser, main
    >>> build_parser().parse_args(["evaluate", "model", "photos", "--no-cache"]).cache is None
    True
    >>> main(["evaluate", "model", "photos", "--json"])  # doctest: +SKIP
    0
"""

import json
import sys
from pathlib import Path

from .._errors import problem
from . import CLIError
from .common import add_model_options, existing_folder, load_images, load_model_dir


def register(parser) -> None:
    """Add ``vitl evaluate``'s arguments to its parser.

    Args:
        parser: the ``evaluate`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    add_model_options(parser)
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--positive-class", metavar="NAME",
                        help="the defect class for ROC/PR and the threshold (default the one not "
                        "named like a normal class, e.g. Negative or ok; else the first)")


def run(args) -> int:
    """Evaluate the model on DATA_DIR and print the report (or one JSON object); return 0.

    Args:
        args: the parsed ``vitl evaluate`` arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    data_dir = existing_folder(args.data_dir, "DATA_DIR")
    clf = load_model_dir(args.model_dir, cache=args.cache)  # before minutes of decoding
    classes = [str(name) for name in clf.classes_]
    if args.positive_class is not None and len(classes) != 2:
        raise CLIError(problem("--positive-class", "a model with two classes (defect / no "
                               f"defect), not {len(classes)} ({', '.join(classes)})",
                               args.positive_class,
                               "leave --positive-class out; with more classes read the "
                               "per-class recall and the confusion matrix"))
    if args.positive_class is not None and args.positive_class not in classes:
        raise CLIError(problem("--positive-class", f"one of {', '.join(classes)} (the model's "
                               "classes)", args.positive_class, "pass the defect class name, "
                               "or leave it out"))
    images = load_images(data_dir, min_classes=1)
    _warn_if_training_folder(clf, data_dir, len(images))
    report = clf.evaluate(images, positive_class=args.positive_class)
    threshold = None
    if len(report.class_names) == 2 and report.per_class[report.positive_class]["support"]:
        threshold = report.threshold_for_recall(0.95)
    if args.json:
        print(json.dumps({**report.to_dict(), "data_dir": str(images.root),
                          "skipped_files": [str(s.path) for s in images.report.skipped],
                          "threshold_for_95_recall": threshold and threshold.to_dict()}))
        return 0
    print(f"{images.root}: {len(images)} images, model {args.model_dir} "
          f"({clf.fit_info_['backbone']})\n{report}")
    if threshold is not None:
        print(f"\nthreshold for 95% recall of '{report.positive_class}' (chosen on this data): "
              f"{threshold}")
    return 0


def _warn_if_training_folder(clf, data_dir: Path, n_images: int) -> None:
    """Say on stderr when DATA_DIR is the folder the model trained on: its scores flatter it."""
    root = clf.fit_info_.get("train_root")
    if root and Path(root).resolve() == data_dir.resolve():
        trained = sum(clf.fit_info_.get("counts", {}).get("train", {}).values())
        print(f"warning: DATA_DIR is the folder this model was trained on ({trained} of its "
              f"{n_images} images trained it): these scores are optimistic; evaluate on images "
              "it has not seen (`vitl train --test DIR`, or --split 70/15/15 and its test part)",
              file=sys.stderr)
