"""Check an image folder: images per class, sizes, bad files, split.

Check a folder with one sub-folder per class: count images per class, read image sizes,
list bad files and show how `vitl train --split` would split them.

Example:
    >>> import tempfile
    >>> from vitl.cli import main
    >>> from vitl.datasets import make_synthetic_cracks
    >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
    >>> main(["data", str(folder), "--no-validate", "--split", "50/50/0"])  # doctest: +ELLIPSIS
    /.../s
    ...
    split (50/50/0, seed=0):
    ...
    0
"""

import warnings

from ..data import load_image_folder, split
from .common import add_seed_option, add_split_option, split_fractions


def register(parser) -> None:
    """Add ``vitl data``'s arguments to its parser.

    Args:
        parser: the ``data`` sub-command's parser.

    Returns:
        None.

    Example:
        >>> from vitl.cli import build_parser
        >>> build_parser().parse_args(["data", "photos"]).split
        'tutorial'
        >>> build_parser().parse_args(["data", "photos", "--no-split"]).split is None
        True
    """
    parser.add_argument("folder", metavar="DIR", help="folder holding one sub-folder per class")
    add_split_option(parser, default="tutorial")
    parser.add_argument("--no-split", dest="split", action="store_const", const=None,
                        help="do not show a split")
    add_seed_option(parser)
    parser.add_argument("--no-validate", dest="validate", action="store_false",
                        help="only list files, do not decode them (faster, misses bad files)")


def run(args) -> int:
    """Print the summary, the bad-file report and the split table; return 0.

    Args:
        args: the parsed ``vitl data`` arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every skipped file is printed in the report below
        images = load_image_folder(args.folder, validate=args.validate)
    print(f"{images.root}\n\n{images.summary(verbose=1)}\n\n{images.report}")
    if args.split is not None:
        parts = split(images, *split_fractions(args.split), seed=args.seed)
        print(f"\nsplit ({args.split}, seed={args.seed}):\n{parts}")
    return 0
