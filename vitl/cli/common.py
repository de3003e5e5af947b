"""What several ``vitl`` commands share: option types, the cache, split, seed and backbone
options, input and output paths, and the one model loader.

Example:
    The option types turn text into values, or raise argparse's error in vitl's form:

    >>> bounded(int, 1, 10)("3"), bounded(float, 0, 0.5, low_open=True)("0.1")
    (3, 0.1)
    >>> split_fractions("70/15/15")
    (0.7, 0.15, 0.15)
    >>> bounded(int, 1, 10)("0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected an integer from 1 to 10, received '0'. Fix: ...
    >>> bounded(float, 0, 10, low_open=True)("nan")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a number > 0 and <= 10, received 'nan'. Fix: ...
"""

import argparse
import importlib
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from .._errors import problem
from . import CLIError


class Choices(Sequence):
    """A closed set of values read from a vitl module when argparse first checks one.

    Building the parser then imports no TensorFlow: ``vitl data`` and ``vitl cache``
    stay fast, and only a command given one of these options pays for the import. Give
    such options a ``metavar`` (argparse lists ``choices`` in the usage line otherwise) and
    ``%(choices)s`` in the help, expanded only by ``--help``.

    Args:
        module: the module holding the values, e.g. ``"vitl.export"``.
        name: the attribute, a sequence or a dict (its keys), e.g. ``"FORMATS"``.
        extra: values accepted on top, e.g. ``("auto",)``.

    Example:
        >>> "tflite" in Choices("vitl.export", "FORMATS")
        True
        >>> list(Choices("vitl.features.folder", "ENGINES"))
        ['local', 'ray']
    """

    def __init__(self, module: str, name: str, extra: tuple = ()):
        self.module, self.name, self.extra = module, name, extra

    def _values(self) -> tuple:
        values = getattr(importlib.import_module(self.module), self.name)
        return (*self.extra, *(v for v in values if v is not None))

    def __getitem__(self, index):
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())


def add_actions(parser, actions: dict) -> dict:
    """Add ACTION sub-commands (``vitl cache info``); each one's help is its run's first line.

    Args:
        parser: the command's parser.
        actions: ``{name: run function}``.

    Returns:
        ``{name: the action's parser}``, to add its arguments to.

    Example:
        >>> def run_list(args):
        ...     "List what there is."
        >>> parsers = add_actions(argparse.ArgumentParser(), {"list": run_list})
        >>> parsers["list"].description, parsers["list"].parse_args([]).run is run_list
        ('List what there is', True)
    """
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, run in actions.items():
        summary = run.__doc__.split("\n")[0].rstrip(".")
        sub.add_parser(name, help=summary, description=summary).set_defaults(run=run)
    return sub.choices


def bad_value(expected: str, received: str, fix: str) -> argparse.ArgumentTypeError:
    """The error an argparse ``type`` raises; :class:`vitl.cli.Parser` puts ``--name:`` before it.

    Args:
        expected: what would have been right.
        received: the option's text.
        fix: how to fix it.

    Returns:
        The ``argparse.ArgumentTypeError`` to raise.

    Example:
        >>> str(bad_value("an integer", "x", "pass 3"))
        "expected an integer, received 'x'. Fix: pass 3"
    """
    return argparse.ArgumentTypeError(problem("value", expected, received, fix)
                                      .removeprefix("value: "))


def bounded(kind: type, low: float, high: float | None = None, *, low_open: bool = False):
    """An argparse ``type`` for an ``int`` or finite ``float`` from ``low`` to ``high``.

    Args:
        kind: ``int`` or ``float``.
        low: the smallest value accepted (refused itself when ``low_open``).
        high: the largest value accepted, or None for no upper bound.
        low_open: whether ``low`` itself is refused.

    Returns:
        A function turning the option's text into a value (see the module's example).
    """
    if kind is int:
        expected = f"an integer from {low} to {high}" if high is not None else \
            f"an integer >= {low}"
    else:
        expected = f"a number {'>' if low_open else '>='} {low:g} and <= {high:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        above = value is not None and (value > low if low_open else value >= low)
        if not above or (high is not None and not value <= high):  # NaN fails both
            raise bad_value(expected, text, "pass a value in that range")
        return value
    return parse


def cache_value(text: str) -> str:
    """The ``--cache`` type: a folder or ``default``; ``none`` points to ``--no-cache``.

    Args:
        text: the option's value.

    Returns:
        ``text``.

    Example:
        >>> cache_value("default")
        'default'
    """
    if text.lower() == "none":
        raise bad_value("a cache folder or 'default'", text, "pass --no-cache to use no cache")
    return text


