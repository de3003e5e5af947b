"""Export a trained classifier for serving (SavedModel) or the edge (TFLite).

Every export takes the same input and gives the same output as the Keras
model: a batch of RGB images as float32 pixels in 0..255, shape
``(batch, size, size, 3)`` (resize like :func:`vitl.data.read_image`:
Pillow bilinear, no crop), and class probabilities ``(batch, n_classes)`` in
the column order of ``labels.txt``. Preprocessing is inside the exported graph.

One export folder holds one model's artifacts::

    savedmodel/             SavedModel, signature "serving_default" (alias "serve"),
                            input "image", output "probabilities"
    model.tflite            TFLite float32
    model_float16.tflite    TFLite with float16 weights (half the size)
    model_int8.tflite       TFLite full-integer: int8 weights and activations,
                            float32 input and output (the converter adds the
                            quantize / dequantize steps), so it is called like the others
    labels.txt              one class name per line, in score-column order
    export.json             input shape and range, output, labels, and one entry per artifact

``tests/test_export.py`` holds every export to :data:`TOLERANCES`, read back in
a fresh process. Full-integer int8 can cost real accuracy: prefer float16 for
the edge unless the target needs integer-only kernels, and evaluate the int8
file on your own validation images first. Measured sizes, differences from
the Keras model and accuracies: ``benchmarks/README.md``, section "Export".

Reading an export without vitl (plain TensorFlow)::

    import tensorflow as tf
    served = tf.saved_model.load("export/savedmodel")
    proba = served.signatures["serving_default"](image=batch)["probabilities"]

    runner = tf.lite.Interpreter("export/model_int8.tflite").get_signature_runner()
    proba = runner(image=batch)["probabilities"]
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import __version__
from ._errors import check_choice, check_verbose, problem, require
from ._files import atomic_folder, folder_lock, write_bytes_atomic
from ._hashing import sha256_file
from ._tensorflow import STARTUP_NOISE, filtered_native_stderr

FORMATS = ("savedmodel", "tflite")
QUANTIZATIONS = (None, "float16", "int8")
SIGNATURE = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SAVEDMODEL_DIR = "savedmodel"
TFLITE_FILES = {None: "model.tflite", "float16": "model_float16.tflite",
                "int8": "model_int8.tflite"}
ARTIFACTS = (SAVEDMODEL_DIR, *TFLITE_FILES.values())
LABELS_FILE = "labels.txt"
METADATA_FILE = "export.json"
#: int8 calibration uses at most this many representative images.
MAX_CALIBRATION_IMAGES = 200
#: Max abs difference of probabilities from the Keras model that tests/test_export.py
#: allows per artifact (its small model; real-data figures are in benchmarks/README.md).
TOLERANCES = {"savedmodel": 1e-5, "tflite": 1e-4, "tflite-float16": 2e-2, "tflite-int8": 0.15}
#: Lines TensorFlow's SavedModel writer and TFLite converter print for TF developers.
EXPORT_NOISE = re.compile(STARTUP_NOISE.pattern
                          + r"|fully_quantize: |XNNPACK delegate|Assets written to")


def export_model(model, class_names, directory, format="savedmodel", quantize=None,
                 representative=None, verbose=1, overwrite=False) -> Path:
    """Export a Keras classifier (images 0..255 in, probabilities out) with its labels.

    Args:
        model: a Keras model with input ``(None, size, size, 3)`` and a softmax
            output ``(None, len(class_names))``, e.g. ``ImageClassifier.model_``.
        class_names: class names in the order of the output columns.
        directory: export folder (created); see the module docstring for its layout.
            Exporting a different model into a folder that holds another
            model's artifacts removes those artifacts (they would disagree
            with the new ``labels.txt``). Files vitl did not write (not listed in
            the folder's ``export.json``) are never replaced unless ``overwrite``.
        format: ``"savedmodel"`` (the counterpart of ML.NET's ``.pb``) or ``"tflite"``.
        quantize: TFLite only: None (float32), ``"float16"`` (float16 weights)
            or ``"int8"`` (full-integer, float32 input and output).
        representative: int8 only: a folder or image paths to calibrate
            activation ranges with (a few hundred training images are plenty; at
            most :data:`MAX_CALIBRATION_IMAGES`, evenly spaced, are used;
            unreadable ones are named in a warning and left out).
            Ignored for the other formats.
        verbose: 0 silent, 1 or 2 a progress bar while calibrating int8.
        overwrite: replace a ``savedmodel/``, ``.tflite``, ``labels.txt`` or
            ``export.json`` in ``directory`` that vitl did not write.

    Returns:
        The path of the SavedModel folder or ``.tflite`` file written.

    Raises:
        ValueError: a bad argument (the message says what was expected and how
            to fix it), checked before anything is written.

    Warns:
        UserWarning: for each calibration image left out, and for each artifact of
            another model removed from ``directory``.

    Example:
        >>> import keras, tempfile
        >>> inputs = keras.Input((32, 32, 3), name="image")
        >>> x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
        >>> model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
        >>> out = tempfile.mkdtemp()
        >>> export_model(model, ["CD", "UD"], out, format="savedmodel").name
        'savedmodel'
        >>> (Path(out) / "labels.txt").read_text()
        'CD\\nUD\\n'
        >>> export_model(model, ["CD", "UD"], out, format="savedmodel", quantize="int8")
        Traceback (most recent call last):
        ...
        ValueError: quantize: expected None for format='savedmodel' (quantization is a TFLite option), received 'int8'. Fix: pass format='tflite' with quantize='int8', or leave quantize out
    """
    verbose = check_verbose(verbose)
    class_names = _check_arguments(model, class_names, format, quantize)
    check_export_dir(directory, format, quantize, overwrite)  # before the lock creates folders
    # Exports into one folder at once run one after the other: each finds export.json and the
    # folder as the last one left them, so none drops another's artifact from export.json.
    with folder_lock(Path(directory).absolute().parent):
        return _export_locked(model, class_names, directory, format, quantize, representative,
                              verbose, overwrite)


def _export_locked(model, class_names, directory, format, quantize, representative, verbose,
                   overwrite) -> Path:
    """:func:`export_model`'s work, once its arguments are checked and the folder is locked."""
    directory = check_export_dir(directory, format, quantize, overwrite)  # again, locked
    calibration = _calibration_paths(representative) if quantize == "int8" else None
    size, fingerprint = int(model.input_shape[1]), model_fingerprint(model)
    artifacts = _same_model_artifacts(directory, fingerprint, class_names)
    target = directory / artifact_name(format, quantize)
    metadata = {
        "input": {"name": INPUT_NAME, "shape": [None, size, size, 3], "dtype": "float32",
                  "range": [0, 255], "color": "RGB",
                  "resize": "to size x size, bilinear (Pillow, antialiased), no crop"},
        "output": {"name": OUTPUT_NAME, "shape": [None, len(class_names)], "dtype": "float32",
                   "meaning": "class probabilities (softmax), columns in labels order"},
        "labels": class_names, "signature": SIGNATURE, "artifacts": artifacts,
    }
    # Labels and export.json first: a crash before the artifact leaves no artifact of another
    # model beside them, and a folder vitl still knows as its own (a rerun is not refused).
    write_bytes_atomic(directory / LABELS_FILE, "".join(f"{c}\n" for c in class_names).encode())
    write_bytes_atomic(directory / METADATA_FILE, (json.dumps(metadata, indent=1) + "\n").encode())
    if format == "savedmodel":
        with atomic_folder(target) as tmp:
            _write_savedmodel(model, size, tmp)
    else:
        with tempfile.TemporaryDirectory(prefix=".tflite-", dir=directory) as tmp:
            source = directory / SAVEDMODEL_DIR
            if artifacts.get(SAVEDMODEL_DIR, {}).get("vitl_version") != __version__ or \
                    not source.is_dir():
                source = Path(tmp)
                _write_savedmodel(model, size, source)
            write_bytes_atomic(target, _convert_tflite(source, quantize, calibration, size,
                                                       verbose))
    artifacts[target.name] = {
        "format": format, "quantization": quantize, "model_fingerprint": fingerprint,
        "sha256": _digest(target),
        "calibration_images": len(calibration) if calibration else None,
        "bytes": sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        if target.is_dir() else target.stat().st_size, "vitl_version": __version__,
    }
    write_bytes_atomic(directory / METADATA_FILE, (json.dumps(metadata, indent=1) + "\n").encode())
    return target


def artifact_name(format: str, quantize=None) -> str:
    """Return the file or folder name an export of ``format`` / ``quantize`` gets in its folder.

    Args:
        format: ``"savedmodel"`` or ``"tflite"``.
        quantize: None, ``"float16"`` or ``"int8"`` (TFLite only).

    Returns:
        ``"savedmodel"`` or the ``.tflite`` file name.

    Example:
        >>> artifact_name("tflite", "int8")
        'model_int8.tflite'
    """
    return SAVEDMODEL_DIR if format == "savedmodel" else TFLITE_FILES[quantize]


def check_export_dir(directory, format: str, quantize=None, overwrite: bool = False) -> Path:
    """Refuse, before any work, an export folder vitl must not write into.

    Refused: ``directory`` is a file; or it holds the artifact to write (or
    ``labels.txt`` / ``export.json``) that vitl did not write, i.e. that its
    ``export.json`` does not list with the sha256 of what is there now, unless
    ``overwrite``. A planted or edited ``export.json`` cannot vouch for files.

    Args:
        directory: the export folder (it need not exist).
        format, quantize: the export to write, as for :func:`export_model`.
        overwrite: accept files vitl did not write (they will be replaced).

    Returns:
        ``directory`` as a ``Path``.

    Raises:
        ValueError: one line saying what was found and how to go on.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "labels.txt").write_text("mine\\n")
        >>> check_export_dir(folder, "savedmodel")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: export folder: expected a new folder, or one vitl exported to, received '... holding labels.txt that vitl did not write'. Fix: pass another --out folder, or --overwrite (overwrite=True) to replace them
    """
    directory = Path(directory)
    require(directory.is_dir() or not directory.exists(), "export folder",
            "a folder (created when missing)", f"the file {directory}",
            "pass a folder path, not a file")
    absolute = str(directory.absolute())  # bytes that are not UTF-8 arrive as surrogates
    require(not any("\udc80" <= ch <= "\udcff" for ch in absolute), "export folder",
            "a path in UTF-8 (TensorFlow writes SavedModels to no other)", absolute,
            "pass a folder whose path is UTF-8, e.g. rename the folder")
    old = _read_metadata(directory)
    names = [artifact_name(format, quantize)] + ([] if old else [LABELS_FILE, METADATA_FILE])
    listed = _written_by_vitl(directory, old)
    foreign = [name for name in names if (directory / name).exists() and name not in listed]
    require(overwrite or not foreign, "export folder", "a new folder, or one vitl exported to",
            f"{directory} holding {', '.join(foreign)} that vitl did not write",
            "pass another --out folder, or --overwrite (overwrite=True) to replace them")
    return directory


def model_fingerprint(model) -> str:
    """Return a short sha256 of a model's input shape and weights (which model an export holds).

    Args:
        model: a Keras model.

    Returns:
        16 hex digits.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> before = model_fingerprint(model)
        >>> len(before), before == model_fingerprint(model)
        (16, True)
        >>> model.layers[0].bias.assign([1.0])  # doctest: +ELLIPSIS
        <...>
        >>> before == model_fingerprint(model)
        False
    """
    digest = hashlib.sha256(repr(model.input_shape).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def read_labels(directory) -> list[str]:
    """Return the class names of an export folder (``labels.txt``), in score-column order.

    Args:
        directory: an export folder.

    Returns:
        The class names.

    Raises:
        FileNotFoundError: the folder has no ``labels.txt``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / LABELS_FILE).write_text("CD\\nUD\\n")
        >>> read_labels(folder)
        ['CD', 'UD']
    """
    path = Path(directory) / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(problem("export folder", f"a folder with {LABELS_FILE}",
                                        str(directory), "export a model there first"))
    return path.read_text(encoding="utf-8").splitlines()


def _check_arguments(model, class_names, format, quantize) -> list[str]:
    check_choice("format", format, FORMATS)
    check_choice("quantize", quantize, QUANTIZATIONS)
    require(format == "tflite" or quantize is None, "quantize",
            "None for format='savedmodel' (quantization is a TFLite option)", quantize,
            f"pass format='tflite' with quantize={quantize!r}, or leave quantize out")
    shape = tuple(getattr(model, "input_shape", ()) or ())
    require(len(shape) == 4 and shape[3] == 3 and shape[1] is not None and shape[1] == shape[2],
            "model", "a Keras model taking (None, size, size, 3) images", f"input shape {shape}",
            "pass ImageClassifier.model_")
    names, n_out = [str(c) for c in class_names], model.output_shape[-1]
    require(len(set(names)) == len(names) == n_out and all(c and "\n" not in c for c in names),
            "class_names", f"{n_out} distinct, non-empty names, one per output column", names,
            "pass ImageClassifier.classes_")
    return names


def _calibration_paths(representative) -> list[Path]:
    """At most MAX_CALIBRATION_IMAGES readable images, evenly spaced; the others named in warnings."""
    from .data import check_images, list_images

    if isinstance(representative, (str, Path)):
        representative = list_images(representative)
    paths = list(representative or [])
    if len(paths) > MAX_CALIBRATION_IMAGES:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths), MAX_CALIBRATION_IMAGES,
                                                    endpoint=False)]
    paths, skipped = check_images(paths)
    for item in skipped:
        warnings.warn(f"int8 calibration: skipped {item.path}: {item.reason}", stacklevel=3)
    require(paths, "representative", "image files to calibrate int8 quantization with (a few "
            "hundred training images)", f"none readable, e.g. {skipped[0].path}: "
            f"{skipped[0].reason}" if skipped else "no images",
            "pass representative=FOLDER or a list of paths (CLI: --representative DIR), "
            "or export float16 instead")
    return paths


