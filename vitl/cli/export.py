"""``vitl export MODEL_DIR --format savedmodel|tflite [--quantize float16|int8]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import problem
from . import CLIError
from .predict import image_paths
from .train import check_writable, existing_folder, load_model_dir


def register(subparsers) -> None:
    """Add the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export", help="export a trained model as a SavedModel or TFLite file",
        description="Export MODEL_DIR's model (images as float32 RGB 0..255 in, class "
                    "probabilities out) with labels.txt and export.json. 'savedmodel' is the "
                    "counterpart of ML.NET's .pb; 'tflite' runs on phones and edge devices, "
                    "optionally quantized.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `vitl train`")
    parser.add_argument("--format", required=True, metavar="{savedmodel,tflite}",
                        help="'savedmodel' (TF Serving, TensorFlow) or 'tflite'")
    parser.add_argument("--quantize", default=None, metavar="{float16,int8}",
                        help="tflite only: 'float16' (half the size, same predictions within "
                             "~1e-2) or 'int8' (a quarter, full-integer, calibrated on training "
                             "images; it can cost accuracy: evaluate it before use)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="export folder (default MODEL_DIR/export)")
    parser.add_argument("--calibration", default=None, metavar="DIR",
                        help="int8: images to calibrate with (default: the training images "
                             "recorded in the model, when they still exist)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a savedmodel/, .tflite, labels.txt or export.json in --out "
                             "that vitl did not write (refused otherwise)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..export import FORMATS, QUANTIZATIONS, check_export_dir, export_model, read_labels

    if args.format not in FORMATS:
        raise CLIError(problem("--format", "'savedmodel' or 'tflite'", args.format,
                               "pass --format savedmodel or --format tflite"))
    if args.quantize not in QUANTIZATIONS:
        raise CLIError(problem("--quantize", "'float16' or 'int8' (or leave it out)",
                               args.quantize, "pass --quantize float16 or --quantize int8"))
    if args.quantize and args.format != "tflite":
        raise CLIError(problem("--quantize", "--format tflite (quantization is a TFLite option)",
                               f"--format {args.format}", "add --format tflite"))
    out = Path(args.out) if args.out else Path(args.model_dir) / "export"
    check_writable(out, "--out")
    check_export_dir(out, args.format, args.quantize, args.overwrite)
    clf = load_model_dir(args.model_dir)
    representative = None
    if args.quantize == "int8":
        if args.calibration:
            # Unreadable images among them are named and skipped by export_model.
            representative = image_paths([existing_folder(args.calibration, "--calibration")])
        else:
            recorded = clf.fit_info_.get("calibration_paths", [])
            representative = [p for p in recorded if Path(p).is_file()]
            if not representative:
                raise CLIError(problem(
                    "calibration images", "the training images recorded in the model",
                    f"none of {len(recorded)} still exist" if recorded else "none recorded",
                    "pass --calibration DIR with a few hundred images like the training ones"))
    path = export_model(clf.model_, list(clf.classes_), out, format=args.format,
                        quantize=args.quantize, representative=representative,
                        overwrite=args.overwrite)
    size = (path.stat().st_size if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    kind = args.format + (f" ({args.quantize})" if args.quantize else "")
    print(f"exported {kind}: {path} ({size / 1e6:.1f} MB)")
    print(f"labels: {out / 'labels.txt'} ({', '.join(read_labels(out))}); "
          f"metadata: {out / 'export.json'}")
    print(f"input: float32 RGB 0..255, shape (N, {clf.extractor_.input_size}, "
          f"{clf.extractor_.input_size}, 3); output: class probabilities")
    return 0