def add_cache_options(parser, help_extra: str = "") -> None:
    """Add ``--cache DIR`` (default ``default``) and ``--no-cache`` (``cache=None``).

    Args:
        parser: the sub-command's parser.
        help_extra: a sentence added to ``--cache``'s help.

    Returns:
        None; ``args.cache`` is then what the API's ``cache=`` takes.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_cache_options(parser)
        >>> parser.parse_args([]).cache, parser.parse_args(["--no-cache"]).cache
        ('default', None)
    """
    parser.add_argument("--cache", type=cache_value, default="default", metavar="DIR",
                        help="feature cache folder, or 'default' ($VITL_CACHE, else "
                             "$VITL_HOME/cache)" + help_extra)
    parser.add_argument("--no-cache", dest="cache", action="store_const", const=None,
                        help="compute features without reading or filling a cache")


def check_cache_option(cache) -> None:
    """Open (creating) the ``--cache`` folder's database now, so a read-only one fails up front.

    Args:
        cache: ``args.cache`` (a folder, ``"default"`` or None).

    Returns:
        None.

    Example:
        >>> check_cache_option(None)
    """
    if cache is None:
        return
    from .. import _paths
    from ..features.cache import FeatureCache

    folder = _paths.default_cache_dir() if cache == "default" else Path(cache).expanduser()
    FeatureCache(folder).close()


def split_fractions(text: str) -> tuple[float, float, float]:
    """Read ``--split``: 'tutorial' -> ML.NET's (0.70, 0.27, 0.03); '70/15/15' -> fractions.

    Args:
        text: the option's value.

    Returns:
        (train, validation, test) fractions (see the module's example).

    Raises:
        argparse.ArgumentTypeError: neither 'tutorial' nor three numbers summing to 100
            with train > 0.
    """
    from ..data import TUTORIAL_FRACTIONS

    if text == "tutorial":
        return TUTORIAL_FRACTIONS
    try:
        numbers = [float(p) / 100 for p in text.split("/")]
    except ValueError:
        numbers = []
    if len(numbers) != 3 or min(numbers) < 0 or numbers[0] <= 0 or \
            not abs(sum(numbers) - 1) <= 1e-8:  # NaN fails too
        raise bad_value("'tutorial' or TRAIN/VALIDATION/TEST percentages summing to 100, "
                        "e.g. 70/15/15", text, "pass --split tutorial or --split 70/15/15")
    return tuple(numbers)


def split_value(text: str) -> str:
    """The ``--split`` argparse type: ``text`` when :func:`split_fractions` accepts it.

    Args:
        text: the option's value.

    Returns:
        ``text``.

    Example:
        >>> split_value("tutorial")
        'tutorial'
    """
    split_fractions(text)
    return text


def add_split_option(parser, default: str | None) -> None:
    """Add ``--split {tutorial,TRAIN/VAL/TEST}``, the same on ``train`` and ``data``.

    Args:
        parser: the sub-command's parser.
        default: the ``--split`` default (None: train's stratified validation hold-out).

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_split_option(parser, default=None)
        >>> add_seed_option(parser)
        >>> args = parser.parse_args(["--split", "60/20/20"])
        >>> args.split, args.seed
        ('60/20/20', 0)
    """
    parser.add_argument("--split", type=split_value, default=default,
                        metavar="{tutorial,TRAIN/VAL/TEST}",
                        help="split three ways: 'tutorial' = ML.NET's 70/27/3, or percentages "
                             "such as 70/15/15 (stratified, exact per class)"
                             + (f" (default {default})" if default else ""))


def add_seed_option(parser) -> None:
    """Add ``--seed N`` (default 0, as ``ImageClassifier(seed=0)``).

    Args:
        parser: the sub-command's parser.

    Returns:
        None (see :func:`add_split_option`'s example).
    """
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0, metavar="N",
                        help="seeds the split, the head's initialisation and shuffling "
                             "(default 0, as in Python); 0..2**32-1")


