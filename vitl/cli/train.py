"""``vitl train DATA_DIR --out MODEL_DIR``: split, train, evaluate and save a classifier.

Splits that respect the user's data: all of DATA_DIR trains except a stratified
validation hold-out (``--validation-fraction``), or the user's own
``--validation`` / ``--test`` folders, or DATA_DIR's own ``train/``,
``validation/`` (``val/``), ``test/`` folders; ``--split tutorial`` (ML.NET's
70/27/3) or ``--split 70/15/15`` on request.

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
from .featurize import PRECISIONS

AUTO = "auto"
PRESETS = ("default", "mlnet")
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
        description="Featurize every image of DATA_DIR (one sub-folder per class) once with a "
                    "frozen ImageNet backbone (cached), train the head with early stopping on "
                    "a validation part, evaluate, and write MODEL_DIR/model.keras, labels.txt "
                    "and metrics.json. Without a split option all of DATA_DIR trains except a "
                    "stratified validation hold-out (--validation-fraction); DATA_DIR with "
                    "train/, validation/ (or val/) and test/ sub-folders is used as given.")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR",
                        help="folder to write the model into (created)")
    parser.add_argument("--backbone", default="resnet101v2",
                        help="backbone name (`vitl weights list`), or 'auto': resnet101v2 when "
                             "its weights can be had, else mobilenetv2-tv (default resnet101v2, "
                             "the ML.NET tutorial's)")
    add_training_options(parser)
    parser.add_argument("--validation-fraction", type=float, default=0.1, metavar="F",
                        help="share of DATA_DIR held out (stratified) for validation when no "
                             "--validation folder is given (default 0.1)")
    parser.add_argument("--validation", metavar="DIR", default=None,
                        help="your own validation folder (one sub-folder per class)")
    parser.add_argument("--test", metavar="DIR", default=None,
                        help="your own test folder, evaluated once after training")
    parser.add_argument("--split", default=None, metavar="{tutorial,TRAIN/VAL/TEST}",
                        help="split DATA_DIR three ways instead: 'tutorial' = ML.NET's 70/27/3, "
                             "or percentages such as 70/15/15 (stratified, exact per class)")
    parser.set_defaults(run=run)


def add_training_options(parser) -> None:
    """Options shared by ``train`` and ``demo``."""
    parser.add_argument("--preset", choices=PRESETS, default="default",
                        help="head settings: 'default' (chosen by measurement: Adam 1e-3, "
                             "batch 32, early stopping on validation loss) or 'mlnet' (ML.NET's: "
                             "SGD 0.01 decayed 0.94 every 2 epochs, batch 10, early stopping on "
                             "validation accuracy)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs; early stopping usually ends sooner (default 200)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="draw another (still reproducible) split and seed the head's "
                             "initialisation and shuffling with it (default: the plain hashed "
                             "split that `vitl data` shows, head seed 0); 0..2**32-1")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="head batch size, 1..4096 (default: the preset's, 32 or ML.NET's "
                             "10)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="initial learning rate (default: the preset's, 0.001 or ML.NET's "
                             "0.01)")
    parser.add_argument("--cache", default="default", metavar="DIR",
                        help="feature cache folder, 'default' (VITL_CACHE or VITL_HOME/cache) "
                             "or 'none'")
    parser.add_argument("--log-every", type=int, default=10, metavar="N",
                        help="print the ML.NET-style epoch log every N epochs (default 10)")
    parser.add_argument("--augment", type=int, default=0, metavar="K",
                        help="K cached augmented views per training image (default 0: none)")
    parser.add_argument("--fine-tune", type=int, default=0, metavar="N",
                        help="after the head, unfreeze the top N backbone blocks and train them "
                             "on the images; kept only if validation improves (default 0: frozen "
                             "backbone; 8 helped on MobileNetV2, see benchmarks/README.md)")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, metavar="E",
                        help="epochs of fine-tuning (default 10; early stopping may end sooner)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="backbone precision (default float32); use the one `vitl featurize "
                             "--precision` filled the cache with, or 'auto' (timed probe)")
    parser.add_argument("--input-size", type=int, default=None, metavar="PIXELS",
                        help="advanced: square input side, 32..1024 (default: the backbone's "
                             "own); small sizes make fast experiments and tests")


def run(args: argparse.Namespace) -> int:
    check_training_options(args)
    data_dir = existing_folder(args.data_dir, "DATA_DIR")
    out = check_model_out(args.out)
    check_cache_option(args.cache)
    layout = split_layout(data_dir, args)
    backbone, reason = choose_backbone(args.backbone)
    check_fine_tune(args.fine_tune, backbone)
    if reason:
        print(reason)
    parts, record = make_split(data_dir, layout, args)
    print(f"split ({record['kind']}):\n{parts}\n")
    for line in noise_lines(parts):
        print(line)
    clf, metrics, _ = train_on_split(parts, backbone, args, data_source=str(data_dir),
                                     split_record=record)
    save_model_dir(clf, out, metrics)
    print(f"\nvalidation accuracy {metrics['validation']['accuracy']:.4f}"
          + (f", test accuracy {metrics['test']['accuracy']:.4f}" if metrics.get("test") else ""))
    print(f"saved {out / MODEL_FILE}, {out / LABELS_FILE}, {out / METRICS_FILE}")
    return 0


#: Sub-folder names of a DATA_DIR that is already split.
PART_FOLDERS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
#: A part with fewer images than this gets a line on what one image is worth.
SMALL_PART = 30


def split_layout(data_dir: Path, args) -> dict | None:
    """Return ``{part: folder}`` when DATA_DIR holds train/ (validation/ or val/, test/) folders.

    Raises:
        CLIError: a split option that contradicts the folders, or a bad ``--split``.
    """
    if args.split is not None:
        split_fractions(args.split)  # reject a bad value before reading any data
        both = "--validation" if args.validation is not None else "--test"
        if args.validation is not None or args.test is not None:
            raise CLIError(problem("--split", f"either --split or {both} DIR, not both",
                                   f"--split {args.split} and {both}",
                                   f"drop --split to use your {both[2:]} folder"))
    names = {p.name: p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    known = {alias for aliases in PART_FOLDERS.values() for alias in aliases}
    if "train" not in names or not set(names) <= known:
        return None
    layout = {part: next((names[a] for a in aliases if a in names), None)
              for part, aliases in PART_FOLDERS.items()}
    given = [opt for opt, value in (("--split", args.split), ("--validation", args.validation),
                                    ("--test", args.test)) if value is not None]
    clash = [opt for opt in given if opt == "--split" or layout[opt[2:]] is not None]
    if clash:
        raise CLIError(problem(clash[0], "no split option for a DATA_DIR already split into "
                               "train/ validation/ test/ folders", args.split or clash[0],
                               f"drop {clash[0]}, or pass a folder with one sub-folder per class"))
    return layout


def split_fractions(text: str) -> tuple[float, float, float]:
    """``--split`` as fractions: 'tutorial' -> ML.NET's (0.70, 0.27, 0.03); '70/15/15' -> (0.7, ...).

    Raises:
        CLIError: neither 'tutorial' nor three numbers summing to 100 with train > 0.
    """
    from ..data import TUTORIAL_FRACTIONS

    if text == "tutorial":
        return TUTORIAL_FRACTIONS
    try:
        numbers = [float(p) for p in text.split("/")]
    except ValueError:
        numbers = []
    if len(numbers) != 3 or min(numbers) < 0 or numbers[0] <= 0 or abs(sum(numbers) - 100) > 1e-6:
        raise CLIError(problem("--split", "'tutorial' or TRAIN/VALIDATION/TEST percentages "
                               "summing to 100, e.g. 70/15/15", text,
                               "pass --split tutorial, --split 70/15/15, or no --split (train on "
                               "everything but a validation hold-out)"))
    return tuple(n / 100 for n in numbers)


def make_split(data_dir: Path, layout: dict | None, args):
    """Build the train / validation / test parts and a record of how (for metrics.json)."""
    from ..data import Split, split

    seed = args.seed
    if layout is not None:
        train = _load(layout["train"])
        validation = _load(layout["validation"]) if layout["validation"] else None
        test = _load(layout["test"]) if layout["test"] else train.subset([])
        kind = "folders"
        sources = {part: str(folder) if folder else None for part, folder in layout.items()}
    elif args.split is not None:
        fractions = split_fractions(args.split)
        parts = split(_load(data_dir), *fractions, seed=seed)
        train, validation, test = parts
        kind = "tutorial" if args.split == "tutorial" else args.split
        sources = dict.fromkeys(PART_FOLDERS, str(data_dir))
    else:
        train = _load(data_dir)
        validation = _load(args.validation, "--validation") if args.validation else None
        test = _load(args.test, "--test") if args.test else train.subset([])
        kind = "given folders" if args.validation else "hold-out"
        sources = {"train": str(data_dir), "validation": args.validation, "test": args.test}
    fraction = None
    if validation is None:
        fraction = args.validation_fraction
        parts = split(train, 1 - fraction, fraction, 0.0, seed=seed)
        train, validation = parts.train, parts.validation
        sources["validation"] = f"{fraction:g} of train, held out (stratified)"
        kind = f"{kind}, validation {fraction:g} held out" if kind != "hold-out" else \
            f"all for training, validation {fraction:g} held out"
    record = {"kind": kind, "seed": seed, "validation_fraction": fraction, "sources": sources}
    parts = Split(train, validation, test)
    record["counts"] = {name: part.counts() for name, part in parts._asdict().items()}
    return parts, record


def noise_lines(parts) -> list[str]:
    """One line per small validation / test part: what one image is worth there."""
    lines = []
    for name in ("validation", "test"):
        n = len(getattr(parts, name))
        if 0 < n < SMALL_PART:
            lines.append(f"note: the {name} part has {n} images, so one image moves its accuracy "
                         f"by {100 / n:.1f} points; read its accuracy as a rough guide")
    return lines


def _load(folder, name="DATA_DIR"):
    from ..data import load_image_folder

    folder = existing_folder(folder, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are summarised on the next line
        images = load_image_folder(folder)
    if len(images.report):
        print(f"skipped {len(images.report)} unreadable files in {folder} "
              f"(`vitl data {folder}` lists them)")
    return images


# ---------------------------------------------------------------- shared with demo
def check_training_options(args) -> None:
    """Reject bad numbers before any data is read (one-line errors); see :data:`BOUNDS`."""
    for name, (low, high) in BOUNDS.items():
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None and not low <= value <= high:
            raise CLIError(problem(name, f"an integer from {low} to {high}", value,
                                   f"pass {name} between {low} and {high}"))
    rate = args.learning_rate
    if rate is not None and not (math.isfinite(rate) and 0 < rate <= 10):
        raise CLIError(problem("--learning-rate", "a number > 0 and <= 10", rate,
                               "pass --learning-rate 0.001"))
    fraction = getattr(args, "validation_fraction", None)
    if fraction is not None and not 0 < fraction <= 0.5:
        raise CLIError(problem("--validation-fraction", "a number in (0, 0.5]", fraction,
                               "pass --validation-fraction 0.1"))


def head_settings(args):
    """The :class:`~vitl.training.HeadConfig` of ``--preset`` with the options given on top."""
    from dataclasses import replace

    from ..training import HeadConfig

    config = HeadConfig.mlnet() if args.preset == "mlnet" else HeadConfig()
    given = {"epochs": args.epochs, "batch_size": args.batch_size,
             "learning_rate": args.learning_rate}
    return replace(config, **{k: v for k, v in given.items() if v is not None})


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


def train_on_split(parts, backbone: str, args, data_source: str, split_record=None):
    """Fit on ``parts.train`` with early stopping on ``parts.validation``; evaluate it (and
    ``parts.test`` when not empty). Return ``(classifier, metrics dict, {part: report})``."""
    from dataclasses import fields

    import keras

    from ..classifier import ImageClassifier

    check_training_options(args)
    if not len(parts.validation):
        raise CLIError(problem("validation part", "at least one image", "none",
                               "add images (at least 3 per class) or raise "
                               "--validation-fraction"))
    cache = None if str(args.cache).lower() == "none" else args.cache
    n_train = len(parts.train)
    config = head_settings(args)
    settable = set(ImageClassifier().get_params()) - {"seed"}
    head = {f.name: getattr(config, f.name) for f in fields(config) if f.name in settable}
    header = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: print(
        f"training phase ({args.preset} settings): softmax head on {n_train} feature vectors, "
        f"{config.optimizer} {config.learning_rate:g}, batch {config.batch_size}, up to "
        f"{config.epochs} epochs, early stopping on {config.monitor.replace('_', ' ')} "
        f"(log every {args.log_every} epochs)", flush=True))
    clf = ImageClassifier(backbone, input_size=args.input_size, precision=args.precision, **head,
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
        "split": split_record or {
            "kind": getattr(args, "split", None) or "tutorial", "seed": args.seed,
            "counts": {name: part.counts() for name, part in parts._asdict().items()}},
        "preset": args.preset,
        "head": info["head"],
        "epochs_requested": config.epochs,
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
