"""``vitl predict MODEL_DIR PATH... [--csv FILE]``: classify images with a saved model.

Stdout is CSV: a header line ``path,label,score`` then one row per image
(``score`` is the probability of ``label``), so scripts can read it as is.
Files that cannot be read as images (corrupt, empty, FIFOs, devices) get no
row; each is named on stderr, and the others are still classified (exit 0).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from .._errors import problem
from . import CLIError
from .train import check_cache_option, check_writable, load_model_dir


def register(subparsers) -> None:
    """Add the ``predict`` sub-command."""
    parser = subparsers.add_parser(
        "predict", help="classify images (files or folders) with a trained model",
        description="Classify every image PATH names (image files, or folders searched "
                    "recursively). Stdout: a CSV header `path,label,score`, then one row per "
                    "image. --csv FILE also writes every class's score.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `vitl train`")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="also write path, label, score and score_<class> per class")
    parser.add_argument("--cache", default="default", metavar="DIR",
                        help="feature cache folder, 'default' or 'none'")
    parser.set_defaults(run=run)


def image_paths(paths) -> list[Path]:
    """Expand files and folders into image paths, keeping the given order.

    What is left out on the way (FIFOs, devices, unlistable folders) is named on stderr.
    """
    from ..data import LoadReport, list_images

    found, report = [], LoadReport()
    for path in paths:
        path = Path(path).expanduser()
        if not path.exists():
            raise CLIError(problem("PATH", "an existing image file or folder", str(path),
                                   "check the path"))
        images = list_images(path, report=report)
        for item in report.skipped:
            print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
        report.skipped.clear()
        if path.is_dir() and not images:
            raise CLIError(problem("PATH", "a folder containing images", f"{path} (no images)",
                                   "pass a folder with .jpg/.png files, or the files"))
        found += images
    return found


def usable_images(paths) -> list[Path]:
    """The readable images among ``paths``; name each skipped one on stderr (one line each).

    Raises:
        CLIError: none of them is readable.
    """
    from ..data import check_images

    good, skipped = check_images(paths)
    for item in skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    if not good:
        raise CLIError(problem("PATH", "at least one readable image", f"{len(skipped)} files, "
                               "none readable (see the lines above)",
                               "pass image files (.jpg, .png...)"))
    return good


def run(args: argparse.Namespace) -> int:
    if args.csv:
        check_writable(args.csv, "--csv", kind="file")
    check_cache_option(args.cache)
    paths = image_paths(args.paths)
    clf = load_model_dir(args.model_dir, cache=None if args.cache == "none" else args.cache)
    paths = usable_images(paths)
    predictions = clf.classify(paths, csv_path=args.csv)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["path", "label", "score"])
    for p in predictions:
        writer.writerow([p.path, p.label, f"{p.score:.6f}"])
    if args.csv:
        print(f"wrote {len(predictions)} rows with every class's score to {args.csv}",
              file=sys.stderr)
    return 0
