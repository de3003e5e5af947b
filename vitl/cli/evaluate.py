"""``vitl evaluate MODEL_DIR DATA_DIR [--json]``: score a saved model on labelled images."""

from __future__ import annotations

import argparse
import json

from .common import add_cache_options, existing_folder, load_images, load_model_dir


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["evaluate", "model", "photos", "--no-cache"]).cache is None
        True
    """
    parser = subparsers.add_parser(
        "evaluate", help="score a trained model on a folder of labelled images",
        description="Print accuracy, macro accuracy, log-loss, per-class precision/recall, the "
                    "confusion matrix and, for two classes, ROC/PR-AUC and a threshold for 95%% "
                    "recall on every image of DATA_DIR (sub-folders named like the classes).")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `vitl train`")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--positive-class", metavar="NAME",
                        help="the defect class for ROC/PR and the threshold (default the first)")
    add_cache_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate the model on DATA_DIR and print the report (or one JSON object); return 0.

    Args:
        args: the parsed ``vitl evaluate`` arguments.

    Returns:
        The exit code, 0.

    Example:
        Needs a trained model (tested in ``tests/test_cli_models.py``):

        >>> from vitl.cli import main
        >>> main(["evaluate", "model", "photos", "--json"])  # doctest: +SKIP
        0
    """
    data_dir = existing_folder(args.data_dir, "DATA_DIR")
    clf = load_model_dir(args.model_dir, cache=args.cache)
    images = load_images(data_dir)
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
    print(report)
    if threshold is not None:
        print(f"\nthreshold for 95% recall of '{report.positive_class}' (chosen on this data): "
              f"{threshold}")
    return 0
