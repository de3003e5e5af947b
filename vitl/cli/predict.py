"""Classify images (files or folders) with a trained model.

Classify every image PATH names (image files, or folders searched recursively). Stdout is
CSV: a header `path,label,score`, then one row per image (score is the probability of
label), so scripts can read it as is. Files that cannot be read as images (corrupt, empty,
FIFOs, devices) get no row; each is named on stderr, and the others are still classified
(exit 0). --csv FILE also writes every class's score.

Example:
    Needs a trained model (tested in ``tests/test_cli_models.py``):

    >>> from vitl.cli import build_parser, main
    >>> build_parser().parse_args(["predict", "model", "a.jpg", "b.jpg"]).paths
    ['a.jpg', 'b.jpg']
    >>> main(["predict", "model", "crack.jpg"])  # doctest: +SKIP
    path,label,score
    crack.jpg,cracked,0.973100
    0
"""

import csv
import sys

from .common import add_model_options, check_writable, load_model_dir, readable_images


def register(parser) -> None:
    """Add ``vitl predict``'s arguments to its parser.

    Args:
        parser: the ``predict`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    add_model_options(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="also write path, label, score and score_<class> per class")


def run(args) -> int:
    """Classify every readable image; print CSV rows on stdout; return 0.

    Args:
        args: the parsed ``vitl predict`` arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    if args.csv:
        check_writable(args.csv, "--csv", kind="file")
    clf = load_model_dir(args.model_dir, cache=args.cache)  # before minutes of decoding
    predictions = clf.classify(readable_images(args.paths), csv_path=args.csv)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["path", "label", "score"])
    writer.writerows([p.path, p.label, f"{p.score:.6f}"] for p in predictions)
    if args.csv:
        print(f"wrote {len(predictions)} rows with every class's score to {args.csv}",
              file=sys.stderr)
    return 0
