"""Show, clear, export or import the feature cache.

The cache keeps every feature vector computed,
keyed by image content, backbone, weights, input size and precision, so reruns only compute
new images. Default folder: $VITL_CACHE, else $VITL_HOME/cache.

Example:
    >>> from vitl.cli import build_parser, main
    >>> args = build_parser().parse_args(["cache", "export", "shards", "--rows-per-file", "10"])
    >>> args.action, args.shards, args.rows_per_file, args.cache
    ('export', 'shards', 10, None)
    >>> main(["cache", "info", "--cache", "/no/cache"])
    no feature cache at /no/cache yet (it is created by the first featurize run)
    0
"""

import sys
from pathlib import Path

from .._errors import problem
from .._paths import default_cache_dir
from ..features.cache import DB_NAME, FeatureCache
from . import CLIError
from .common import add_actions, bounded, check_writable


def register(parser) -> None:
    """Add ``vitl cache``'s actions ``info``, ``clear``, ``export`` and ``import``.

    Args:
        parser: the ``cache`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    actions = add_actions(parser, {"info": run_info, "clear": run_clear, "export": run_export,
                                   "import": run_import})
    for name, action in actions.items():
        if name in ("export", "import"):
            action.add_argument("shards", metavar="SHARDS", help="folder of .parquet shard files")
        action.add_argument("--cache", metavar="DIR", type=Path, help="cache folder (default: "
                            "$VITL_CACHE, else $VITL_HOME/cache)")
    actions["clear"].add_argument("--backbone", metavar="NAME",
                                  help="only delete this backbone's features")
    actions["clear"].add_argument("--yes", action="store_true", help="do not ask for confirmation")
    actions["export"].add_argument("--rows-per-file", type=bounded(int, 1), default=50_000,
                                   metavar="N", help="vectors per shard file (default 50000)")


def cache_folder(args) -> Path:
    """``--cache`` or the default folder; refuse a file.

    Args:
        args: the parsed ``vitl cache`` arguments.

    Returns:
        The folder (it may not exist).

    Example:
        >>> from argparse import Namespace
        >>> cache_folder(Namespace(cache=Path("/tmp/c")))
        PosixPath('/tmp/c')
    """
    folder = (args.cache or default_cache_dir()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CLIError(problem("--cache", "a folder", f"the file {folder}",
                               f"pass the folder that holds {DB_NAME}"))
    return folder


def existing_cache(args) -> FeatureCache | None:
    """The cache at ``--cache``, or None (said on stdout) when there is none yet.

    Args:
        args: the parsed ``vitl cache`` arguments.

    Returns:
        An open :class:`~vitl.features.cache.FeatureCache`, or None (see the module's example).
    """
    folder = cache_folder(args)
    if not (folder / DB_NAME).is_file():
        print(f"no feature cache at {folder} yet (it is created by the first featurize run)")
        return None
    return FeatureCache(folder)


def run_info(args) -> int:
    """Show size on disk, entries per backbone and last-run hit rates.

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    cache = existing_cache(args)
    if cache is not None:
        with cache:
            print(cache.info())
    return 0


def run_clear(args) -> int:
    """Delete cached features (all, or one backbone's) after confirmation or --yes.

    Args:
        args: the parsed arguments.

    Returns:
        0, or 1 when the user said no.

    Example:
        Tested in ``tests/test_cache.py``:

        >>> main(["cache", "clear", "--yes", "--cache", "c"])  # doctest: +SKIP
        deleted 3 cached feature vectors
        0
    """
    cache = existing_cache(args)
    if cache is None:
        return 0
    with cache:
        info = cache.info()
        counts = {None: info.entries, **info.entries_per_backbone}
        of = f" of {args.backbone}" if args.backbone else ""
        if args.backbone not in counts:
            print(f"no cached features for backbone {args.backbone!r} in {cache.directory} "
                  f"(cached backbones: {', '.join(sorted(info.entries_per_backbone)) or 'none'})")
            return 0
        what = f"{counts[args.backbone]} cached feature vectors{of} in {cache.path}"
        if not args.yes:
            if not sys.stdin.isatty():
                raise CLIError(problem("confirmation", f"--yes to delete {what}",
                                       "no terminal to ask on", "add --yes"))
            if input(f"delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        print(f"deleted {cache.clear(args.backbone)} cached feature vectors{of}")
    return 0


def run_export(args) -> int:
    """Write the intact cached features as Parquet shard files into SHARDS (docs/SCALE.md).

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0.

    Example:
        Tested in ``tests/test_shards.py``:

        >>> main(["cache", "export", "shards"])  # doctest: +SKIP
        exported 2 shard files to shards
        0
    """
    from ..features.shards import export_shards

    target = check_writable(args.shards, "SHARDS")
    cache = existing_cache(args)
    if cache is not None:
        with cache:
            files = export_shards(cache, target, rows_per_file=args.rows_per_file)
        print(f"exported {len(files)} shard files to {target}")
    return 0


def run_import(args) -> int:
    """Validate and merge the Parquet shard files of SHARDS into the cache.

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0.

    Example:
        Tested in ``tests/test_shards.py``:

        >>> main(["cache", "import", "shards"])  # doctest: +SKIP
        0
    """
    from ..features.shards import import_shards, shard_files

    folder = cache_folder(args)
    if not shard_files(args.shards):
        raise CLIError(problem("SHARDS", ".parquet shard files", f"none in {args.shards}",
                               "pass the folder `vitl featurize --engine ray` or "
                               "`vitl cache export` wrote"))
    with FeatureCache(folder) as cache:
        stats = import_shards(args.shards, cache)
    for content, path, reason in stats.errors:
        print(f"error row: {path or content}: {reason}")
    print(stats)
    return 0
