"""Compute and cache the backbone features of a folder of images.

The bottleneck phase alone: fill the feature cache with exactly the entries `vitl train`
and `vitl evaluate` read later (same backbone, weights, input size and precision), so a later
`vitl train DATA --cache C` computes nothing. Unreadable files are skipped and named.
--engine ray spreads the work over a Ray Data actor pool (pip install 'vitl[ray]';
docs/SCALE.md).

Example:
    Runs the backbone (tested in ``tests/test_featurize_cli.py``):

    >>> from vitl.cli import build_parser, main
    >>> args = build_parser().parse_args(["featurize", "photos"])
    >>> args.backbone, args.engine, args.cache, args.shard_size
    ('auto', 'local', 'default', 1000)
    >>> main(["featurize", "photos", "--backbone", "mobilenetv2-tv"])  # doctest: +SKIP
    0
"""


from .._errors import problem
from . import CLIError
from .common import Choices, add_backbone_options, add_cache_options, bounded

#: The ray engine's options (``featurize_folder``'s parameters): name -> (argparse keywords,
#: help). Given with ``--engine local`` they are refused.
RAY_OPTIONS = {
    "address": ({"metavar": "auto|ray://HOST:PORT"},
                  "Ray cluster to join (default: start a local one on this machine)"),
    "workers": ({"type": bounded(int, 1), "metavar": "N"},
                  "actors, one backbone each (default: one per CPU, or per GPU)"),
    "cpus_per_worker": ({"type": bounded(int, 1), "default": 1, "metavar": "C"},
                          "CPUs (and TensorFlow threads) per actor (default 1)"),
    "gpus_per_worker": ({"type": bounded(float, 0, 1024), "default": 0,
                           "metavar": "G"}, "GPUs per actor (default 0)"),
    "shard_dir": ({"metavar": "DIR"},
                    "shard folder on storage every node sees (default CACHE/shards)"),
    "shard_size": ({"type": bounded(int, 1), "default": 1000, "metavar": "N"},
                     "images per shard (default 1000)"),
}


def register(parser) -> None:
    """Add ``vitl featurize``'s arguments to its parser.

    Args:
        parser: the ``featurize`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    parser.add_argument("data", metavar="DATA", help="folder of images, any depth")
    add_backbone_options(parser)  # the values `vitl train` will get
    add_cache_options(parser)
    parser.add_argument("--engine", default="local",
                        choices=Choices("vitl.features.folder", "ENGINES"),
                        help="'local': this process (default); 'ray': a Ray Data actor pool")
    ray = parser.add_argument_group("ray engine")
    for name, (keywords, text) in RAY_OPTIONS.items():
        ray.add_argument("--" + name.replace("_", "-"), help=text, **keywords)


def run(args) -> int:
    """Featurize DATA into the cache; print skipped files and the summary; return 0.

    Ray options with ``--engine local`` and a bad ``--address`` are refused first (one
    line each); ``featurize_folder`` checks the rest before any work.

    Args:
        args: the parsed ``vitl featurize`` arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    from ..features.folder import featurize_folder
    from .common import choose_backbone

    ray = {name: getattr(args, name) for name in RAY_OPTIONS}
    changed = ["--" + name.replace("_", "-") for name, value in ray.items()
               if value != RAY_OPTIONS[name][0].get("default")]
    if args.engine == "local" and changed:
        raise CLIError(problem(", ".join(changed), "only with --engine ray", "--engine local",
                               "add --engine ray, or drop those options"))
    if args.address not in (None, "auto") and not args.address.startswith("ray://"):
        raise CLIError(problem("--address", "'auto' or ray://HOST:PORT", args.address,
                               "pass --address auto on a cluster node, or ray://head:10001"))
    backbone, reason = choose_backbone(args.backbone)
    if reason:
        print(reason)
    stats = featurize_folder(args.data, backbone, input_size=args.input_size,
                             precision=args.precision, cache=args.cache, engine=args.engine,
                             **ray)
    for path, why in stats.bad:
        print(f"skipped {path}: {why}")
    print(stats)
    return 0
