"""``vitl train DATA_DIR --out MODEL_DIR``: split, train, evaluate and save a classifier.

``MODEL_DIR`` receives ``model.keras`` (backbone, head, labels and
preprocessing in one file), ``labels.txt`` and ``metrics.json``. The helpers
here (:func:`choose_backbone`, :func:`train_on_split`, :func:`save_model_dir`)
are shared with ``vitl demo``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

from .. import __version__
from .._errors import problem
from .._files import atomic_folder, atomic_path
from . import CLIError

AUTO = "auto"
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
#: What a model folder may hold besides junk names: vitl writes all of these
#: (``export/`` is ``vitl export``'s default). A folder holding anything else is
#: not replaced by a model: it is someone's folder, not a model folder.
MODEL_DIR_NAMES = frozenset({MODEL_FILE, LABELS_FILE, METRICS_FILE, "export"})

#: Bounds of the numeric options (inclusive), checked before any work starts.
#: The upper ones keep a typo from allocating for minutes and then failing:
#: a 1024 px input is 21x the pixels of 224 px; a head batch of 4096 feature
#: vectors already covers most data sets in one step.
BOUNDS = {"--epochs": (1, 100_000), "--batch-size": (1, 4096), "--log-every": (1, 100_000),
          "--input-size": (32, 1024), "--augment": (0, 100), "--fine-tune": (0, 1000),
          "--fine-tune-epochs": (1, 100_000), "--seed": (0, 2**32 - 1)}


def register(subparsers) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train", help="train a classifier on a folder with one sub-folder per class",
        description="Split DATA_DIR (one sub-folder per class), featurize every image once "
                    "with a frozen ImageNet backbone (cached), train the head with early "
                    "stopping on the validation part, evaluate, and write MODEL_DIR/model.keras, "
                    "labels.txt and metrics.json.")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR",
                        help="folder to write the model into (created)")
    parser.add_argument("--backbone", default="resnet101v2",
                        help="backbone name (`vitl weights list`), or 'auto': resnet101v2 when "
                             "its weights can be had, else mobilenetv2-tv (default resnet101v2, "
                             "the ML.NET tutorial's)")
    add_training_options(parser)
    parser.add_argument("--split", default="tutorial", metavar="{tutorial,default}",
                        help="'tutorial': ML.NET's 70%% train / 27%% validation / 3%% test "
                             "(default); 'default': 70/15/15")
    parser.set_defaults(run=run)


def add_training_options(parser) -> None:
    """Options shared by ``train`` and ``demo``."""
    parser.add_argument("--epochs", type=int, default=200,
                        help="maximum epochs; early stopping usually ends sooner (default 200)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="draw another (still reproducible) split and seed the head's "
                             "initialisation and shuffling with it (default: the plain hashed "
                             "split that `vitl data` shows, head seed 0); 0..2**32-1")
    parser.add_argument("--batch-size", type=int, default=10,
                        help="head batch size, 1..4096 (default 10)")
    parser.add_argument("--learning-rate", type=float, default=0.01,
                        help="initial learning rate (default 0.01, decayed 0.94 every 2 epochs)")
    parser.add_argument("--cache", default="default", metavar="DIR",
                        help="feature cache folder, 'default' (VITL_CACHE or VITL_HOME/cache) "
                             "or 'none'")
    parser.add_argument("--log-every", type=int, default=10, metavar="N",
                        help="print the ML.NET-style epoch log every N epochs (default 10)")
    parser.add_argument("--augment", type=int, default=0, metavar="K",
                        help="K cached augmented views per training image (default 0: none)")
    parser.add_argument("--fine-tune", type=int, default=0, metavar="N",
                        help="after the head, unfreeze the top N backbone blocks and train them "
                             "on the images (default 0: frozen backbone)")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, metavar="E",
                        help="epochs of fine-tuning (default 10; early stopping may end sooner)")
    parser.add_argument("--input-size", type=int, default=None, metavar="PIXELS",
                        help="advanced: square input side, 32..1024 (default: the backbone's "
                             "own); small sizes make fast experiments and tests")


def run(args: argparse.Namespace) -> int:
    from ..data import load_image_folder, split, tutorial_split

    if args.split not in ("tutorial", "default"):
        raise CLIError(problem("--split", "'tutorial' or 'default'", args.split,
                               "pass --split tutorial (ML.NET's 70/27/3) or --split default"))
    check_training_options(args)
    data_dir = existing_folder(args.data_dir, "DATA_DIR")
    out = check_model_out(args.out)
    check_cache_option(args.cache)
    backbone, reason = choose_backbone(args.backbone)
    check_fine_tune(args.fine_tune, backbone)
    if reason:
        print(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are summarised on the next line
        images = load_image_folder(data_dir)
    if len(images.report):
        print(f"skipped {len(images.report)} unreadable files (`vitl data {data_dir}` lists them)")
    parts = (tutorial_split(images, seed=args.seed) if args.split == "tutorial"
             else split(images, seed=args.seed))
    print(f"split ({args.split}, seed={args.seed}):\n{parts}\n")
    clf, metrics, _ = train_on_split(parts, backbone, args, data_source=str(data_dir))
    save_model_dir(clf, out, metrics)
    print(f"\nvalidation accuracy {metrics['validation']['accuracy']:.4f}"
          + (f", test accuracy {metrics['test']['accuracy']:.4f}" if metrics.get("test") else ""))
    print(f"saved {out / MODEL_FILE}, {out / LABELS_FILE}, {out / METRICS_FILE}")
    return 0


# ---------------------------------------------------------------- shared with demo
def check_training_options(args) -> None:
    """Reject bad numbers before any data is read (one-line errors); see :data:`BOUNDS`."""
    for name, (low, high) in BOUNDS.items():
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None and not low <= value <= high:
            raise CLIError(problem(name, f"an integer from {low} to {high}", value,
                                   f"pass {name} between {low} and {high}"))
    if not (math.isfinite(args.learning_rate) and 0 < args.learning_rate <= 10):
        raise CLIError(problem("--learning-rate", "a number > 0 and <= 10", args.learning_rate,
                               "pass --learning-rate 0.01"))


def check_fine_tune(blocks: int, backbone: str) -> None:
    """Refuse ``--fine-tune N`` beyond the backbone's blocks before any data is read."""
    from ..backbones import get_backbone

    available = len(get_backbone(backbone).block_prefixes)
    if blocks and blocks > available:
        raise CLIError(problem("--fine-tune", f"at most {available} (the blocks of {backbone})",
                               blocks, f"pass --fine-tune between 1 and {available}, or 0"))