@contextmanager
def _quiet_tensorflow():
    """Hide TF's INFO lines (its logger and fd 2) meanwhile; yield the live stderr for a bar."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        with filtered_native_stderr(EXPORT_NOISE) as stderr, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converter warns about its own internals
            yield stderr
    finally:
        logger.setLevel(level)


def _write_savedmodel(model, size: int, path: Path) -> None:
    """SavedModel with a named input and output (Keras' default output name is ``output_0``)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also exported as "serving_default" (TF Serving's default).
    archive.add_endpoint("serve", lambda image: {OUTPUT_NAME: model(image, training=False)},
                         input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32,
                                                        name=INPUT_NAME)])
    with _quiet_tensorflow():
        archive.write_out(str(path), verbose=False)


def _convert_tflite(savedmodel: Path, quantize, calibration, size: int, verbose: int) -> bytes:
    import tensorflow as tf
    from tqdm import tqdm

    from .data import read_image

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel),
                                                         signature_keys=[SIGNATURE])
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with _quiet_tensorflow() as stderr:
        if quantize == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

            def representative_dataset():
                for path in tqdm(calibration, desc="calibrating int8", unit="img", file=stderr,
                                 disable=not verbose):
                    yield [read_image(path, size).astype(np.float32)[None]]

            converter.representative_dataset = representative_dataset
        return converter.convert()


