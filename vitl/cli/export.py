"""Export a trained model as a SavedModel or TFLite file.

Export MODEL_DIR's model (images as float32 RGB 0..255 in, class probabilities out) with
labels.txt and export.json, as clf.export does. 'savedmodel' is the counterpart of ML.NET's
.pb; 'tflite' runs on phones and edge devices, optionally quantized.

Example:
    Needs a trained model (tested in ``tests/test_cli_models.py``):

    >>> from vitl.cli import build_parser, main
    >>> args = build_parser().parse_args(["export", "model", "--format", "tflite"])
    >>> args.quantize, args.representative, args.out
    (None, None, None)
    >>> main(["export", "model", "--format", "tflite", "--quantize", "int8"])  # doctest: +SKIP
    exported tflite (int8): model/export/model_int8.tflite (2.6 MB)
    ...
    0
"""

from pathlib import Path

from .._errors import problem
from ..export import LABELS_FILE
from . import CLIError
from .common import Choices, add_model_options, check_writable, load_model_dir


def register(parser) -> None:
    """Add ``vitl export``'s arguments to its parser.

    Args:
        parser: the ``export`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    add_model_options(parser, cache=False)
    parser.add_argument("--format", required=True, choices=Choices("vitl.export", "FORMATS"),
                        help="'savedmodel' (TF Serving, TensorFlow) or 'tflite'")
    parser.add_argument("--quantize", choices=Choices("vitl.export", "QUANTIZATIONS"),
                        help="tflite only: 'float16' (half the size, probabilities within ~0.03 "
                             "of the Keras model's) or 'int8' (a quarter, full-integer, calibrated "
                             "on training images; it can cost accuracy: evaluate it before use)")
    parser.add_argument("--out", metavar="DIR", help="export folder (default MODEL_DIR/export)")
    parser.add_argument("--representative", metavar="DIR",
                        help="int8: images to calibrate with (default: the training images "
                             "recorded in the model, when they still exist)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a savedmodel/, .tflite, labels.txt or export.json in --out "
                             "that vitl did not write (refused otherwise)")


def run(args) -> int:
    """Export the model with ``clf.export`` and print what was written; return 0.

    Args:
        args: the parsed ``vitl export`` arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    from ..export import check_export_dir

    # The output is checked before the model is loaded; clf.export checks the rest.
    out = check_writable(args.out or Path(args.model_dir) / "export", "--out")
    check_export_dir(out, args.format, args.quantize, args.overwrite)
    if args.representative and not Path(args.representative).expanduser().exists():
        raise CLIError(problem("--representative", "an existing folder of images (or an image "
                               "file)", args.representative, "check the path, or leave it out to "
                               "calibrate on the training images"))
    clf = load_model_dir(args.model_dir)
    path = clf.export(out, format=args.format, quantize=args.quantize,
                      representative=args.representative, overwrite=args.overwrite)
    size = sum(p.stat().st_size for p in [path, *path.rglob("*")] if p.is_file())
    print(f"exported {args.format}{f' ({args.quantize})' if args.quantize else ''}: {path} "
          f"({size / 1e6:.1f} MB)\nlabels: {out / LABELS_FILE} ({', '.join(clf.classes_)}); "
          f"metadata: {out / 'export.json'}")
    print(f"input: float32 RGB 0..255, shape (N, {clf.extractor_.input_size}, "
          f"{clf.extractor_.input_size}, 3); output: class probabilities")
    return 0
