"""``vitl explain MODEL IMAGE... --out DIR``: Grad-CAM overlays showing where the class was seen."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_cache_options, check_writable, load_model_dir, number
from .predict import image_paths, usable_images


def register(subparsers) -> None:
    """Add the ``explain`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> args = parser.parse_args(["explain", "model", "a.jpg", "--out", "o"])
        >>> args.cache, args.alpha, args.class_name
        ('default', 0.4, None)
    """
    parser = subparsers.add_parser(
        "explain", help="write Grad-CAM overlays: where in each image the model saw its class",
        description="Explain a trained model's decision on each image with a Grad-CAM heatmap "
                    "(from the backbone's last convolutional block) blended over the image. "
                    "Writes one PNG per image and prints: path, class, score, output file.")
    parser.add_argument("model", metavar="MODEL",
                        help="a model folder (holding model.keras) or a .keras file")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files or folders (every image below them)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the overlays (<image name>_gradcam.png)")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="explain this class for every image (e.g. the defect class); "
                             "default: each image's predicted class")
    parser.add_argument("--alpha", type=number(0, 1, low_open=False), default=0.4,
                        help="heatmap opacity in the overlay, 0..1 (default 0.4)")
    add_cache_options(parser, help_extra="; Grad-CAM itself always runs the backbone")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Explain every readable image, write its overlay, print one line per image; return 0.

    Unreadable files are named on stderr and skipped.

    Args:
        args: the parsed ``vitl explain`` arguments.

    Returns:
        The exit code, 0.

    Raises:
        CLIError: a bad ``--out``, MODEL or IMAGE (reported in one line).

    Example:
        Needs a trained model (tested in ``tests/test_explain.py``):

        >>> from vitl.cli import main
        >>> main(["explain", "model", "crack.jpg", "--out", "overlays"])  # doctest: +SKIP
        crack.jpg	CD	0.9731	overlays/crack_gradcam.png
        0
    """
    from PIL import Image

    from ..explain import explain

    out = check_writable(args.out, "--out")
    paths = image_paths(args.images)
    clf = load_model_dir(args.model, cache=args.cache)
    paths = usable_images(paths)  # bad files are named on stderr and skipped
    explanations = explain(clf, paths, class_name=args.class_name)
    out.mkdir(parents=True, exist_ok=True)
    for explanation, target in zip(explanations, _output_names(paths, out)):
        Image.fromarray(explanation.overlay(alpha=args.alpha)).save(target)
        print(f"{explanation.path}\t{explanation.label}\t{explanation.score:.4f}\t{target}")
    return 0


def _output_names(paths: list[Path], out: Path) -> list[Path]:
    """``<stem>_gradcam.png`` per image; a repeated stem gets ``_2``, ``_3``..."""
    used: set[str] = set()
    names = []
    for path in paths:
        name, n = f"{path.stem}_gradcam.png", 1
        while name in used:
            n += 1
            name = f"{path.stem}_{n}_gradcam.png"
        used.add(name)
        names.append(out / name)
    return names