def add_backbone_options(parser) -> None:
    """Add ``--backbone``, ``--input-size`` and ``--precision``: which features (train, demo,
    featurize).

    Args:
        parser: the sub-command's parser.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_backbone_options(parser)
        >>> args = parser.parse_args(["--input-size", "64"])
        >>> args.backbone, args.input_size, args.precision
        ('auto', 64, 'float32')
    """
    parser.add_argument("--backbone", default="auto", metavar="NAME",
                        choices=Choices("vitl.backbones", "BACKBONES", extra=("auto",)),
                        help="`vitl weights list`, or 'auto' (default): $VITL_BACKBONE, else "
                             "resnet101v2 when its weights can be had, else mobilenetv2-tv")
    parser.add_argument("--input-size", type=bounded(int, 32, 1024), metavar="PIXELS",
                        help="square input side (default: the backbone's own)")
    parser.add_argument("--precision", default="float32", metavar="NAME", choices=Choices(
        "vitl.backbones.precision", "PRECISIONS", extra=("auto",)),
        help="%(choices)s; 'auto' measures once per machine (default float32)")


def choose_backbone(name: str) -> tuple[str, str | None]:
    """Resolve ``--backbone``; return ``(backbone name, one line saying why)`` for ``auto``.

    ``auto`` is :func:`vitl.backbones.choose_backbone`: ``$VITL_BACKBONE`` when
    set, else resnet101v2 when its weights can be had, else mobilenetv2-tv.

    Args:
        name: a backbone name or ``"auto"``.

    Returns:
        ``(name, reason)``; the reason is None for a named backbone.

    Raises:
        WeightsUnavailableError: a named backbone's weights cannot be had (its
            message lists the fixes).

    Example:
        >>> choose_backbone("mobilenetv2-tv")
        ('mobilenetv2-tv', None)
    """
    from ..backbones import choose_backbone as choose
    from ..backbones import get_backbone
    from ..backbones.weights import resolve_weights

    if name != "auto":
        resolve_weights(get_backbone(name))  # fail here, before any data is read
        return name, None
    choice = choose()
    return choice.name, choice.reason


