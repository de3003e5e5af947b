"""Write Grad-CAM overlays: where in each image the model saw its class.

Explain a trained model's decision on each image with a Grad-CAM heatmap (from the
backbone's last convolutional block) blended over the image. Writes one PNG per image
(<image name>_gradcam.png; a repeated name gets _2, _3...) and prints: path, class, score,
output file. Unreadable files are named on stderr and skipped.

Example:
    Needs a trained model (tested in ``tests/test_explain.py``):

    >>> from vitl.cli import build_parser, main
    >>> args = build_parser().parse_args(["explain", "model", "a.jpg", "--out", "o"])
    >>> args.cache, args.alpha, args.class_name
    ('default', 0.4, None)
    >>> main(["explain", "model", "crack.jpg", "--out", "overlays"])  # doctest: +SKIP
    crack.jpg	CD	0.9731	overlays/crack_gradcam.png
    0
"""


from .._errors import problem
from .._files import atomic_path
from . import CLIError
from .common import add_model_options, bounded, check_writable, load_model_dir, readable_images


def register(parser) -> None:
    """Add ``vitl explain``'s arguments to its parser.

    Args:
        parser: the ``explain`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    add_model_options(parser, cache_help="; Grad-CAM itself always runs the backbone")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files or folders (every image below them)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the overlays (<image name>_gradcam.png)")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="explain this class for every image (e.g. the defect class); "
                             "default: each image's predicted class")
    parser.add_argument("--alpha", type=bounded(float, 0, 1), default=0.4,
                        help="heatmap opacity in the overlay, 0..1 (default 0.4)")


def run(args) -> int:
    """Explain every readable image, write its overlay, print one line per image; return 0.

    Args:
        args: the parsed ``vitl explain`` arguments.

    Returns:
        The exit code, 0 (see the module's example).

    Raises:
        CLIError: a bad ``--out``, MODEL_DIR or IMAGE (reported in one line).
    """
    from PIL import Image

    from ..explain import explain

    out = check_writable(args.out, "--out")
    clf = load_model_dir(args.model_dir, cache=args.cache)  # before minutes of decoding
    classes = [str(name) for name in clf.classes_]
    if args.class_name is not None and args.class_name not in classes:
        raise CLIError(problem("--class", f"one of {', '.join(classes)} (the model's classes)",
                               args.class_name, "pass a class name exactly as in labels.txt, or "
                               "leave --class out to explain each image's predicted class"))
    paths = readable_images(args.images)
    explanations = explain(clf, paths, class_name=args.class_name)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for explanation, path in zip(explanations, paths):
        name, n = f"{path.stem}_gradcam.png", 1
        while name in used:
            n += 1
            name = f"{path.stem}_{n}_gradcam.png"
        used.add(name)
        with atomic_path(out / name, suffix=".png") as tmp:  # old or new, never a half PNG
            Image.fromarray(explanation.overlay(alpha=args.alpha)).save(tmp)
        print(f"{explanation.path}\t{explanation.label}\t{explanation.score:.4f}\t{out / name}")
    return 0
