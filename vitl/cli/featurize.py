"""``vitl featurize DATA``: the bottleneck phase alone, locally or on a Ray cluster.

Fills the feature cache with exactly the entries ``vitl train`` reads (same
backbone, weights, input size and precision), so a later ``vitl train DATA
--cache C`` computes nothing. ``--engine ray`` runs it on a Ray Data actor
pool (:mod:`vitl.features.ray_engine`); see docs/SCALE.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import problem
from . import CLIError

PRECISIONS = ("float32", "bfloat16", "float16", "auto")


def register(subparsers) -> None:
    """Add the ``featurize`` sub-command."""
    parser = subparsers.add_parser(
        "featurize", help="compute and cache the backbone features of a folder of images",
        description="Run every image below DATA (any depth) once through the frozen backbone and "
                    "keep the pooled features in the feature cache, the entries `vitl train` "
                    "and `vitl evaluate` read later. Unreadable files are skipped and named. "
                    "--engine ray spreads the work over a Ray cluster (pip install 'vitl[ray]').")
    parser.add_argument("data", metavar="DATA", help="folder of images (e.g. one sub-folder "
                        "per class)")
    parser.add_argument("--backbone", default="resnet101v2",
                        help="backbone name, or 'auto' as in `vitl train` (default resnet101v2)")
    parser.add_argument("--input-size", type=int, default=None, metavar="PIXELS",
                        help="square input side (default: the backbone's own); use the value "
                             "you will pass to `vitl train`")
    parser.add_argument("--precision", default="float32", metavar="{" + ",".join(PRECISIONS) + "}",
                        help="backbone precision (default float32, what `vitl train` uses); "
                             "'auto' measures once per machine")
    parser.add_argument("--cache", default="default", metavar="DIR",
                        help="feature cache folder, or 'default' (VITL_CACHE or VITL_HOME/cache)")
    parser.add_argument("--engine", default="local", metavar="{local,ray}",
                        help="'local': this process (default); 'ray': a Ray Data actor pool")
    ray = parser.add_argument_group("ray engine")
    ray.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                     help="Ray cluster to join (default: start a local one on this machine)")
    ray.add_argument("--workers", type=int, default=None, metavar="N",
                     help="actors, one backbone each (default: one per CPU, or per GPU)")
    ray.add_argument("--cpus-per-worker", type=int, default=1, metavar="C",
                     help="CPUs (and TensorFlow threads) per actor (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                     help="GPUs per actor (default 0)")
    ray.add_argument("--shards", default=None, metavar="DIR",
                     help="shard folder on storage every node sees (default CACHE/shards)")
    ray.add_argument("--shard-size", type=int, default=1000, metavar="N",
                     help="images per shard (default 1000)")
    parser.set_defaults(run=run)


def check_options(args) -> None:
    """Reject bad options before any file is read (one-line errors)."""
    if args.engine not in ("local", "ray"):
        raise CLIError(problem("--engine", "'local' or 'ray'", args.engine,
                               "pass --engine local, or --engine ray for a Ray cluster"))
    if args.precision not in PRECISIONS:
        raise CLIError(problem("--precision", f"one of {', '.join(PRECISIONS)}", args.precision,
                               "pass --precision float32 (what `vitl train` uses)"))
    for name, minimum in (("--input-size", 32), ("--workers", 1), ("--cpus-per-worker", 1),
                          ("--shard-size", 1)):
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None and value < minimum:
            raise CLIError(problem(name, f"an integer >= {minimum}", value,
                                   f"pass {name} {minimum} or more"))
    if not args.gpus_per_worker >= 0:
        raise CLIError(problem("--gpus-per-worker", "a number >= 0", args.gpus_per_worker,
                               "pass --gpus-per-worker 1 on GPU nodes, 0 on CPUs"))
    ray_only = [name for name, value, default in (
        ("--address", args.address, None), ("--workers", args.workers, None),
        ("--cpus-per-worker", args.cpus_per_worker, 1),
        ("--gpus-per-worker", args.gpus_per_worker, 0), ("--shards", args.shards, None),
        ("--shard-size", args.shard_size, 1000)) if value != default]
    if args.engine == "local" and ray_only:
        raise CLIError(problem(", ".join(ray_only), "only with --engine ray", "--engine local",
                               "add --engine ray, or drop those options"))
    if args.address is not None and args.address != "auto" and \
            not args.address.startswith("ray://"):
        raise CLIError(problem("--address", "'auto' or ray://HOST:PORT", args.address,
                               "pass --address auto on a cluster node, or ray://head:10001"))
    if str(args.cache).lower() == "none":
        raise CLIError(problem("--cache", "a cache folder to fill", args.cache,
                               "pass --cache DIR or omit it (default cache)"))
    data = Path(args.data).expanduser()
    if not data.exists():
        raise CLIError(problem("DATA", "a folder of images", f"{data} (does not exist)",
                               "check the path"))


def run(args: argparse.Namespace) -> int:
    from ..features.folder import featurize_folder
    from .train import choose_backbone

    check_options(args)
    backbone, reason = choose_backbone(args.backbone)
    if reason:
        print(reason)
    stats = featurize_folder(
        args.data, backbone, input_size=args.input_size, precision=args.precision,
        cache=args.cache, engine=args.engine, address=args.address, workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        shard_dir=args.shards, shard_size=args.shard_size)
    for path, why in stats.bad:
        print(f"skipped {path}: {why}")
    print(stats)
    return 0
