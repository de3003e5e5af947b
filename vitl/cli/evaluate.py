"""``vitl evaluate MODEL_DIR DATA_DIR [--json]``: score a saved model on labelled images."""

from __future__ import annotations

import argparse
import json
import warnings

from .train import existing_folder, load_model_dir


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate", help="score a trained model on a folder of labelled images",
        description="Every image under DATA_DIR (one sub-folder per class, named like the "
                    "training classes) is a test image. Prints accuracy, macro accuracy, "
                    "log-loss, per-class precision/recall, the confusion matrix and, for two "
                    "classes, ROC/PR-AUC and a threshold for 95%% recall of the positive class.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `vitl train`")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (progress goes to stderr)")
    parser.add_argument("--positive-class", default=None, metavar="NAME",
                        help="the defect class for ROC/PR and the threshold (two classes; "
                             "default the first class)")
    parser.add_argument("--cache", default="default", metavar="DIR",
                        help="feature cache folder, 'default' or 'none'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import load_image_folder

    data_dir = existing_folder(args.data_dir, "DATA_DIR")
    clf = load_model_dir(args.model_dir, cache=None if args.cache == "none" else args.cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are reported below / in the JSON
        images = load_image_folder(data_dir)
    report = clf.evaluate(images, positive_class=args.positive_class)
    threshold = None
    if len(report.class_names) == 2 and report.per_class[report.positive_class]["support"]:
        threshold = report.threshold_for_recall(0.95)
    if args.json:
        out = report.to_dict()
        out["data_dir"] = str(data_dir)
        out["skipped_files"] = [str(s.path) for s in images.report.skipped]
        out["threshold_for_95_recall"] = threshold.to_dict() if threshold else None
        print(json.dumps(out))
        return 0
    print(f"{data_dir}: {len(images)} images, model {args.model_dir} "
          f"({clf.fit_info_['backbone']})")
    if len(images.report):
        print(f"skipped {len(images.report)} unreadable files (`vitl data {data_dir}` lists them)")
    print(report)
    if threshold is not None:
        print(f"\nthreshold for 95% recall of '{report.positive_class}' (chosen on this data): "
              f"{threshold}")
    return 0