def _read_metadata(directory: Path) -> dict | None:
    """The folder's ``export.json`` when it is vitl's (has an ``artifacts`` dict), else None."""
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ours = isinstance(metadata, dict) and isinstance(metadata.get("artifacts"), dict)
    return metadata if ours else None


def _digest(path: Path) -> str | None:
    """sha256 over a file, or over a folder's file names and bytes; None when unreadable."""
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        text = "".join(f"{p.relative_to(path).as_posix()}\0{sha256_file(p)}\n" for p in files)
    except OSError:  # also a planted FIFO: sha256_file does not read it
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _written_by_vitl(directory: Path, metadata: dict | None) -> dict:
    """The artifacts ``export.json`` lists that are still, byte for byte, what vitl wrote."""
    listed = metadata["artifacts"] if metadata else {}
    return {name: info for name, info in listed.items()
            if name in ARTIFACTS and isinstance(info, dict) and (directory / name).exists()
            and info.get("sha256") is not None and info["sha256"] == _digest(directory / name)}


def _same_model_artifacts(directory: Path, fingerprint: str, class_names) -> dict:
    """The folder's artifacts of this model; those of another model are deleted (with a warning)."""
    old = _read_metadata(directory)
    kept = {}
    for name, info in _written_by_vitl(directory, old).items():  # others are left alone
        path = directory / name
        if old.get("labels") == class_names and info.get("model_fingerprint") == fingerprint:
            kept[name] = info
        else:
            warnings.warn(f"removing {path}: it holds another model's export", stacklevel=3)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    return kept


__all__ = ["FORMATS", "LABELS_FILE", "QUANTIZATIONS", "TOLERANCES", "export_model",
           "model_fingerprint", "read_labels"]
