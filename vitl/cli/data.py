"""``vitl data DIR``: check an image folder and show what a training run would see."""

from __future__ import annotations

import argparse
import warnings

from ..data import load_image_folder, split
from .common import add_seed_option, add_split_option, split_fractions


def register(subparsers) -> None:
    """Add the ``data`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["data", "photos"]).split
        'tutorial'
        >>> parser.parse_args(["data", "photos", "--no-split"]).split is None
        True
    """
    parser = subparsers.add_parser(
        "data", help="check an image folder: images per class, sizes, bad files, split",
        description="Check a folder with one sub-folder per class: count images per class, "
                    "read image sizes, list bad files and show how `vitl train --split` would "
                    "split them.")
    parser.add_argument("folder", metavar="DIR", help="folder holding one sub-folder per class")
    add_split_option(parser, default="tutorial")
    parser.add_argument("--no-split", dest="split", action="store_const", const=None,
                        help="do not show a split")
    add_seed_option(parser)
    parser.add_argument("--no-validate", dest="validate", action="store_false",
                        help="only list files, do not decode them (faster, misses bad files)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the summary, the bad-file report and the split table; return 0.

    Args:
        args: the parsed ``vitl data`` arguments.

    Returns:
        The exit code, 0.

    Example:
        >>> import tempfile
        >>> from vitl.datasets import make_synthetic_cracks
        >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
        >>> args = argparse.Namespace(folder=folder, validate=False, split=None, seed=0)
        >>> run(args)  # doctest: +ELLIPSIS
        /.../s
        ...
        0
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every skipped file is printed in the report below
        images = load_image_folder(args.folder, validate=args.validate)
    print(f"{images.root}\n")
    print(images.summary(verbose=1))
    print()
    print(images.report)
    if args.split is not None:
        parts = split(images, *split_fractions(args.split), seed=args.seed)
        print(f"\nsplit ({args.split}, seed={args.seed}):")
        print(parts)
    return 0
