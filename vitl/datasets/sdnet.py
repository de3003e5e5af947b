"""The ML.NET tutorial's SDNET2018 deck sample: found in a mirror or downloaded, verified, unpacked.

:func:`sdnet2018_decks` looks for the zip in a mirror folder (argument,
``$VITL_DATA_MIRROR``, an imported offline bundle), then an earlier download,
last downloads it with ``keras.utils.get_file``; its size and sha256 are checked
before it is unpacked, crash-safely, once. :func:`tutorial_data` falls back to
synthetic tiles when the sample cannot be had.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import zipfile
from pathlib import Path

from .. import _paths
from .._errors import check_verbose, problem
from .._files import atomic_folder, atomic_path, folder_lock, remove_stale_temps, resolve_host
from .._hashing import sha256_file
from .synthetic import make_synthetic_cracks

logger = logging.getLogger("vitl.datasets")


class DatasetUnavailableError(RuntimeError):
    """Raised when a data set can be found neither in a mirror nor by download."""


class DatasetChecksumError(DatasetUnavailableError):
    """Raised when a data set file has the wrong size or sha256; nothing is unpacked."""


SDNET2018_URL = (
    "https://github.com/dotnet/machinelearning-samples/raw/main/samples/csharp/getting-started/"
    "DeepLearning_ImageClassification_Binary/DeepLearning_ImageClassification/assets.zip"
)
SDNET2018_SIZE = 2_840_003
SDNET2018_SHA256 = "7ac86c72dbaf601b0526de08afa83f24f0331f8b08f8efbc4be75b97364b0efe"
#: File names looked for in a mirror folder, in order.
SDNET2018_ZIP_NAMES = ("sdnet2018-decks-sample.zip", "assets.zip")
#: Folder (below the data folder) the sample is unpacked into.
SDNET2018_FOLDER = "sdnet2018-decks"
#: The class folders: CD = cracked deck, UD = uncracked deck.
SDNET2018_CLASSES = {"CD": "cracked deck", "UD": "uncracked deck"}
#: One line to put under any figure that shows SDNET2018 images (CC BY 4.0 asks for it).
SDNET2018_ATTRIBUTION = (
    "Images: SDNET2018, Maguire, Dorafshan & Thomas (2018), Utah State University, "
    "CC BY 4.0, https://digitalcommons.usu.edu/all_datasets/48"
)
MIRROR_ENV = "VITL_DATA_MIRROR"
_ZIP_PREFIX = "assets/"
_MARKER = ".complete"


def data_mirror_dir() -> Path:
    """Return where ``vitl weights import`` puts data zips: ``vitl_home()/data-mirror``.

    Returns:
        The folder (it may not exist).

    Example:
        >>> data_mirror_dir().name
        'data-mirror'
    """
    return _paths.vitl_home() / "data-mirror"


def find_sdnet_zip(mirror=None, data_dir=None) -> Path:
    """Find the SDNET2018 sample zip without downloading or verifying it.

    Looks in ``mirror``, ``$VITL_DATA_MIRROR``, :func:`data_mirror_dir` and the
    data folder (an earlier download), in that order.

    Args:
        mirror: a folder holding the zip, or the zip file itself.
        data_dir: the data folder; default ``vitl._paths.data_dir()``.

    Returns:
        The zip's path.

    Raises:
        FileNotFoundError: in none of those places (the message lists them).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "assets.zip").write_bytes(b"")
        >>> find_sdnet_zip(mirror=folder).name
        'assets.zip'
    """
    tried: list[str] = []
    for _label, path in _candidates(mirror, _data_root(data_dir), tried):
        return path
    raise FileNotFoundError(problem("SDNET2018 zip", f"one of {SDNET2018_ZIP_NAMES}",
                                    "; ".join(tried), f"set {MIRROR_ENV} to the folder holding it"))


def sdnet2018_decks(*, mirror=None, data_dir=None, force: bool = False, timeout: float = 10,
                    verbose: int = 1) -> Path:
    """Return the folder of the ML.NET tutorial's 400-image SDNET2018 bridge-deck sample.

    The folder holds the class folders ``CD`` (cracked deck, 200 JPEGs) and
    ``UD`` (uncracked deck, 200 JPEGs), the zip's ``README.md`` and an
    ``ATTRIBUTION.md``. The zip is looked for as :func:`find_sdnet_zip` does and
    last downloaded from :data:`SDNET2018_URL`; its size and sha256 are checked
    before anything is unpacked. Unpacking goes into a temporary sibling folder
    that holds a ``.complete`` marker (the zip's sha256) before it is renamed
    into place, so an interrupted run never leaves a folder taken as valid. A
    second call with a valid folder returns at once without reading the zip.

    Args:
        mirror: a folder holding ``sdnet2018-decks-sample.zip`` (or
            ``assets.zip``), or the zip file itself.
        data_dir: where to unpack; default ``vitl._paths.data_dir()``. The
            sample lands in ``data_dir/sdnet2018-decks``.
        force: unpack again even when a valid folder exists.
        timeout: seconds to wait for the download server.
        verbose: 0 silent; 1 (or 2) a download progress bar and one printed line
            saying where the sample came from (it goes to the ``vitl.datasets``
            logger either way).

    Returns:
        The image folder ``data_dir/sdnet2018-decks``.

    Raises:
        DatasetUnavailableError: no mirror holds the zip and the download
            failed; the message lists what was tried and the fixes.
        DatasetChecksumError: the zip found or downloaded has the wrong size
            or sha256 (a subclass of DatasetUnavailableError).

    Example:
        >>> folder = sdnet2018_decks()  # doctest: +SKIP
        SDNET2018 deck sample: from mirror .../sdnet2018-decks-sample.zip (sha256 ok) -> ...
        >>> sorted(p.name for p in folder.iterdir() if p.is_dir())  # doctest: +SKIP
        ['CD', 'UD']
        >>> SDNET2018_CLASSES["CD"]
        'cracked deck'
    """
    verbose = check_verbose(verbose)
    target, message = _fetch(mirror, _data_root(data_dir), force, timeout, verbose)
    logger.info("SDNET2018 deck sample: %s", message)
    if verbose:
        print(f"SDNET2018 deck sample: {message}")
    return target


def tutorial_data(*, mirror=None, data_dir=None, timeout: float = 10,
                  synthetic_n_per_class: int = 200, verbose: int = 1) -> tuple[Path, str]:
    """Return (image folder, source line) for the demo: SDNET2018 if available, else synthetic.

    Tries :func:`sdnet2018_decks`; when that data is unavailable, makes (once)
    ``synthetic_n_per_class`` tiles per class with
    :func:`~vitl.datasets.make_synthetic_cracks` in ``data_dir/synthetic-cracks``
    and says so in the source line. A zip with the wrong sha256 is not papered
    over: that error is raised.

    Args:
        mirror: as for :func:`sdnet2018_decks`.
        data_dir: as for :func:`sdnet2018_decks`; the synthetic set goes there too.
        timeout: seconds to wait for the download server.
        synthetic_n_per_class: tiles per class of the fallback.
        verbose: 0 silent, 1 (or 2) progress bars.

    Returns:
        ``(folder, source)``: the image folder and one line naming where it came from.

    Raises:
        DatasetChecksumError: a mirror or download holds a corrupt zip.

    Example:
        >>> folder, source = tutorial_data()  # doctest: +SKIP
        >>> print(source)  # doctest: +SKIP
        SDNET2018 deck sample, from VITL_DATA_MIRROR .../sdnet2018-decks-sample.zip (sha256 ok) ...
    """
    verbose = check_verbose(verbose)
    root = _data_root(data_dir)
    try:
        folder, message = _fetch(mirror, root, False, timeout, verbose)
        return folder, f"SDNET2018 deck sample, {message}. {SDNET2018_ATTRIBUTION}"
    except DatasetChecksumError:
        raise
    except DatasetUnavailableError as err:
        logger.info("falling back to synthetic data: %s", err)
        folder = make_synthetic_cracks(root / "synthetic-cracks", synthetic_n_per_class,
                                       verbose=verbose)
        return folder, (
            f"synthetic cracks ({synthetic_n_per_class} tiles a class, seed 0) in {folder}, "
            f"because the SDNET2018 sample is unavailable: set {MIRROR_ENV}=/folder/with/the/zip "
            "to use the tutorial's real photos"
        )


def _data_root(data_dir) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else _paths.data_dir()


def _fetch(mirror, root: Path, force, timeout, verbose) -> tuple[Path, str]:
    """Do :func:`sdnet2018_decks`' work; return (folder, where the data came from)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(problem("timeout", "a number of seconds > 0", timeout, "pass timeout=10"))
    target = root / SDNET2018_FOLDER
    with folder_lock(root):  # notebooks starting together: one unpacks, the others wait
        if not force and _is_complete(target):
            return target, f"already unpacked at {target}"
        return _unpack_from_first(mirror, root, target, timeout, verbose)


def _unpack_from_first(mirror, root: Path, target: Path, timeout, verbose) -> tuple[Path, str]:
    """Verify and unpack the first zip found (or downloaded); return (folder, its origin)."""
    remove_stale_temps(root / SDNET2018_ZIP_NAMES[0])  # downloads of crashed runs
    tried: list[str] = []
    label, path = next(_candidates(mirror, root, tried), (None, None))
    if path:
        _verify_zip(path, label)
    else:
        label, path = _download(root / SDNET2018_ZIP_NAMES[0], timeout, verbose, tried)
    _unpack(path, target)
    return target, f"{label} (sha256 ok) -> {target}"


def _candidates(mirror, root: Path, tried: list[str]):
    """Yield (label, zip path) from the mirror argument, $VITL_DATA_MIRROR, bundle, data folder."""
    if not mirror and not os.environ.get(MIRROR_ENV):
        tried.append(f"no mirror (mirror=None and ${MIRROR_ENV} unset)")
    bundle = data_mirror_dir()
    for label, place in (("mirror", mirror), (MIRROR_ENV, os.environ.get(MIRROR_ENV)),
                         ("imported bundle", bundle if bundle.is_dir() else None)):
        place = Path(place).expanduser() if place else None
        found = [place] if place and place.is_file() else \
            [place / name for name in SDNET2018_ZIP_NAMES if place and (place / name).is_file()]
        if found:
            yield f"from {label} {found[0]}", found[0]
        elif place:
            tried.append(f"{label}={place}: no {' or '.join(SDNET2018_ZIP_NAMES)} there")
    earlier = root / SDNET2018_ZIP_NAMES[0]
    if earlier.is_file():
        yield f"from earlier download {earlier}", earlier
    tried.append(f"data folder {root}: no earlier download")


def _is_complete(folder: Path) -> bool:
    marker = folder / _MARKER
    return marker.is_file() and marker.read_text().split()[:1] == [SDNET2018_SHA256] and all(
        (folder / name).is_dir() for name in SDNET2018_CLASSES)


def _verify_zip(path: Path, origin: str) -> None:
    """Raise DatasetChecksumError unless ``path`` has the expected size and sha256."""
    size, received = path.stat().st_size, sha256_file(path)
    if size != SDNET2018_SIZE or received != SDNET2018_SHA256:
        raise DatasetChecksumError(problem(
            f"SDNET2018 zip {origin}", f"{SDNET2018_SIZE:,} bytes with sha256 {SDNET2018_SHA256}",
            f"{size:,} bytes with sha256 {received}",
            f"replace {path} with an intact copy of {SDNET2018_URL} "
            "(the file is corrupt or a different one); nothing was unpacked"))


def _download(dest: Path, timeout: float, verbose: int, tried: list[str]) -> tuple[str, Path]:
    """Download the zip to ``dest`` with ``keras.utils.get_file`` (through a temp file)."""
    from keras import utils  # imported here: Keras loads TensorFlow

    default_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # get_file has no timeout; urlopen uses this default
    quiet = contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext()
    try:  # get_file writes straight to its target: a temp name keeps a killed download
        with atomic_path(dest) as part, quiet:  # from looking like a finished one
            try:
                resolve_host(SDNET2018_URL)
                utils.get_file(part.name, SDNET2018_URL, cache_dir=str(part.parent),
                               cache_subdir="")
            except Exception as err:  # get_file reports network failures as plain Exception
                tried.append(f"download {SDNET2018_URL}: {err}")
                raise DatasetUnavailableError(problem(
                    "SDNET2018 deck sample", f"the zip ({' or '.join(SDNET2018_ZIP_NAMES)}, "
                    f"{SDNET2018_SIZE:,} bytes) in a mirror folder or a working download",
                    "; ".join(tried), f"set {MIRROR_ENV}=/folder/with/the/zip, or pass "
                    f"mirror='/folder/with/the/zip', or download {SDNET2018_URL} by hand into "
                    "such a folder")) from err
            _verify_zip(part, f"downloaded from {SDNET2018_URL}")
    finally:
        socket.setdefaulttimeout(default_timeout)
    return f"downloaded from {SDNET2018_URL}", dest


def _unpack(zip_path: Path, target: Path) -> None:
    try:
        with atomic_folder(target) as tmp, zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                if info.filename.startswith(_ZIP_PREFIX) and info.filename != _ZIP_PREFIX:
                    info.filename = info.filename.removeprefix(_ZIP_PREFIX)
                    archive.extract(info, tmp)  # extract() drops "..", "/" and drive parts
            missing = [name for name in SDNET2018_CLASSES if not (tmp / name).is_dir()]
            if missing:
                raise DatasetUnavailableError(problem(
                    "SDNET2018 zip layout", "folders assets/CD and assets/UD",
                    f"no {', '.join(missing)} in {zip_path}", "use the tutorial's assets.zip"))
            (tmp / "ATTRIBUTION.md").write_text(SDNET2018_ATTRIBUTION + "\n")
            (tmp / _MARKER).write_text(SDNET2018_SHA256 + "\n")
    except OSError:
        if not _is_complete(target):  # else another process unpacked it at the same time
            raise


__all__ = ["MIRROR_ENV", "SDNET2018_ATTRIBUTION", "SDNET2018_CLASSES", "SDNET2018_SHA256",
           "SDNET2018_SIZE", "SDNET2018_URL", "SDNET2018_ZIP_NAMES", "DatasetChecksumError",
           "DatasetUnavailableError", "data_mirror_dir", "find_sdnet_zip", "sdnet2018_decks",
           "tutorial_data"]
