"""Train a classifier on a folder with one sub-folder per class.

Featurize DATA_DIR once (cached), train the head with early stopping on a validation part,
evaluate, and write MODEL_DIR/model.keras, labels.txt and metrics.json.

The options are ImageClassifier's parameters, HeadConfig's fields (on top of --preset) and
FineTuneConfig's (--fine-tune-*), in kebab-case. Splits: all of DATA_DIR trains except a
stratified validation hold-out (--validation-fraction), or your own --validation / --test
folders, or DATA_DIR's own train/, validation/ (or val/), test/ folders; --split tutorial
(ML.NET's 70/27/3) or --split 70/15/15 on request.

Example:
    ``vitl demo`` shares these steps; :func:`make_classifier` is the one conversion from
    options to the API:

    >>> from vitl.cli import build_parser
    >>> args = build_parser().parse_args(["train", "d", "--out", "m", "--preset", "mlnet",
    ...                                   "--epochs", "7", "--fine-tune-blocks", "2"])
    >>> clf = make_classifier(args, "mobilenetv2")
    >>> clf.head.optimizer, clf.head.epochs, clf.fine_tune.blocks, clf.cache
    ('sgd', 7, 2, 'default')
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from .. import __version__
from .._errors import problem
from .._files import atomic_folder, file_kind
from ..export import LABELS_FILE
from . import CLIError, common
from .common import Choices, bounded, load_images

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
#: What a model folder may hold besides junk names: vitl writes all of these
#: (``export/`` is ``vitl export``'s default). A folder holding anything else is
#: not replaced by a model: it is someone's folder, not a model folder.
MODEL_DIR_NAMES = frozenset({MODEL_FILE, LABELS_FILE, METRICS_FILE, "export"})
#: Who names a part's folder (:data:`vitl.data.SPLIT_FOLDERS` names those of a split DATA_DIR).
PART_OPTIONS = {"train": "DATA_DIR", "validation": "--validation", "test": "--test"}
#: A part with fewer images than this gets a line on what one image is worth.
SMALL_PART = 30
#: What a ``--split`` name means, printed above the split table (``vitl demo`` teaches it).
SPLIT_TITLES = {"tutorial": "ML.NET tutorial: 70% train, the rest 90/10 into validation/test"}
#: HeadConfig's fields as options (``--batch-size`` for ``batch_size``): their type or
#: choices. Listed here rather than read from the dataclass because vitl.training imports
#: TensorFlow and building the parser must not. The upper bounds keep a typo from
#: allocating for minutes and then failing.
HEAD_OPTIONS = {
    "epochs": bounded(int, 1, 100_000),
    "batch_size": bounded(int, 1, 4096),
    "learning_rate": bounded(float, 0, 10, low_open=True),
    **{name: Choices("vitl.training", values) for name, values in (
        ("lr_schedule", "LR_SCHEDULES"), ("optimizer", "OPTIMIZERS"), ("monitor", "MONITORS"))},
    **dict.fromkeys(("lr_decay", "decay_every_epochs", "min_delta", "dropout", "l2"), float),
    **dict.fromkeys(("patience", "hidden_units"), int),
    "early_stopping": argparse.BooleanOptionalAction,
    "class_weight": ("balanced",),
}
#: FineTuneConfig's fields as ``--fine-tune-*`` options; fine-tuning is off without blocks.
FINE_TUNE_OPTIONS = {"blocks": bounded(int, 0, 1000), "epochs": bounded(int, 1, 100_000),
                     "learning_rate": bounded(float, 0, 1, low_open=True)}


def register(parser) -> None:
    """Add ``vitl train``'s arguments to its parser.

    Args:
        parser: the ``train`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class "
                        "(or with train/, validation/ or val/, test/ folders, used as given)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write into")
    add_training_options(parser, verbose=1)
    parser.add_argument("--validation-fraction", type=bounded(float, 0, 0.5, low_open=True),
                        default=0.1, metavar="F",
                        help="share of DATA_DIR held out for validation (default 0.1)")
    parser.add_argument("--validation", metavar="DIR", help="your own validation folder")
    parser.add_argument("--test", metavar="DIR", help="your own test folder, evaluated once")
    common.add_split_option(parser, default=None)


def add_training_options(parser, verbose: int) -> None:
    """Add the options ``train`` and ``demo`` share: ImageClassifier's parameters.

    One option per field of :data:`HEAD_OPTIONS` and :data:`FINE_TUNE_OPTIONS`.

    Args:
        parser: the sub-command's parser.
        verbose: the ``--verbose`` default (demo shows the epoch log: 2).

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_training_options(parser, verbose=2)
        >>> args = parser.parse_args(["--preset", "mlnet", "--no-early-stopping"])
        >>> args.preset, args.early_stopping, args.epochs, args.fine_tune_blocks, args.cache
        ('mlnet', False, None, None, 'default')
    """
    common.add_backbone_options(parser)
    parser.add_argument("--preset", choices=("default", "mlnet"), default="default",
                        help="head settings to start from: HeadConfig() or HeadConfig.mlnet()")
    parser.add_argument("--augment", type=bounded(int, 0, 100), default=0, metavar="K",
                        help="K cached augmented views per training image (default 0)")
    for title, prefix, table in (
            ("head: HeadConfig fields (default: the preset's)", "", HEAD_OPTIONS),
            ("fine-tuning: FineTuneConfig fields (off without --fine-tune-blocks)", "fine_tune_",
             FINE_TUNE_OPTIONS)):
        group = parser.add_argument_group(title)
        for name, kind in table.items():
            option = "--" + (prefix + name).replace("_", "-")
            if kind is argparse.BooleanOptionalAction:
                group.add_argument(option, action=kind)
            elif isinstance(kind, tuple | Choices):
                group.add_argument(option, choices=kind, metavar=name.upper(), help="%(choices)s")
            else:
                group.add_argument(option, type=kind)
    common.add_seed_option(parser)
    common.add_cache_options(parser)
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=verbose,
                        help="0 silent, 1 progress bars and summaries, 2 also a line per epoch")


def run(args) -> int:
    """Check everything, split, train, evaluate and save; return 0.

    Args:
        args: the parsed ``vitl train`` arguments.

    Returns:
        The exit code, 0.

    Example:
        Trains a model (tested end to end in ``tests/test_cli_models.py``):

        >>> from vitl.cli import main
        >>> main(["train", "photos", "--out", "model"])  # doctest: +SKIP
        0
    """
    data_dir = common.existing_folder(args.data_dir, "DATA_DIR")
    out, backbone, reason = check_before_work(args, args.out)
    if reason:
        print(reason)
    clf, metrics, _, _ = train_and_evaluate(data_dir, backbone, args)
    save_model_dir(clf, out, metrics)
    # macro accuracy (mean per-class recall) beside accuracy: 9 intact + 1 missed crack is 0.9
    print("\n" + ", ".join(f"{part} accuracy {metrics[part]['accuracy']:.4f} (macro accuracy "
                           f"{metrics[part]['macro_accuracy']:.4f})"
                           for part in ("validation", "test") if metrics[part]))
    print(f"saved {out / MODEL_FILE}, {out / LABELS_FILE}, {out / METRICS_FILE}")
    return 0


def split_layout(data_dir: Path, args) -> dict | None:
    """Return :func:`vitl.data.split_folders` of DATA_DIR when no option contradicts it.

    Args:
        data_dir: the training folder.
        args: the parsed options (``split``, ``validation``, ``test``).

    Returns:
        ``{part: folder or None}``, or None for a folder with one sub-folder per class.

    Raises:
        CLIError: a split option that contradicts another or the folders.

    Example:
        >>> import tempfile
        >>> args = argparse.Namespace(split=None, validation=None, test=None)
        >>> split_layout(Path(tempfile.mkdtemp()), args) is None
        True
    """
    from ..data import split_folders

    options = [f"--{name}" for name in ("split", "validation", "test")
               if getattr(args, name) is not None]
    if args.split is not None and len(options) > 1:
        raise CLIError(problem("--split", "either --split or your own --validation/--test "
                               "folders, not both", " and ".join(options),
                               "drop --split to use your own folders"))
    layout = split_folders(data_dir)
    clash = [opt for opt in options if layout and (opt == "--split" or layout[opt[2:]])]
    if clash:
        raise CLIError(problem(clash[0], "no split option for a DATA_DIR already split into "
                               "train/ validation/ test/ folders", args.split or clash[0],
                               f"drop {clash[0]}, or pass a folder with one sub-folder per class"))
    return layout


def make_split(data_dir: Path, args):
    """Build the train / validation / test parts and a record of how (for metrics.json).

    Without a validation part, ``--validation-fraction`` of train is held out, stratified
    (as ``ImageClassifier.fit(train)`` does, here so that the part can be shown and
    evaluated).

    Args:
        data_dir: the training folder (:func:`split_layout` reads how it is laid out).
        args: the parsed options (``split``, ``seed``, ``validation``, ``test``,
            ``validation_fraction``).

    Returns:
        ``(Split, record dict)``.

    Example:
        Tested in ``tests/test_cli_splits.py``:

        >>> make_split(Path("photos"), args)  # doctest: +SKIP
    """
    from ..data import Split, split

    layout = split_layout(data_dir, args)
    folders = layout or {"train": data_dir, "validation": args.validation, "test": args.test}
    sources = {part: str(folder) if folder else None for part, folder in folders.items()}
    if args.split is not None:
        parts = split(load_images(data_dir, verbose=args.verbose),
                      *common.split_fractions(args.split), seed=args.seed)
        kind, sources = args.split, dict.fromkeys(folders, str(data_dir))
    elif layout:
        parts, kind = load_images(data_dir, parts=True, verbose=args.verbose), "folders"
    else:
        train, validation, test = (load_images(folders[part], PART_OPTIONS[part],
                                               verbose=args.verbose)
                                   if folders[part] else None for part in folders)
        parts = Split(train, validation or train.subset([]), test or train.subset([]))
        kind = "given folders" if validation is not None else "all for training"
    for part in ("validation", "test"):  # the parts are compared class by class from here on
        names = getattr(parts, part).class_names
        if names != parts.train.class_names:
            raise CLIError(problem(PART_OPTIONS[part] if not layout else f"{part} folder",
                                   f"the class folders of {folders['train']} ("
                                   f"{', '.join(parts.train.class_names)})",
                                   f"{folders[part]} with {', '.join(names)}",
                                   f"name its class folders like those of {folders['train']}"))
    fraction = None
    if args.split is None and folders["validation"] is None:
        fraction = args.validation_fraction
        train, validation, _ = split(parts.train, 1 - fraction, fraction, 0.0, seed=args.seed)
        parts = parts._replace(train=train, validation=validation)
        sources["validation"] = f"{fraction:g} of train, held out (stratified)"
        kind += f", validation {fraction:g} held out"
    record = {"kind": kind, "seed": args.seed, "validation_fraction": fraction, "sources": sources,
              "counts": {name: part.counts() for name, part in parts._asdict().items()}}
    return parts, record


def noise_lines(parts) -> list[str]:
    """One line per small validation / test part: what one image is worth there; one per
    class such a part lacks.

    Args:
        parts: a :class:`~vitl.data.Split`.

    Returns:
        The lines (none for parts of :data:`SMALL_PART` images or more holding every class,
        or empty ones).

    Example:
        >>> from collections import namedtuple
        >>> Parts = namedtuple("Parts", "validation test")
        >>> noise_lines(Parts(range(50), range(4)))[0][:40]
        'note: the test part has 4 images, so one'
    """
    sizes = {name: len(getattr(parts, name)) for name in ("validation", "test")}
    lines = [f"note: the {name} part has {n} images, so one image moves its accuracy by "
             f"{100 / n:.1f} points; read its accuracy as a rough guide"
             for name, n in sizes.items() if 0 < n < SMALL_PART]
    for name, n in sizes.items():  # e.g. a class of 2 photos leaves the test part none
        per_class = getattr(getattr(parts, name), "counts", dict)() if n else {}
        lines += [f"note: the {name} part has no '{label}' image, so its scores cannot show "
                  f"how well '{label}' is found" for label, count in per_class.items() if not count]
    return lines


def given(args, table: dict, prefix: str = "") -> dict:
    """The options of ``table`` that were given, as keyword arguments of its config class.

    Args:
        args: the parsed options.
        table: :data:`HEAD_OPTIONS` or :data:`FINE_TUNE_OPTIONS`.
        prefix: the options' prefix, e.g. ``"fine_tune_"``.

    Returns:
        ``{field: value}`` without the options left out (None).

    Example:
        >>> given(argparse.Namespace(fine_tune_blocks=2, fine_tune_epochs=None,
        ...                          fine_tune_learning_rate=None), FINE_TUNE_OPTIONS, "fine_tune_")
        {'blocks': 2}
    """
    values = {name: getattr(args, prefix + name) for name in table}
    return {name: value for name, value in values.items() if value is not None}


def head_config(args):
    """The :class:`~vitl.training.HeadConfig` of ``--preset`` with the head options given on top.

    Args:
        args: the parsed options.

    Returns:
        The HeadConfig.

    Example:
        >>> args = argparse.Namespace(preset="mlnet", **dict.fromkeys(HEAD_OPTIONS))
        >>> args.epochs = 7
        >>> head_config(args).epochs, head_config(args).optimizer
        (7, 'sgd')
    """
    from ..training import HeadConfig

    config = HeadConfig.mlnet() if args.preset == "mlnet" else HeadConfig()
    return replace(config, **given(args, HEAD_OPTIONS))


def make_classifier(args, backbone: str):
    """The one conversion from parsed options to an unfitted ImageClassifier.

    Args:
        args: the parsed ``train`` / ``demo`` options.
        backbone: the resolved backbone name.

    Returns:
        ``ImageClassifier(backbone, input_size=..., precision=..., head=HeadConfig(...),
        augment=..., fine_tune=FineTuneConfig(...) or None, validation_fraction=..., seed=...,
        cache=..., verbose=...)`` (see the module's example).
    """
    from ..classifier import ImageClassifier
    from ..finetune import FineTuneConfig

    tune = given(args, FINE_TUNE_OPTIONS, "fine_tune_")
    return ImageClassifier(backbone, input_size=args.input_size, precision=args.precision,
                           head=head_config(args), augment=args.augment,
                           fine_tune=FineTuneConfig(**tune) if tune.get("blocks") else None,
                           validation_fraction=args.validation_fraction, seed=args.seed,
                           cache=args.cache, verbose=args.verbose)


def check_before_work(args, out) -> tuple[Path, str, str | None]:
    """Every check of ``train`` / ``demo`` that needs no data, so bad input costs no time.

    Args:
        args: the parsed options.
        out: the model folder to write.

    Returns:
        ``(out as a Path, backbone name, why it was chosen or None)``.

    Raises:
        CLIError, ValueError, WeightsUnavailableError: one line each (also for
            ``--fine-tune-blocks`` beyond the backbone's blocks).

    Example:
        >>> from vitl.cli import build_parser
        >>> args = build_parser().parse_args(["train", "d", "--out", "m", "--no-cache",
        ...                                   "--backbone", "mobilenetv2-tv"])
        >>> check_before_work(args, Path("/tmp/new-model"))
        (PosixPath('/tmp/new-model'), 'mobilenetv2-tv', None)
    """
    from ..backbones import get_backbone

    head_config(args).validate()
    out = check_model_out(out)
    common.check_cache_option(args.cache)
    backbone, reason = common.choose_backbone(args.backbone)
    available = len(get_backbone(backbone).block_prefixes)
    if (args.fine_tune_blocks or 0) > available:
        raise CLIError(problem("--fine-tune-blocks", f"at most {available} (the blocks of "
                               f"{backbone})", args.fine_tune_blocks,
                               f"pass --fine-tune-blocks between 1 and {available}, or 0"))
    return out, backbone, reason


def check_model_out(out) -> Path:
    """Check ``--out MODEL_DIR`` before any work: writable, and new, empty or a model folder.

    Args:
        out: the ``--out`` path.

    Returns:
        The folder as a Path.

    Example:
        >>> import tempfile
        >>> check_model_out(Path(tempfile.mkdtemp()) / "model").name
        'model'
    """
    out = common.check_writable(out, "--out")
    if not out.exists():
        return out
    # The folder is replaced as a whole, so its parent must be writable too.
    common.check_writable(out.absolute().parent, "--out")
    model = out / MODEL_FILE
    if model.exists() and not model.is_file():
        raise CLIError(problem("--out", f"{MODEL_FILE} to be a file", f"{model} is "
                               f"{file_kind(model)}", "remove or rename it, or pass another --out"))
    others = sorted(p.name for p in out.iterdir()
                    if p.name not in MODEL_DIR_NAMES and not p.name.startswith("."))
    if others:
        raise CLIError(problem("--out", "a new or empty folder, or one written by vitl train "
                               "(it is replaced as a whole)", f"{out} holding "
                               f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}",
                               f"pass a new folder, e.g. --out {out / 'model'}"))
    return out


def train_and_evaluate(data_dir: Path, backbone: str, args):
    """Split, fit with early stopping on the validation part, evaluate it (and the test part
    when not empty); print the split and what happens.

    Args:
        data_dir: the training folder.
        backbone: the resolved backbone name.
        args: the parsed ``train`` / ``demo`` options.

    Returns:
        ``(classifier, metrics dict, Split, {"validation": report, "test": report or None})``.

    Example:
        Trains a model (tested in ``tests/test_cli_models.py``):

        >>> clf, metrics, parts, reports = train_and_evaluate(
        ...     Path("photos"), "mobilenetv2-tv", args)  # doctest: +SKIP
    """
    parts, record = make_split(data_dir, args)
    print(f"split ({SPLIT_TITLES.get(record['kind'], record['kind'])}):\n{parts}\n")
    for line in noise_lines(parts) + [f"warning: {note}" for note in parts.train.problems()]:
        print(line)
    if not len(parts.validation):
        raise CLIError(problem("validation part", "at least one image", "none",
                               "add images (at least 3 per class) or raise "
                               "--validation-fraction"))
    clf = make_classifier(args, backbone)
    print(f"bottleneck phase: {len(parts.train) + len(parts.validation)} images through "
          f"{backbone}, then the training phase ({args.preset} head settings)", flush=True)
    start = time.perf_counter()
    clf.fit(parts.train, parts.validation)
    fit_seconds = time.perf_counter() - start
    history, info = clf.history_, clf.fit_info_
    print(repr(history).splitlines()[0])
    reports = {name: clf.evaluate(part) if len(part) else None
               for name, part in (("validation", parts.validation), ("test", parts.test))}
    training_seconds = history.seconds or 0.0
    metrics = {
        "vitl_version": __version__,
        "data_source": str(data_dir),
        "split": record,
        "preset": args.preset,
        **{key: info[key] for key in ("backbone", "input_size", "precision", "weights", "head",
                                      "augment", "fine_tune")},
        "epochs_requested": clf.head.epochs,
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_epoch is not None,
        "seconds": {"fit": round(fit_seconds, 3),
                    "bottleneck": round(fit_seconds - training_seconds, 3),
                    "training": round(training_seconds, 3)},
        **{name: report.to_dict() if report else None for name, report in reports.items()},
    }
    return clf, metrics, parts, reports


def save_model_dir(clf, out: Path, metrics: dict) -> None:
    """Write ``model.keras``, ``labels.txt`` and ``metrics.json`` as a new ``out`` folder.

    They are written into a sibling temp folder that then replaces ``out`` as a
    whole (:func:`vitl._files.atomic_folder`): a crash leaves the old model
    folder, and of two runs saving at once the last one wins, whole.

    Args:
        clf: a fitted classifier.
        out: the model folder.
        metrics: what goes into metrics.json.

    Returns:
        None.

    Example:
        Tested in ``tests/test_faults.py`` (two saves at once, kill -9 while saving):

        >>> save_model_dir(clf, Path("model"), {"note": "example"})  # doctest: +SKIP
    """
    with atomic_folder(out) as tmp:
        clf.save(tmp / MODEL_FILE)
        (tmp / LABELS_FILE).write_text("".join(f"{c}\n" for c in clf.classes_), encoding="utf-8")
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
