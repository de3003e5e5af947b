"""``vitl featurize DATA``: the bottleneck phase alone, locally or on a Ray cluster.

Fills the feature cache with exactly the entries ``vitl train`` reads (same
backbone, weights, input size and precision), so a later ``vitl train DATA
--cache C`` computes nothing. ``--engine ray`` runs it on a Ray Data actor
pool (:mod:`vitl.features.ray_engine`); see docs/SCALE.md.
"""

from __future__ import annotations

import argparse

from .._errors import problem
from . import CLIError
from .common import Choices, add_backbone_options, add_cache_options, integer, number


def register(subparsers) -> None:
    """Add the ``featurize`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> args = parser.parse_args(["featurize", "photos"])
        >>> args.backbone, args.engine, args.cache
        ('auto', 'local', 'default')
    """
    parser = subparsers.add_parser(
        "featurize", help="compute and cache the backbone features of a folder of images",
        description="Fill the feature cache with the entries `vitl train` and `vitl evaluate` "
                    "read later; unreadable files are skipped and named. --engine ray spreads "
                    "the work over a Ray cluster (pip install 'vitl[ray]').")
    parser.add_argument("data", metavar="DATA", help="folder of images, any depth")
    add_backbone_options(parser)  # the values `vitl train` will get
    add_cache_options(parser)
    parser.add_argument("--engine", default="local",
                        choices=Choices("vitl.features.folder", "ENGINES"),
                        help="'local': this process (default); 'ray': a Ray Data actor pool")
    ray = parser.add_argument_group("ray engine")
    ray.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                     help="Ray cluster to join (default: start a local one on this machine)")
    ray.add_argument("--workers", type=integer(1), default=None, metavar="N",
                     help="actors, one backbone each (default: one per CPU, or per GPU)")
    ray.add_argument("--cpus-per-worker", type=integer(1), default=1, metavar="C",
                     help="CPUs (and TensorFlow threads) per actor (default 1)")
    ray.add_argument("--gpus-per-worker", type=number(0, 1024, low_open=False), default=0,
                     metavar="G",
                     help="GPUs per actor (default 0)")
    ray.add_argument("--shard-dir", metavar="DIR",
                     help="shard folder on storage every node sees (default CACHE/shards)")
    ray.add_argument("--shard-size", type=integer(1), default=1000, metavar="N",
                     help="images per shard (default 1000)")
    parser.set_defaults(run=run)


def check_options(args) -> None:
    """Reject option combinations argparse cannot see, before any file is read.

    Args:
        args: the parsed ``vitl featurize`` arguments.

    Returns:
        None.

    Raises:
        CLIError: ray options without ``--engine ray`` or a bad ``--address`` (one line
            each; ``featurize_folder`` checks the rest before any work).

    Example:
        >>> args = argparse.Namespace(engine="local", address=None, workers=2, cpus_per_worker=1,
        ...                           gpus_per_worker=0, shard_dir=None, shard_size=1000)
        >>> check_options(args)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: --workers: expected only with --engine ray, received '--engine local'...
    """
    ray_only = [name for name, value, default in (
        ("--address", args.address, None), ("--workers", args.workers, None),
        ("--cpus-per-worker", args.cpus_per_worker, 1),
        ("--gpus-per-worker", args.gpus_per_worker, 0), ("--shard-dir", args.shard_dir, None),
        ("--shard-size", args.shard_size, 1000)) if value != default]
    if args.engine == "local" and ray_only:
        raise CLIError(problem(", ".join(ray_only), "only with --engine ray", "--engine local",
                               "add --engine ray, or drop those options"))
    if args.address is not None and args.address != "auto" and \
            not args.address.startswith("ray://"):
        raise CLIError(problem("--address", "'auto' or ray://HOST:PORT", args.address,
                               "pass --address auto on a cluster node, or ray://head:10001"))


def run(args: argparse.Namespace) -> int:
    """Featurize DATA into the cache; print skipped files and the summary; return 0.

    Args:
        args: the parsed ``vitl featurize`` arguments.

    Returns:
        The exit code, 0.

    Example:
        Runs the backbone (tested in ``tests/test_featurize_cli.py``):

        >>> from vitl.cli import main
        >>> main(["featurize", "photos", "--backbone", "mobilenetv2-tv"])  # doctest: +SKIP
        0
    """
    from ..features.folder import featurize_folder
    from .common import choose_backbone

    check_options(args)
    backbone, reason = choose_backbone(args.backbone)
    if reason:
        print(reason)
    stats = featurize_folder(
        args.data, backbone, input_size=args.input_size, precision=args.precision,
        cache=args.cache, engine=args.engine, address=args.address, workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        shard_dir=args.shard_dir, shard_size=args.shard_size)
    for path, why in stats.bad:
        print(f"skipped {path}: {why}")
    print(stats)
    return 0
