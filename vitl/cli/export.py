"""``vitl export MODEL_DIR --format savedmodel|tflite [--quantize float16|int8]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import problem
from ..export import LABELS_FILE
from . import CLIError
from .common import Choices, check_writable, existing_folder, load_model_dir


def register(subparsers) -> None:
    """Add the ``export`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> args = parser.parse_args(["export", "model", "--format", "tflite"])
        >>> args.quantize, args.representative, args.out
        (None, None, None)
    """
    parser = subparsers.add_parser(
        "export", help="export a trained model as a SavedModel or TFLite file",
        description="Export MODEL_DIR's model (images as float32 RGB 0..255 in, class "
                    "probabilities out) with labels.txt and export.json. 'savedmodel' is the "
                    "counterpart of ML.NET's .pb; 'tflite' runs on phones and edge devices, "
                    "optionally quantized.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `vitl train`")
    parser.add_argument("--format", required=True, choices=Choices("vitl.export", "FORMATS"),
                        help="'savedmodel' (TF Serving, TensorFlow) or 'tflite'")
    parser.add_argument("--quantize", default=None, choices=Choices("vitl.export",
                                                                    "QUANTIZATIONS"),
                        help="tflite only: 'float16' (half the size, same predictions within "
                             "~1e-2) or 'int8' (a quarter, full-integer, calibrated on training "
                             "images; it can cost accuracy: evaluate it before use)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="export folder (default MODEL_DIR/export)")
    parser.add_argument("--representative", default=None, metavar="DIR",
                        help="int8: images to calibrate with (default: the training images "
                             "recorded in the model, when they still exist)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a savedmodel/, .tflite, labels.txt or export.json in --out "
                             "that vitl did not write (refused otherwise)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export the model with ``clf.export`` and print what was written; return 0.

    Args:
        args: the parsed ``vitl export`` arguments.

    Returns:
        The exit code, 0.

    Example:
        Needs a trained model (tested in ``tests/test_cli_models.py``):

        >>> from vitl.cli import main
        >>> main(["export", "model", "--format", "tflite", "--quantize", "int8"])  # doctest: +SKIP
        exported tflite (int8): model/export/model_int8.tflite (2.6 MB)
        ...
        0
    """
    from ..export import check_export_dir, read_labels

    if args.quantize and args.format != "tflite":
        raise CLIError(problem("--quantize", "--format tflite (quantization is a TFLite option)",
                               f"--format {args.format}", "add --format tflite"))
    out = check_writable(args.out or Path(args.model_dir) / "export", "--out")
    check_export_dir(out, args.format, args.quantize, args.overwrite)
    representative = args.representative and existing_folder(args.representative,
                                                              "--representative")
    clf = load_model_dir(args.model_dir)
    path = clf.export(out, format=args.format, quantize=args.quantize,
                      representative=representative, overwrite=args.overwrite)
    size = (path.stat().st_size if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    kind = args.format + (f" ({args.quantize})" if args.quantize else "")
    print(f"exported {kind}: {path} ({size / 1e6:.1f} MB)")
    print(f"labels: {out / LABELS_FILE} ({', '.join(read_labels(out))}); "
          f"metadata: {out / 'export.json'}")
    print(f"input: float32 RGB 0..255, shape (N, {clf.extractor_.input_size}, "
          f"{clf.extractor_.input_size}, 3); output: class probabilities")
    return 0
