"""Offline bundles: weights (and the data set) from a connected machine, in one zip.

A bundle has the layout of a ``VITL_HOME`` folder, so an unpacked bundle can be
used directly as ``VITL_HOME``::

    manifest.json               file names, sha256, sizes, vitl version
    weights/<keras file name>   e.g. resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5
    data-mirror/<zip>           with --with-data: the SDNET2018 sample zip

:func:`make_bundle` writes one; :func:`import_bundle` checks every sha256 and
installs the files into ``weights_dir()`` and :func:`vitl.datasets.data_mirror_dir`.
"""

from __future__ import annotations

import contextlib
import json
import reprlib
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from .._errors import problem
from .._files import atomic_path, open_regular, write_bytes_atomic
from .._hashing import copy_hashing, sha256_file
from .._paths import weights_dir
from ..datasets import SDNET2018_SHA256, SDNET2018_ZIP_NAMES, data_mirror_dir, find_sdnet_zip
from .registry import DEFAULT_BACKBONE, get_backbone
from .weights import resolve_weights, weights_file_name

MANIFEST = "manifest.json"
FORMAT = "vitl-bundle/1"
WEIGHTS_SUBDIR = "weights"
DATA_MIRROR_SUBDIR = "data-mirror"


def make_bundle(out, backbones=(DEFAULT_BACKBONE,), with_data: bool = False,
                download: bool = True) -> Path:
    """Write an offline bundle zip holding the backbones' weights (and the data set).

    Args:
        out: the zip file to write (replaced atomically).
        backbones: registered backbone names whose ImageNet weights to include.
        with_data: also include the SDNET2018 sample zip
            (see :func:`vitl.datasets.find_sdnet_zip`).
        download: allow downloading weights missing on this machine.

    Returns:
        The path of the bundle.

    Raises:
        WeightsUnavailableError: a backbone's weights cannot be resolved here.
        FileNotFoundError: ``with_data`` but no data zip found.
        ValueError: the data zip is not the published one.

    Example:
        >>> import tempfile
        >>> path = make_bundle(Path(tempfile.mkdtemp()) / "b.zip", ["mobilenetv2-tv"])
        >>> [entry["path"] for entry in read_manifest(path)["files"]]
        ['weights/mobilenet_v2-b0353104.pth']
    """
    sources = {}  # arcname: (file, extra manifest fields)
    for name in backbones:
        spec = get_backbone(name)
        found = resolve_weights(spec, "imagenet", download=download)
        sources[f"{WEIGHTS_SUBDIR}/{weights_file_name(spec)}"] = (
            Path(found.path), {"sha256": found.sha256, "backbone": spec.name})
    if with_data:
        zip_path = find_sdnet_zip()
        digest = sha256_file(zip_path)  # checked here, where a good copy can still be fetched
        if digest != SDNET2018_SHA256:
            raise ValueError(problem(f"sha256 of {zip_path}", SDNET2018_SHA256, digest,
                                     "replace the zip with the published SDNET2018 sample"))
        sources[f"{DATA_MIRROR_SUBDIR}/{SDNET2018_ZIP_NAMES[0]}"] = (
            zip_path, {"sha256": digest, "dataset": "sdnet2018-decks"})
    files = [{"path": arcname, "size": source.stat().st_size, **extra}
             for arcname, (source, extra) in sources.items()]
    out = Path(out)
    # Stored, not deflated: h5 weights and jpeg zips barely compress.
    with atomic_path(out, suffix=".zip") as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(MANIFEST, json.dumps({"format": FORMAT, "vitl_version": __version__,
                                          "files": files}, indent=2))
        for arcname, (source, _) in tqdm(sources.items(), desc="bundle", unit="file"):
            zf.write(source, arcname)
    return out


@contextlib.contextmanager
def _opener(bundle: Path):
    """Yield ``open(member)`` reading a member of a bundle zip or of an unpacked bundle folder."""
    if bundle.is_dir():  # regular files only: a planted FIFO must not hang the import
        yield lambda member: open_regular(bundle / member)
    else:
        with open_regular(bundle) as handle, zipfile.ZipFile(handle) as zf:  # a FIFO neither
            yield zf.open