def _writable_parent(path: Path) -> Path:
    """The nearest existing folder above ``path`` (where it would be created)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def _cannot_write(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (tried for real: permissions, read-only
    mounts and full disks all show), or None."""
    try:
        fd, name = tempfile.mkstemp(prefix=".vitl-write-check-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(name)
    return None


def check_writable(path, name: str, kind: str = "folder") -> Path:
    """Refuse before any work an output ``path`` that could not be written; return it.

    ``kind`` is ``"folder"`` (created when missing) or ``"file"`` (replaced).
    """
    path = Path(path).expanduser()
    if kind == "folder" and path.exists() and not path.is_dir():
        raise CLIError(problem(name, "a folder (created when missing)", f"the file {path}",
                               "pass a folder path, not a file"))
    if kind == "file" and path.is_dir():
        raise CLIError(problem(name, "a file path", f"the folder {path}",
                               f"pass a file name, e.g. {path / 'predictions.csv'}"))
    parent = _writable_parent(path)
    if not parent.is_dir():
        raise CLIError(problem(name, "a path below a folder", f"{path} ({parent} is a file)",
                               "check the path"))
    target = path if path.is_dir() else parent
    why = _cannot_write(target)
    if why:
        raise CLIError(problem(name, "a place you can write to",
                               f"{path} (cannot write in {target}: {why})",
                               "choose another path, or fix the folder's permissions"))
    return path


def check_model_out(out) -> Path:
    """Check ``--out MODEL_DIR`` before any work: writable, and new, empty or a model folder."""
    out = check_writable(out, "--out")
    if out.exists():
        # The folder is replaced as a whole, so its parent must be writable too.
        why = _cannot_write(out.absolute().parent)
        if why:
            raise CLIError(problem("--out", "a folder whose parent you can write to",
                                   f"{out} (cannot write in {out.absolute().parent}: {why})",
                                   "choose another path"))
        model = out / MODEL_FILE
        if model.exists() and not model.is_file():
            raise CLIError(problem("--out", f"{MODEL_FILE} to be a file", f"{model} is a folder",
                                   "remove or rename that folder, or pass another --out"))
        others = sorted(p.name for p in out.iterdir()
                        if p.name not in MODEL_DIR_NAMES and not p.name.startswith("."))
        if others:
            raise CLIError(problem("--out", "a new or empty folder, or one written by vitl "
                                   "train (it is replaced as a whole)",
                                   f"{out} holding {', '.join(others[:3])}"
                                   + (", ..." if len(others) > 3 else ""),
                                   "pass a new folder, e.g. --out " + str(out / "model")))
    return out


def check_cache_option(cache) -> None:
    """Open (creating) the ``--cache`` folder's database now: read-only folders fail up front."""
    if str(cache).lower() == "none":
        return
    from .. import _paths
    from ..features.cache import FeatureCache

    folder = _paths.default_cache_dir() if cache == "default" else Path(cache).expanduser()
    FeatureCache(folder).close()


def existing_folder(path, name: str) -> Path:
    """Return ``path`` as a Path; raise :class:`CLIError` when it is not a folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "a file" if folder.exists() else "a path that does not exist"
        raise CLIError(problem(name, "a folder with one sub-folder per class",
                               f"{folder} ({what})", "check the path"))
    return folder


def choose_backbone(name: str) -> tuple[str, str | None]:
    """Resolve ``--backbone``; return ``(backbone name, one line saying why)`` for ``auto``.

    ``auto`` is :func:`vitl.backbones.choose_backbone`: ``$VITL_BACKBONE`` when
    set, else resnet101v2 when its weights can be had, else mobilenetv2-tv.

    Raises:
        ValueError: unknown backbone name.
        WeightsUnavailableError: a named backbone's weights cannot be had (its
            message lists the fixes).
    """
    from ..backbones import choose_backbone as choose
    from ..backbones import get_backbone
    from ..backbones.weights import resolve_weights

    if name != AUTO:
        resolve_weights(get_backbone(name))  # fail here, before any data is read
        return name, None
    choice = choose()
    return choice.name, choice.reason


def train_on_split(parts, backbone: str, args, data_source: str):
    """Fit on ``parts.train`` with early stopping on ``parts.validation``; evaluate it (and
    ``parts.test`` when not empty). Return ``(classifier, metrics dict, {part: report})``."""
    import keras

    from ..classifier import ImageClassifier

    check_training_options(args)
    if not len(parts.validation):
        raise CLIError(problem("validation part", "at least one image", "none",
                               "add images (at least 3 per class) or use --split default"))
    cache = None if str(args.cache).lower() == "none" else args.cache
    n_train = len(parts.train)
    header = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: print(
        f"training phase: softmax head on {n_train} feature vectors, up to {args.epochs} "
        f"epochs, batch {args.batch_size}, early stopping on validation accuracy "
        f"(log every {args.log_every} epochs)", flush=True))
    clf = ImageClassifier(backbone, input_size=args.input_size, epochs=args.epochs,
                          batch_size=args.batch_size, learning_rate=args.learning_rate,
                          seed=0 if args.seed is None else args.seed, cache=cache,
                          augment=args.augment, fine_tune_blocks=args.fine_tune,
                          fine_tune_epochs=args.fine_tune_epochs,
                          verbose=args.log_every, callbacks=[header])
    print(f"bottleneck phase: {n_train + len(parts.validation)} images through {backbone} "
          f"(frozen; features {'cached' if cache else 'not cached'})", flush=True)
    start = time.perf_counter()
    clf.fit(parts.train, parts.validation)
    fit_seconds = time.perf_counter() - start
    history = clf.history_
    print(repr(history).splitlines()[0])
    reports = {"validation": clf.evaluate(parts.validation)}
    if len(parts.test):
        reports["test"] = clf.evaluate(parts.test)
    train_seconds = history.seconds or 0.0
    info = clf.fit_info_
    metrics = {
        "vitl_version": __version__,
        "backbone": info["backbone"],
        "input_size": info["input_size"],
        "precision": info["precision"],
        "weights": info["weights"],
        "data_source": data_source,
        "split": {"kind": getattr(args, "split", "tutorial"), "seed": args.seed,
                  "counts": {name: part.counts() for name, part in parts._asdict().items()}},
        "epochs_requested": args.epochs,
        "augment": info["augment"],
        "fine_tune": info["fine_tune"],
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_epoch is not None,
        "seconds": {"fit": round(fit_seconds, 3),
                    "bottleneck": round(fit_seconds - train_seconds, 3),
                    "training": round(train_seconds, 3)},
        "validation": reports["validation"].to_dict(),
        "test": reports["test"].to_dict() if "test" in reports else None,
    }
    return clf, metrics, reports


def save_model_dir(clf, out: Path, metrics: dict) -> None:
    """Write ``model.keras``, ``labels.txt`` and ``metrics.json`` as a new ``out`` folder.

    They are written into a sibling temp folder that then replaces ``out`` as a
    whole (:func:`vitl._files.atomic_folder`): a crash leaves the old model
    folder, and of two runs saving at once the last one wins, whole.
    """
    with atomic_folder(out) as tmp:
        clf.save(tmp / MODEL_FILE)
        _write_text(tmp / LABELS_FILE, "".join(f"{c}\n" for c in clf.classes_))
        _write_text(tmp / METRICS_FILE, json.dumps(metrics, indent=1) + "\n")


def load_model_dir(model_dir, cache="default"):
    """Load ``MODEL_DIR/model.keras`` with a one-line error when it is not a model folder."""
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise CLIError(problem("MODEL_DIR", "a folder written by `vitl train`", str(folder),
                               "check the path, or train one: vitl train DATA_DIR --out "
                               f"{folder}"))
    if not (folder / MODEL_FILE).is_file():
        raise CLIError(problem("MODEL_DIR", f"a folder holding {MODEL_FILE}",
                               f"{folder} without {MODEL_FILE}",
                               "pass the folder given to `vitl train --out`, or train one there"))
    from ..classifier import ImageClassifier  # imports TensorFlow: after the cheap checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ImageClassifier.load(folder / MODEL_FILE, cache=cache, verbose="bar")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
