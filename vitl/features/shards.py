"""Feature shards: Parquet files of cached features, the exchange format between engines.

A shard holds the feature vectors of one :class:`~vitl.features.cache.FeatureSpace`
(backbone, weights fingerprint, input size, preprocessing, precision, view), one
row per image content:

=========  ==================  ====================================================
column     Arrow type          meaning
=========  ==================  ====================================================
content    string              hex sha256 of the image file's bytes (the cache key)
space      string              the FeatureSpace id (32 hex digits), same in every row
vector     list<float32>       the pooled features (``dim`` values); null on errors
error      string              null, or why the image could not be featurized
path       string              the file as the writer saw it (informational)
=========  ==================  ====================================================

The file's key-value metadata ``vitl.shard`` is JSON: ``format`` (1), ``space``
(the FeatureSpace fields), ``space_id``, ``dim``, ``dtype`` ("float32") and
free-form ``writer`` details. Importing checks that the id matches the fields
and every row, that the backbone is registered with that feature dimension, and
that every vector has ``dim`` finite float32 values; error rows are reported and
skipped. Writers write to a hidden temporary name and rename, so a shard file is
whole or absent. pyarrow is needed (``pip install 'vitl[ray]'``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import problem
from .._files import atomic_path, file_kind
from .cache import FeatureCache, FeatureKey, FeatureSpace

SHARD_FORMAT = 1
META_KEY = b"vitl.shard"
SUFFIX = ".parquet"
_COLUMNS = ("content", "space", "vector", "error", "path")


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(problem("pyarrow", "installed (feature shards are Parquet files)",
                                 "not installed", "pip install 'vitl[ray]'")) from None
    return pa, pq


@dataclass
class Shard:
    """One shard file, read and validated.

    Attributes:
        path: the file.
        space: its :class:`FeatureSpace`.
        contents: content hashes of the rows with vectors.
        vectors: float32 ``(len(contents), dim)``.
        errors: ``(content, path, reason)`` of the error rows.
        meta: the validated ``vitl.shard`` metadata (``format``, ``space``, ``space_id``,
            ``dim``, ``dtype``, ``writer``).
    """

    path: Path
    space: FeatureSpace
    contents: list
    vectors: np.ndarray
    errors: list
    meta: dict


@dataclass
class ImportStats:
    """What :func:`import_shards` did.

    Attributes:
        files: shard files read.
        rows: rows with vectors in them.
        added: vectors newly stored in the cache (the others were already there: left alone).
        errors: ``(content, path, reason)`` of error rows (images that failed).
    """

    files: int = 0
    rows: int = 0
    added: int = 0
    errors: list = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"imported {self.files} shard files: {self.rows} vectors, {self.added} new, "
                f"{self.rows - self.added} already cached")
        if self.errors:
            text += f"; {len(self.errors)} error rows (unreadable images) skipped"
        return text


def _bad(path, expected, received):
    return ValueError(problem(f"feature shard {path}", expected, received,
                              "re-create it with `vitl featurize` or `vitl cache export`, "
                              "or remove it from the folder"))


def _require(path, checks) -> None:
    """Raise the first failed ``(passed, expected, received)`` check as a one-line error."""
    for passed, expected, received in checks:
        if not passed:
            raise _bad(path, expected, received)


def write_shard(path, space: FeatureSpace, dim: int, contents, vectors, errors=(),
                writer: dict | None = None) -> Path:
    """Write one shard atomically (a hidden temporary file, then a rename).

    Args:
        path: the ``.parquet`` file to create (its folder is created).
        space: the vectors' :class:`FeatureSpace`.
        dim: the feature dimension.
        contents: content hashes, one per vector.
        vectors: ``(len(contents), dim)`` array-like.
        errors: ``(content, path, reason)`` of images that failed.
        writer: extra JSON-able details kept in the metadata (host, pid, seconds...).

    Returns:
        ``path``.

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> folder = Path(tempfile.mkdtemp())
        >>> path = write_shard(folder / "s.parquet", space, 1280, ["ab" * 32], np.ones((1, 1280)),
        ...                    errors=[("cd" * 32, "bad.jpg", "truncated file")])
        >>> shard = read_shard(path)
        >>> shard.vectors.shape, shard.errors[0][2]
        ((1, 1280), 'truncated file')
    """
    pa, pq = _arrow()
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    errors = list(errors)
    n, rows = len(vectors), len(vectors) + len(errors)
    # From flat buffers (error rows: null): row by row takes ~2 s per 50,000 x 2048 vectors.
    offsets = pa.array(np.minimum(np.arange(rows + 1), n) * dim, pa.int32())
    vector = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)),
                                      mask=pa.array(np.arange(rows) >= n))
    strings = {"content": list(contents) + [e[0] for e in errors], "space": [space.id] * rows,
               "error": [None] * n + [str(e[2]) for e in errors],
               "path": [None] * n + [str(e[1]) for e in errors]}
    table = pa.table({**{k: pa.array(v, pa.string()) for k, v in strings.items()},
                      "vector": vector}).select(list(_COLUMNS))
    meta = {"format": SHARD_FORMAT, "space": asdict(space), "space_id": space.id, "dim": int(dim),
            "dtype": "float32", "writer": writer or {}}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta)}), tmp)
    return Path(path)


def read_shard(path, expect: FeatureSpace | None = None, rows: bool = True) -> Shard:
    """Read and validate one shard file (with ``rows=False`` only its footer).

    Args:
        path: a shard file.
        expect: when given, the shard must hold exactly this feature space.
        rows: also read and check the rows; False checks the metadata alone (fast).

    Returns:
        A :class:`Shard` (no contents, vectors or errors with ``rows=False``).

    Raises:
        ValueError: the file is not a valid shard (or not of ``expect``), in one line.

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> path = write_shard(Path(tempfile.mkdtemp()) / "s.parquet", space, 1280, ["ab" * 32],
        ...                    np.ones((1, 1280)))
        >>> read_shard(path, expect=space).contents == ["ab" * 32]
        True
        >>> read_shard(path, rows=False).meta["dim"]
        1280
    """
    pa, pq = _arrow()
    from ..backbones.registry import BACKBONES  # here: only importing shards needs Keras

    kind = file_kind(path)  # a planted FIFO would block the read forever
    _require(path, [(kind == "a regular file", "a Parquet file", kind)])
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise _bad(path, "a Parquet file", f"unreadable ({str(err).splitlines()[0]})") from None
    try:
        meta = json.loads((schema.metadata or {})[META_KEY])
        space, dim = FeatureSpace(**meta["space"]), int(meta["dim"])
    except (KeyError, TypeError, ValueError):
        raise _bad(path, "vitl.shard metadata (format, space, space_id, dim, dtype)",
                   "none or incomplete") from None
    spec, missing = BACKBONES.get(space.backbone), sorted(set(_COLUMNS) - set(schema.names))
    vector = None if missing else schema.field("vector").type
    feature_dim = spec.feature_dim if spec else dim
    _require(path, [
        (not missing, f"columns {', '.join(_COLUMNS)}", f"missing {missing}"),
        (meta.get("format") == SHARD_FORMAT, f"shard format {SHARD_FORMAT}", meta.get("format")),
        (meta.get("space_id") == space.id, f"space_id {space.id} (the id of its space fields)",
         meta.get("space_id")),
        (meta.get("dtype") == "float32" and vector == pa.list_(pa.float32()), "float32 vectors",
         f"{meta.get('dtype')} / {vector}"),
        (spec, f"a registered backbone ({', '.join(BACKBONES)})", space.backbone),
        (dim == feature_dim, f"{feature_dim} features ({space.backbone})", dim),
        (expect is None or space == expect, f"features of {expect} (id {expect and expect.id})",
         f"{space} (id {space.id})")])
    frame = (pq.read_table(path, columns=list(_COLUMNS)).to_pandas() if rows else
             pd.DataFrame({column: [] for column in _COLUMNS}))
    good, failed = frame[frame["error"].isna()], frame[frame["error"].notna()]
    _require(path, [
        ((frame["space"] == space.id).all(), f"space {space.id} in every row", "rows of other spaces"),
        (frame["content"].map(lambda c: isinstance(c, str) and len(c) == 64).all(),
         "64-hex-digit sha256 contents", "other values"),
        (good["vector"].map(lambda v: v is not None and len(v) == dim).all(),
         f"{dim} values in every vector", "other lengths")])
    vectors = np.stack(list(good["vector"])) if len(good) else np.empty((0, dim), np.float32)
    _require(path, [(np.isfinite(vectors).all(), "finite feature values", "NaN or infinity")])
    return Shard(Path(path), space, list(good["content"]), vectors.astype(np.float32),
                 list(zip(failed["content"], failed["path"], failed["error"])), meta)


def shard_files(folder) -> list[Path]:
    """Return a folder's shard files (``*.parquet``, not hidden), sorted; or the one file given.

    Args:
        folder: a folder of shard files, or one file.

    Returns:
        A sorted list of paths.

    Raises:
        FileNotFoundError: ``folder`` does not exist.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("b.parquet", "a.parquet", ".a.parquet.tmp-1.parquet", "notes.txt"):
        ...     _ = (folder / name).write_bytes(b"")
        >>> [p.name for p in shard_files(folder)]
        ['a.parquet', 'b.parquet']
    """
    folder = Path(folder).expanduser()
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(problem("shard folder", "a folder of .parquet shard files",
                                        f"{folder} (does not exist)", "check the path"))
    return sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))


def known_errors(folder, space: FeatureSpace) -> dict:
    """Return ``{content: (path, reason)}`` of the error rows in a folder's shards of ``space``.

    Lets a rerun skip images that already failed instead of retrying them.

    Args:
        folder: the shard folder (missing: no errors).
        space: the :class:`FeatureSpace` of interest; shards named for other spaces are not read.

    Returns:
        A dict from content hash to ``(path, reason)``.

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = write_shard(folder / f"{space.id[:12]}-x.parquet", space, 1280, [], [],
        ...                 errors=[("cd" * 32, "bad.jpg", "truncated file")])
        >>> known_errors(folder, space)["cd" * 32]
        ('bad.jpg', 'truncated file')
    """
    files = shard_files(folder) if Path(folder).is_dir() else []
    return {content: (source, reason) for path in files if path.name.startswith(space.id[:12])
            for content, source, reason in read_shard(path, expect=space).errors}


def import_shards(source, cache: FeatureCache, expect: FeatureSpace | None = None,
                  stats: ImportStats | None = None) -> ImportStats:
    """Merge shard files into a feature cache; vectors already cached are left alone.

    Every file's metadata is checked before anything is written; then each file
    is read, validated and stored in one transaction (whole or not at all).
    Importing the same shards again adds nothing.

    Args:
        source: a folder of shard files, one file, or a list of files.
        cache: the :class:`FeatureCache` to fill (the single writer).
        expect: when given, every shard must hold this feature space.
        stats: an :class:`ImportStats` to add to (default: a new one).

    Returns:
        The :class:`ImportStats`.

    Raises:
        ValueError: a file is not a valid shard (named in the one-line message).

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = write_shard(folder / "s.parquet", space, 1280, ["ab" * 32], np.ones((1, 1280)))
        >>> cache = FeatureCache(folder / "cache")
        >>> print(import_shards(folder, cache))
        imported 1 shard files: 1 vectors, 1 new, 0 already cached
        >>> import_shards(folder, cache).added
        0
    """
    files = source if isinstance(source, list) else shard_files(source)
    for path in files:
        read_shard(path, expect, rows=False)
    stats = ImportStats() if stats is None else stats
    for path in files:
        shard = read_shard(path, expect)
        keys = [FeatureKey(c, shard.space) for c in shard.contents]
        found = cache.lookup(keys).found
        new = [(k, v) for k, v in zip(keys, shard.vectors) if k not in found]
        cache.put_many(new)
        stats.files += 1
        stats.rows += len(keys)
        stats.added += len(new)
        stats.errors += shard.errors
    return stats


def export_shards(cache: FeatureCache, folder, rows_per_file: int = 50_000) -> list[Path]:
    """Write every intact vector of a cache as shard files, one series per feature space.

    Files are named ``<space id>-<part>.parquet``; existing files of the same
    name are replaced (atomically).

    Args:
        cache: the :class:`FeatureCache` to read.
        folder: where to write (created).
        rows_per_file: rows per shard file.

    Returns:
        The written files.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> cache = FeatureCache(folder / "cache")
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> cache.put_many([(FeatureKey("ab" * 32, space), np.ones(1280))])
        >>> [p.name for p in export_shards(cache, folder / "shards")] == [
        ...     f"{space.id}-00000.parquet"]
        True
    """
    written = []
    for space in cache.spaces():
        for part, (contents, vectors) in enumerate(cache.iter_vectors(space, rows_per_file)):
            path = Path(folder) / f"{space.id}-{part:05d}{SUFFIX}"
            written.append(write_shard(path, space, vectors.shape[1], contents, vectors,
                                       writer={"by": "vitl cache export"}))
    return written
