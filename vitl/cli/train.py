"""``vitl train DATA_DIR --out MODEL_DIR``: split, train, evaluate and save a classifier.

Splits that respect the user's data: all of DATA_DIR trains except a stratified
validation hold-out (``--validation-fraction``), or the user's own
``--validation`` / ``--test`` folders, or DATA_DIR's own ``train/``,
``validation/`` (``val/``), ``test/`` folders; ``--split tutorial`` (ML.NET's
70/27/3) or ``--split 70/15/15`` on request.

The options are :class:`~vitl.classifier.ImageClassifier`'s parameters in
kebab-case (:func:`make_classifier` is the one conversion). ``MODEL_DIR``
receives ``model.keras`` (backbone, head, labels and preprocessing in one file),
``labels.txt`` and ``metrics.json``. ``vitl demo`` shares the helpers here.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from .. import __version__
from .._errors import problem
from .._files import atomic_folder
from ..export import LABELS_FILE
from . import CLIError, common
from .common import MODEL_FILE, Choices, integer, load_images, number

METRICS_FILE = "metrics.json"
#: What a model folder may hold besides junk names: vitl writes all of these
#: (``export/`` is ``vitl export``'s default). A folder holding anything else is
#: not replaced by a model: it is someone's folder, not a model folder.
MODEL_DIR_NAMES = frozenset({MODEL_FILE, LABELS_FILE, METRICS_FILE, "export"})
#: Sub-folder names of a DATA_DIR that is already split.
PART_FOLDERS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
#: A part with fewer images than this gets a line on what one image is worth.
SMALL_PART = 30
#: ``HeadConfig`` fields as options (``--batch-size`` for ``batch_size``): their type or
#: choices. The upper bounds keep a typo from allocating for minutes and then failing.
HEAD_OPTIONS = {
    "epochs": integer(1, 100_000),
    "batch_size": integer(1, 4096),
    "learning_rate": number(0, 10),
    "lr_schedule": Choices("vitl.training", "LR_SCHEDULES"),
    "lr_decay": float,
    "decay_every_epochs": float,
    "optimizer": Choices("vitl.training", "OPTIMIZERS"),
    "early_stopping": argparse.BooleanOptionalAction,
    "monitor": Choices("vitl.training", "MONITORS"),
    "patience": int,
    "min_delta": float,
    "class_weight": ("balanced",),
    "dropout": float,
    "hidden_units": int,
    "l2": float,
}


def register(subparsers) -> None:
    """Add the ``train`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> from vitl.cli import build_parser
        >>> args = build_parser().parse_args(["train", "d", "--out", "m",
        ...                                   "--fine-tune-blocks", "2"])
        >>> args.backbone, args.seed, args.verbose, args.fine_tune_blocks, args.split
        ('auto', 0, 1, 2, None)
    """
    parser = subparsers.add_parser(
        "train", help="train a classifier on a folder with one sub-folder per class",
        description="Featurize DATA_DIR once (cached), train the head with early stopping on a "
                    "validation part, evaluate, and write MODEL_DIR/model.keras, labels.txt and "
                    "metrics.json. Options are ImageClassifier's parameters.")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class "
                        "(or with train/, validation/ or val/, test/ folders, used as given)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write into")
    add_training_options(parser, verbose=1)
    parser.add_argument("--validation-fraction", type=number(0, 0.5), default=0.1, metavar="F",
                        help="share of DATA_DIR held out for validation (default 0.1)")
    parser.add_argument("--validation", metavar="DIR", help="your own validation folder")
    parser.add_argument("--test", metavar="DIR", help="your own test folder, evaluated once")
    common.add_split_option(parser, default=None)
    parser.set_defaults(run=run)


def add_training_options(parser, verbose: int) -> None:
    """Add the options ``train`` and ``demo`` share: ImageClassifier's parameters.

    Args:
        parser: the sub-command's parser.
        verbose: the ``--verbose`` default (demo shows the epoch log: 2).

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_training_options(parser, verbose=2)
        >>> args = parser.parse_args(["--preset", "mlnet", "--no-early-stopping"])
        >>> args.preset, args.early_stopping, args.epochs, args.cache
        ('mlnet', False, None, 'default')
    """
    common.add_backbone_options(parser)
    parser.add_argument("--preset", choices=("default", "mlnet"), default="default",
                        help="head settings to start from: HeadConfig() or HeadConfig.mlnet()")
    head = parser.add_argument_group("head: HeadConfig fields (default: the preset's)")
    for name, kind in HEAD_OPTIONS.items():
        option = "--" + name.replace("_", "-")
        if kind is argparse.BooleanOptionalAction:
            head.add_argument(option, action=kind)
        elif isinstance(kind, tuple | Choices):
            head.add_argument(option, choices=kind, metavar=name.upper(), help="%(choices)s")
        else:
            head.add_argument(option, type=kind)
    parser.add_argument("--augment", type=integer(0, 100), default=0, metavar="K",
                        help="K cached augmented views per training image (default 0)")
    tune = parser.add_argument_group("fine-tuning: FineTuneConfig (off without --fine-tune-blocks)")
    tune.add_argument("--fine-tune-blocks", type=integer(0, 1000), default=0, metavar="N")
    tune.add_argument("--fine-tune-epochs", type=integer(1, 100_000), metavar="E")
    tune.add_argument("--fine-tune-learning-rate", type=number(0, 1), metavar="LR")
    common.add_seed_option(parser)
    common.add_cache_options(parser)
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=verbose,
                        help="0 silent, 1 progress bars and summaries, 2 also a line per epoch")

def run(args: argparse.Namespace) -> int:
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
    layout = split_layout(data_dir, args)
    if reason:
        print(reason)
    parts, record = make_split(data_dir, layout, args)
    print(f"split ({record['kind']}):\n{parts}\n")
    for line in noise_lines(parts):
        print(line)
    clf, metrics, _ = train_on_split(parts, backbone, args, str(data_dir), record)
    save_model_dir(clf, out, metrics)
    print(f"\nvalidation accuracy {metrics['validation']['accuracy']:.4f}"
          + (f", test accuracy {metrics['test']['accuracy']:.4f}" if metrics.get("test") else ""))
    print(f"saved {out / MODEL_FILE}, {out / LABELS_FILE}, {out / METRICS_FILE}")
    return 0


def split_layout(data_dir: Path, args) -> dict | None:
    """Return ``{part: folder}`` when DATA_DIR holds train/ (validation/ or val/, test/) folders.

    Args:
        data_dir: the training folder.
        args: the parsed options (``split``, ``validation``, ``test``).

    Returns:
        The layout, or None for a folder with one sub-folder per class.

    Raises:
        CLIError: a split option that contradicts the folders.

    Example:
        >>> import tempfile
        >>> args = argparse.Namespace(split=None, validation=None, test=None)
        >>> split_layout(Path(tempfile.mkdtemp()), args) is None
        True
    """
    if args.split is not None and (args.validation is not None or args.test is not None):
        both = "--validation" if args.validation is not None else "--test"
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


def make_split(data_dir: Path, layout: dict | None, args):
    """Build the train / validation / test parts and a record of how (for metrics.json).

    Args:
        data_dir: the training folder.
        layout: :func:`split_layout`'s answer.
        args: the parsed options (``split``, ``seed``, ``validation``, ``test``,
            ``validation_fraction``).

    Returns:
        ``(Split, record dict)``.

    Example:
        Tested in ``tests/test_cli_splits.py``:

        >>> make_split(Path("photos"), None, args)  # doctest: +SKIP
    """
    from ..data import Split, split

    seed = args.seed
    if layout is not None:
        train = load_images(layout["train"])
        validation = load_images(layout["validation"]) if layout["validation"] else None
        test = load_images(layout["test"]) if layout["test"] else train.subset([])
        kind = "folders"
        sources = {part: str(folder) if folder else None for part, folder in layout.items()}
    elif args.split is not None:
        fractions = common.split_fractions(args.split)
        train, validation, test = split(load_images(data_dir), *fractions, seed=seed)
        kind = args.split
        sources = dict.fromkeys(PART_FOLDERS, str(data_dir))
    else:
        train = load_images(data_dir)
        validation = load_images(args.validation, "--validation") if args.validation else None
        test = load_images(args.test, "--test") if args.test else train.subset([])
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
    parts = Split(train, validation, test)
    record = {"kind": kind, "seed": seed, "validation_fraction": fraction, "sources": sources,
              "counts": {name: part.counts() for name, part in parts._asdict().items()}}
    return parts, record


def noise_lines(parts) -> list[str]:
    """One line per small validation / test part: what one image is worth there.

    Args:
        parts: a :class:`~vitl.data.Split`.

    Returns:
        The lines (none for parts of :data:`SMALL_PART` images or more, or empty ones).

    Example:
        >>> from collections import namedtuple
        >>> Parts = namedtuple("Parts", "validation test")
        >>> noise_lines(Parts(range(50), range(4)))[0][:40]
        'note: the test part has 4 images, so one'
    """
    lines = []
    for name in ("validation", "test"):
        n = len(getattr(parts, name))
        if 0 < n < SMALL_PART:
            lines.append(f"note: the {name} part has {n} images, so one image moves its accuracy "
                         f"by {100 / n:.1f} points; read its accuracy as a rough guide")
    return lines


# ---------------------------------------------------------------- shared with demo
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
    given = {name: getattr(args, name) for name in HEAD_OPTIONS}
    return replace(config, **{k: v for k, v in given.items() if v is not None})


def make_classifier(args, backbone: str):
    """The one conversion from parsed options to an unfitted ImageClassifier.

    Args:
        args: the parsed ``train`` / ``demo`` options.
        backbone: the resolved backbone name.

    Returns:
        ``ImageClassifier(backbone, input_size=..., precision=..., head=HeadConfig(...),
        augment=..., fine_tune=FineTuneConfig(...) or None, validation_fraction=..., seed=...,
        cache=..., verbose=...)``.

    Example:
        >>> from vitl.cli import build_parser
        >>> args = build_parser().parse_args(["train", "d", "--out", "m", "--preset", "mlnet",
        ...                                   "--fine-tune-blocks", "2", "--no-cache"])
        >>> clf = make_classifier(args, "mobilenetv2")
        >>> clf.head.optimizer, clf.fine_tune.blocks, clf.cache
        ('sgd', 2, None)
    """
    from ..classifier import ImageClassifier
    from ..finetune import FineTuneConfig

    fine_tune = None
    if args.fine_tune_blocks:
        given = {"epochs": args.fine_tune_epochs, "learning_rate": args.fine_tune_learning_rate}
        fine_tune = FineTuneConfig(blocks=args.fine_tune_blocks,
                                   **{k: v for k, v in given.items() if v is not None})
    return ImageClassifier(backbone, input_size=args.input_size, precision=args.precision,
                           head=head_config(args), augment=args.augment, fine_tune=fine_tune,
                           validation_fraction=getattr(args, "validation_fraction", 0.1),
                           seed=args.seed, cache=args.cache, verbose=args.verbose)


def check_before_work(args, out) -> tuple[Path, str, str | None]:
    """Every check of ``train`` / ``demo`` that needs no data, so bad input costs no time.

    Args:
        args: the parsed options.
        out: the model folder to write.

    Returns:
        ``(out as a Path, backbone name, why it was chosen or None)``.

    Raises:
        CLIError, ValueError, WeightsUnavailableError: one line each.

    Example:
        >>> from vitl.cli import build_parser
        >>> args = build_parser().parse_args(["train", "d", "--out", "m", "--no-cache",
        ...                                   "--backbone", "mobilenetv2-tv"])
        >>> check_before_work(args, Path("/tmp/new-model"))
        (PosixPath('/tmp/new-model'), 'mobilenetv2-tv', None)
    """
    head_config(args).validate()
    out = check_model_out(out)
    common.check_cache_option(args.cache)
    backbone, reason = common.choose_backbone(args.backbone)
    check_fine_tune(args.fine_tune_blocks, backbone)
    return out, backbone, reason


def check_fine_tune(blocks: int, backbone: str) -> None:
    """Refuse ``--fine-tune-blocks N`` beyond the backbone's blocks before any data is read.

    Args:
        blocks: ``--fine-tune-blocks``.
        backbone: the resolved backbone name.

    Returns:
        None.

    Example:
        >>> check_fine_tune(0, "mobilenetv2")
    """
    from ..backbones import get_backbone

    available = len(get_backbone(backbone).block_prefixes)
    if blocks > available:
        raise CLIError(problem("--fine-tune-blocks", f"at most {available} (the blocks of "
                               f"{backbone})", blocks,
                               f"pass --fine-tune-blocks between 1 and {available}, or 0"))


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
    if out.exists():
        # The folder is replaced as a whole, so its parent must be writable too.
        why = common.cannot_write(out.absolute().parent)
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


def train_on_split(parts, backbone: str, args, data_source: str, split_record: dict):
    """Fit on ``parts.train`` with early stopping on ``parts.validation``; evaluate it (and
    ``parts.test`` when not empty).

    Args:
        parts: a :class:`~vitl.data.Split`.
        backbone: the resolved backbone name.
        args: the parsed ``train`` / ``demo`` options.
        data_source: where the data came from (for metrics.json).
        split_record: how it was split (for metrics.json).

    Returns:
        ``(classifier, metrics dict, {part: EvaluationReport})``.

    Example:
        Trains a model (tested in ``tests/test_cli_models.py``):

        >>> clf, metrics, reports = train_on_split(parts, "mobilenetv2-tv", args, "photos",
        ...                                        record)  # doctest: +SKIP
    """
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
    history = clf.history_
    print(repr(history).splitlines()[0])
    reports = {"validation": clf.evaluate(parts.validation)}
    if len(parts.test):
        reports["test"] = clf.evaluate(parts.test)
    train_seconds = history.seconds or 0.0
    info = clf.fit_info_
    metrics = {
        "vitl_version": __version__,
        **{key: info[key] for key in ("backbone", "input_size", "precision", "weights")},
        "data_source": data_source,
        "split": split_record,
        "preset": args.preset,
        "head": info["head"],
        "epochs_requested": clf.head.epochs,
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
        _write_text(tmp / LABELS_FILE, "".join(f"{c}\n" for c in clf.classes_))
        _write_text(tmp / METRICS_FILE, json.dumps(metrics, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")  # inside atomic_folder's temp folder
