"""``vitl cache info|clear|export|import``: inspect, empty or exchange the feature cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._paths import default_cache_dir
from ..features.cache import DB_NAME, FeatureCache
from . import CLIError


def register(subparsers) -> None:
    """Add the ``cache`` sub-command with ``info`` and ``clear``."""
    parser = subparsers.add_parser(
        "cache", help="show or clear the feature cache",
        description="The feature cache keeps every backbone feature vector computed, keyed by "
                    "image content, backbone, weights, input size and precision, so reruns "
                    "only compute new images. Default folder: $VITL_CACHE, else "
                    "$VITL_HOME/cache (~/.vitl/cache).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="size on disk, entries per backbone, last hit rates")
    clear = actions.add_parser("clear", help="delete cached features (all, or one backbone's)")
    for sub in (info, clear):
        sub.add_argument("--cache", metavar="DIR", type=Path, default=None,
                         help=f"cache folder (default: {default_cache_dir()})")
    clear.add_argument("--backbone", metavar="NAME", default=None,
                       help="only delete this backbone's features, e.g. resnet101v2")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    info.set_defaults(run=run_info)
    clear.set_defaults(run=run_clear)
    register_shards(actions)


def _existing_cache(args) -> FeatureCache | None:
    folder = (args.cache or default_cache_dir()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--cache: expected a folder, received the file {folder}. "
                       "Fix: pass the folder that holds features.sqlite")
    if not (folder / DB_NAME).is_file():
        print(f"no feature cache at {folder} yet (it is created by the first featurize run)")
        return None
    return FeatureCache(folder)


def run_info(args: argparse.Namespace) -> int:
    """Print the cache's path, size, entries per backbone and last-run hit rates."""
    cache = _existing_cache(args)
    if cache is not None:
        with cache:
            print(cache.info())
    return 0


def run_clear(args: argparse.Namespace) -> int:
    """Delete cached features after confirmation (or ``--yes``); print how many."""
    cache = _existing_cache(args)
    if cache is None:
        return 0
    with cache:
        info = cache.info()
        if args.backbone is not None and args.backbone not in info.entries_per_backbone:
            known = ", ".join(sorted(info.entries_per_backbone)) or "none"
            print(f"no cached features for backbone {args.backbone!r} in {cache.directory} "
                  f"(cached backbones: {known})")
            return 0
        count = info.entries_per_backbone.get(args.backbone, 0) if args.backbone else info.entries
        what = f"{count} cached feature vectors" + (
            f" of {args.backbone}" if args.backbone else "") + f" in {cache.path}"
        if not args.yes:
            if not sys.stdin.isatty():
                raise CLIError(f"would delete {what}; confirm with --yes "
                               "(no terminal to ask on)")
            answer = input(f"delete {what}? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print("nothing deleted")
                return 1
        removed = cache.clear(args.backbone)
        print(f"deleted {removed} cached feature vectors"
              + (f" of {args.backbone}" if args.backbone else ""))
    return 0


# ---------------------------------------------------------------- shards (docs/SCALE.md)
def register_shards(actions) -> None:
    """Add ``cache export SHARDS`` and ``cache import SHARDS`` (Parquet feature shards)."""
    export = actions.add_parser("export", help="write the cached features as Parquet shards")
    load = actions.add_parser("import", help="merge Parquet feature shards into the cache")
    for sub in (export, load):
        sub.add_argument("shards", metavar="SHARDS", help="folder of .parquet shard files")
        sub.add_argument("--cache", metavar="DIR", type=Path, default=None,
                         help=f"cache folder (default: {default_cache_dir()})")
    export.add_argument("--rows-per-file", type=int, default=50_000, metavar="N",
                        help="vectors per shard file (default 50000)")
    export.set_defaults(run=run_export)
    load.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    """Write every intact cached vector as shard files into SHARDS."""
    from ..features.shards import export_shards

    if args.rows_per_file < 1:
        raise CLIError(f"--rows-per-file: expected an integer >= 1, received {args.rows_per_file}"
                       ". Fix: pass --rows-per-file 50000")
    target = Path(args.shards).expanduser()
    if target.exists() and not target.is_dir():
        raise CLIError(f"SHARDS: expected a folder, received the file {target}. "
                       "Fix: pass a folder path (created when missing)")
    cache = _existing_cache(args)
    if cache is None:
        return 0
    with cache:
        files = export_shards(cache, target, rows_per_file=args.rows_per_file)
    print(f"exported {len(files)} shard files to {target}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Validate and merge the shard files of SHARDS into the cache (re-import adds nothing)."""
    from ..features.shards import import_shards, shard_files

    folder = (args.cache or default_cache_dir()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--cache: expected a folder, received the file {folder}. "
                       "Fix: pass the folder that holds features.sqlite")
    if not shard_files(args.shards):
        raise CLIError(f"SHARDS: expected .parquet shard files, received none in {args.shards}. "
                       "Fix: pass the folder `vitl featurize --engine ray` or "
                       "`vitl cache export` wrote")
    with FeatureCache(folder) as cache:
        stats = import_shards(args.shards, cache)
    for content, path, reason in stats.errors:
        print(f"error row: {path or content}: {reason}")
    print(stats)
    return 0
