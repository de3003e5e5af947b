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
from .common import add_cache_options, check_writable, load_model_dir


def register(subparsers) -> None:
    """Add the ``predict`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["predict", "model", "a.jpg", "b.jpg"]).paths
        ['a.jpg', 'b.jpg']
    """
    parser = subparsers.add_parser(
        "predict", help="classify images (files or folders) with a trained model",
        description="Classify every image PATH names (image files, or folders searched "
                    "recursively). Stdout: a CSV header `path,label,score`, then one row per "
                    "image. --csv FILE also writes every class's score.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `vitl train`")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="also write path, label, score and score_<class> per class")
    add_cache_options(parser)
    parser.set_defaults(run=run)


def image_paths(paths) -> list[Path]:
    """Expand files and folders into image paths, keeping the given order.

    What is left out on the way (FIFOs, devices, unlistable folders) is named on stderr.

    Args:
        paths: image files and folders (searched recursively).

    Returns:
        The image paths.

    Raises:
        CLIError: a path that does not exist, or a folder without images.

    Example:
        >>> image_paths(["/no/such.png"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: PATH: expected an existing image file or folder, received ...
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

    Args:
        paths: image paths.

    Returns:
        The readable ones.

    Raises:
        CLIError: none of them is readable.

    Example:
        >>> usable_images(["/no/such.png"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: PATH: expected at least one readable image, ...
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
    """Classify every readable image; print CSV rows on stdout; return 0.

    Args:
        args: the parsed ``vitl predict`` arguments.

    Returns:
        The exit code, 0.

    Example:
        Needs a trained model (tested in ``tests/test_cli_models.py``):

        >>> from vitl.cli import main
        >>> main(["predict", "model", "crack.jpg"])  # doctest: +SKIP
        path,label,score
        crack.jpg,cracked,0.973100
        0
    """
    if args.csv:
        check_writable(args.csv, "--csv", kind="file")
    paths = image_paths(args.paths)
    clf = load_model_dir(args.model_dir, cache=args.cache)
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