def existing_folder(path, name: str) -> Path:
    """Return ``path`` as a Path; raise :class:`CLIError` when it is not a folder.

    Args:
        path: the folder given.
        name: the argument's name for the message, e.g. ``"DATA_DIR"``.

    Returns:
        The folder.

    Example:
        >>> existing_folder("/", "DATA_DIR")
        PosixPath('/')
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "a file" if folder.exists() else "a path that does not exist"
        raise CLIError(problem(name, "a folder with one sub-folder per class",
                               f"{folder} ({what})", "check the path"))
    return folder


def load_images(folder, name: str = "DATA_DIR", *, parts: bool = False, verbose: int = 1,
                min_classes: int = 2):
    """Load a folder with one sub-folder per class (or, with ``parts``, one already split into
    train/ validation/ test/ folders); name the count of skipped files on stderr.

    Args:
        folder: the folder.
        name: the argument's name for errors.
        parts: load it with :func:`vitl.data.load_split_folders`.
        verbose: 0 hides the "Checking images" progress bar.
        min_classes: class folders required (1 to score a model on one class's photos).

    Returns:
        The :class:`~vitl.data.ImageCollection` (a :class:`~vitl.data.Split` with ``parts``).

    Example:
        >>> load_images("/no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: DATA_DIR: expected a folder with one sub-folder per class, ...
    """
    from ..data import load_image_folder, load_split_folders

    folder = existing_folder(folder, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one line per folder for all of them, below
        loaded = (load_split_folders(folder, verbose=verbose) if parts else
                  load_image_folder(folder, verbose=verbose, min_classes=min_classes))
    # An empty part shares train's report: one line per report.
    for images in {id(c.report): c for c in (loaded if parts else [loaded])}.values():
        if len(images.report):
            print(f"skipped {len(images.report)} unreadable files in {images.root} "
                  f"(`vitl data {images.root}` lists them)", file=sys.stderr)
    return loaded


def readable_images(paths) -> list[Path]:
    """The readable images among image files and folders (searched recursively), in order.

    Each file left out (unreadable, FIFOs, devices, unlistable folders) is named on stderr,
    one line each; files of a folder without an image extension get one line together.

    Args:
        paths: image files and folders.

    Returns:
        The readable image paths.

    Raises:
        ValueError: a path that does not exist.
        CLIError: no readable image.

    Example:
        >>> readable_images(["/no/such.png"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: image folder: expected an existing folder or image file, received ...
    """
    from ..data import LoadReport, check_images, list_images

    found, report = [], LoadReport()
    for path in paths:
        found += list_images(path, report=report)
    good, skipped = check_images(found)
    for item in [*report.skipped, *skipped]:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    if not good:
        received = f"{len(found)} files, none readable (see the lines above)" if found else \
            f"no image files in {', '.join(map(str, paths))}"
        raise CLIError(problem("PATH", "at least one readable image", received,
                               "pass image files (.jpg, .png...) or folders holding them"))
    if report.ignored:  # the "N non-image files ignored (...)" line of `vitl data`
        print(str(LoadReport(ignored=report.ignored)).splitlines()[-1], file=sys.stderr)
    return good


def check_writable(path, name: str, kind: str = "folder") -> Path:
    """Refuse before any work an output ``path`` that could not be written.

    Args:
        path: the output path.
        name: the option's name for the message, e.g. ``"--out"``.
        kind: ``"folder"`` (created when missing) or ``"file"`` (replaced).

    Returns:
        ``path`` as a Path.

    Example:
        >>> check_writable(Path(tempfile.gettempdir()) / "new-folder", "--out").name
        'new-folder'
    """
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != (kind == "folder"):
        found = "folder" if path.is_dir() else "file"
        raise CLIError(problem(name, f"a {kind} path", f"the {found} {path}",
                               f"pass a {kind} path, not a {found}"))
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    target = path if path.is_dir() else parent
    try:  # tried for real: permissions, read-only mounts and full disks all show
        fd, probe = tempfile.mkstemp(prefix=".vitl-write-check-", dir=target)
        os.close(fd)
        os.unlink(probe)
        why = None
    except OSError as err:
        why = err.strerror or type(err).__name__
    if why:
        raise CLIError(problem(name, "a place you can write to",
                               f"{path} (cannot write in {target}: {why})",
                               "choose another path, or fix the folder's permissions"))
    return path


def add_model_options(parser, cache: bool = True, cache_help: str = "") -> None:
    """Add ``MODEL_DIR`` (``evaluate``, ``predict``, ``explain``, ``export``) and the cache options.

    Args:
        parser: the sub-command's parser.
        cache: also add :func:`add_cache_options` (the cache of the loaded classifier).
        cache_help: a sentence added to ``--cache``'s help.

    Returns:
        None; ``args.model_dir`` and ``args.cache`` are then what :func:`load_model_dir` takes.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_model_options(parser)
        >>> args = parser.parse_args(["model", "--no-cache"])
        >>> args.model_dir, args.cache
        ('model', None)
    """
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="folder written by `vitl train`, or a .keras file")
    if cache:
        add_cache_options(parser, cache_help)


def check_model_path(model) -> Path:
    """Check MODEL_DIR before any slow work (decoding images can take minutes).

    Args:
        model: the folder ``vitl train --out`` wrote, or a ``.keras`` file.

    Returns:
        The ``.keras`` file.

    Raises:
        CLIError: neither a folder holding ``model.keras`` nor a file (one line).

    Example:
        >>> check_model_path("/no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: MODEL_DIR: expected a folder written by `vitl train` (holding ...
    """
    path = Path(model).expanduser()
    path = path / "model.keras" if path.is_dir() else path
    if not path.is_file():  # also refuses a planted FIFO or device
        raise CLIError(problem("MODEL_DIR", "a folder written by `vitl train` (holding "
                               "model.keras), or a .keras file", str(path),
                               f"check the path, or train one: vitl train DATA_DIR --out {model}"))
    return path


def load_model_dir(model, cache="default"):
    """Load a classifier from a model folder (``MODEL_DIR/model.keras``) or a ``.keras`` file.

    The one loader of ``evaluate``, ``predict``, ``explain`` and ``export``, called before
    their images are decoded: the path (:func:`check_model_path`) and the cache
    (:func:`check_cache_option`) are checked first, then :meth:`ImageClassifier.load
    <vitl.classifier.ImageClassifier.load>` reads the model.

    Args:
        model: the folder ``vitl train --out`` wrote, or a ``.keras`` file.
        cache: the feature cache for the loaded classifier (``args.cache``).

    Returns:
        The fitted :class:`~vitl.classifier.ImageClassifier`.

    Example:
        >>> load_model_dir("/no/such/folder", cache=None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vitl.cli.CLIError: MODEL_DIR: expected a folder written by `vitl train` (holding ...
    """
    path = check_model_path(model)
    check_cache_option(cache)
    from ..classifier import ImageClassifier  # imports TensorFlow: after the cheap checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ImageClassifier.load(path, cache=cache, verbose=1)