def _is_entry(entry) -> bool:
    """Whether a manifest entry is ``{path: weights/<file> or data-mirror/<file>, sha256, size}``."""
    path = entry.get("path") if isinstance(entry, dict) else None
    parts = Path(path).parts if isinstance(path, str) else ()
    return (len(parts) == 2 and parts[0] in (WEIGHTS_SUBDIR, DATA_MIRROR_SUBDIR)
            and parts[1] not in ("..", ".") and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int) and entry["size"] >= 0)


def read_manifest(bundle) -> dict:
    """Return a bundle's manifest (zip file or unpacked folder), validating its shape.

    Args:
        bundle: a bundle zip or an unpacked bundle folder.

    Returns:
        The manifest: ``{"format", "vitl_version", "files": [{"path", "sha256", "size"}]}``.

    Raises:
        ValueError: not a vitl bundle, or a manifest of another shape.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / MANIFEST).write_text('{"format": "vitl-bundle/1", "files": []}')
        >>> read_manifest(folder)["files"]
        []
    """
    try:
        with _opener(Path(bundle)) as open_member, open_member(MANIFEST) as handle:
            manifest = json.load(handle)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        manifest = f"{type(err).__name__}: {err}"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(files, list) and manifest.get("format") == FORMAT
            and all(map(_is_entry, files))):
        raise ValueError(problem(
            f"bundle {bundle}", f"a zip or folder with a {MANIFEST}: a JSON object with format "
            f"{FORMAT!r} and files [{{path: weights/<file> or data-mirror/<file>, sha256, size "
            "(bytes)}]", manifest[:300] if isinstance(manifest, str) else reprlib.repr(manifest),
            "re-create it with `vitl weights bundle`"))
    return manifest


def import_bundle(bundle) -> list[Path]:
    """Verify a bundle and install its files into ``weights_dir()`` and ``data_mirror_dir()``.

    Every file is extracted next to its destination, its sha256 and size are
    checked against the manifest, and only when all match are they moved into
    place (``os.replace``), so a tampered or truncated bundle installs nothing.

    Args:
        bundle: a bundle zip or an unpacked bundle folder.

    Returns:
        The installed file paths.

    Raises:
        ValueError: not a bundle, or a file's sha256/size differs from the manifest.

    Example:
        >>> import tempfile
        >>> bundle = make_bundle(Path(tempfile.mkdtemp()) / "b.zip", ["mobilenetv2-tv"])
        >>> [path.name for path in import_bundle(bundle)]
        ['mobilenet_v2-b0353104.pth']
    """
    manifest = read_manifest(bundle)
    targets = {WEIGHTS_SUBDIR: weights_dir(), DATA_MIRROR_SUBDIR: data_mirror_dir()}
    installed = []
    # Every file is staged in a temp file; the stack replaces them all only if
    # no check failed, else removes them all.
    with contextlib.ExitStack() as stack:
        open_member = stack.enter_context(_opener(Path(bundle)))
        for entry in tqdm(manifest["files"], desc="import", unit="file"):
            sub, name = Path(entry["path"]).parts
            tmp = stack.enter_context(atomic_path(targets[sub] / name))
            expected = f"sha256 {entry['sha256']} ({entry['size']} bytes)"
            try:
                with open_member(entry["path"]) as source, open(tmp, "wb") as sink:
                    # Stop one byte past the declared size: an entry that expands
                    # further (a zip bomb) is refused without being written out.
                    digest, size = copy_hashing(source, sink, limit=entry["size"])
                received = (f"sha256 {digest} ({size} bytes)" if size <= entry["size"] else
                            f"more than the declared {entry['size']} bytes (extraction stopped)")
            except (KeyError, FileNotFoundError, zipfile.BadZipFile, EOFError, zlib.error) as err:
                received = f"{type(err).__name__}: {err}"
            if received != expected:
                raise ValueError(problem(f"bundle file {entry['path']}", expected, received,
                                         "the bundle is corrupted or was modified; re-copy or "
                                         "re-create it"))
            installed.append(targets[sub] / name)
    return installed


def copy_into_weights_dir(path) -> Path:
    """Copy a weights file into ``weights_dir()`` (atomically) and return the new path.

    Args:
        path: the weights file.

    Returns:
        ``weights_dir() / path.name``.

    Example:
        >>> import tempfile
        >>> source = Path(tempfile.mkdtemp()) / "x.weights.h5"
        >>> _ = source.write_bytes(b"w")
        >>> copy_into_weights_dir(source) == weights_dir() / "x.weights.h5"
        True
    """
    return write_bytes_atomic(weights_dir() / Path(path).name, Path(path).read_bytes())
