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

from .._errors import problem
from .._files import atomic_path
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
    """

    path: Path
    space: FeatureSpace
    contents: list
    vectors: np.ndarray
    errors: list


@dataclass
class ImportStats:
    """What :func:`import_shards` did.

    Attributes:
        files: shard files read.
        rows: rows with vectors in them.
        added: vectors newly stored in the cache.
        present: vectors the cache already held (left as they were).
        errors: ``(content, path, reason)`` of error rows (images that failed).
    """

    files: int = 0
    rows: int = 0
    added: int = 0
    present: int = 0
    errors: list = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"imported {self.files} shard files: {self.rows} vectors, {self.added} new, "
                f"{self.present} already cached")
        if self.errors:
            text += f"; {len(self.errors)} error rows (unreadable images) skipped"
        return text


def _bad(path, expected, received):
    return ValueError(problem(f"feature shard {path}", expected, received,
                              "re-create it with `vitl featurize` or `vitl cache export`, "
                              "or remove it from the folder"))


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
    path = Path(path)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    errors = list(errors)
    n = len(vectors)
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    # From flat buffers: converting row by row takes ~2 s per 50,000 x 2048 vectors.
    vector_col = pa.concat_arrays([pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
                                   pa.nulls(len(errors), pa.list_(pa.float32()))])
    table = pa.table({
        "content": pa.array(list(contents) + [e[0] for e in errors], pa.string()),
        "space": pa.array([space.id] * (n + len(errors)), pa.string()),
        "vector": vector_col,
        "error": pa.array([None] * n + [str(e[2]) for e in errors], pa.string()),
        "path": pa.array([None] * n + [str(e[1]) for e in errors], pa.string()),
    })
    meta = {"format": SHARD_FORMAT, "space": asdict(space), "space_id": space.id, "dim": int(dim),
            "dtype": "float32", "writer": writer or {}}
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_meta(path) -> dict:
    """Return a shard's validated ``vitl.shard`` metadata, reading only the footer.

    Args:
        path: a shard file.

    Returns:
        The metadata dict (``format``, ``space``, ``space_id``, ``dim``, ``dtype``, ``writer``).

    Raises:
        ValueError: not a Parquet file, or not a vitl shard of a known format.

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> path = write_shard(Path(tempfile.mkdtemp()) / "s.parquet", space, 1280, [], [])
        >>> read_meta(path)["dim"]
        1280
    """
    pa, pq = _arrow()
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise _bad(path, "a Parquet file", f"unreadable ({str(err).splitlines()[0]})") from None
    missing = [c for c in _COLUMNS if c not in schema.names]
    if missing:
        raise _bad(path, f"columns {', '.join(_COLUMNS)}", f"missing {', '.join(missing)}")
    try:
        meta = json.loads((schema.metadata or {})[META_KEY])
        space = FeatureSpace(**meta["space"])
        dim = int(meta["dim"])
    except (KeyError, TypeError, ValueError):
        raise _bad(path, "vitl.shard metadata (format, space, space_id, dim, dtype)",
                   "none or incomplete") from None
    if meta.get("format") != SHARD_FORMAT:
        raise _bad(path, f"shard format {SHARD_FORMAT}", meta.get("format"))
    if meta.get("space_id") != space.id:
        raise _bad(path, f"space_id {space.id} (the id of its space fields)",
                   meta.get("space_id"))
    if meta.get("dtype") != "float32" or schema.field("vector").type != pa.list_(pa.float32()):
        raise _bad(path, "float32 vectors", f"{meta.get('dtype')} / {schema.field('vector').type}")
    from ..backbones.registry import BACKBONES  # here: only importing shards needs Keras

    spec = BACKBONES.get(space.backbone)
    if spec is None:
        raise _bad(path, f"a registered backbone ({', '.join(BACKBONES)})", space.backbone)
    if dim != spec.feature_dim:
        raise _bad(path, f"{spec.feature_dim} features ({space.backbone})", dim)
    return meta


def read_shard(path, expect: FeatureSpace | None = None) -> Shard:
    """Read and validate one shard file.

    Args:
        path: a shard file.
        expect: when given, the shard must hold exactly this feature space.

    Returns:
        A :class:`Shard`.

    Raises:
        ValueError: the file is not a valid shard (or not of ``expect``), in one line.

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> path = write_shard(Path(tempfile.mkdtemp()) / "s.parquet", space, 1280, ["ab" * 32],
        ...                    np.ones((1, 1280)))
        >>> read_shard(path, expect=space).contents == ["ab" * 32]
        True
    """
    pa, pq = _arrow()
    import pyarrow.compute as pc

    meta = read_meta(path)
    space, dim = FeatureSpace(**meta["space"]), int(meta["dim"])
    if expect is not None and space != expect:
        raise _bad(path, f"features of {expect} (id {expect.id})", f"{space} (id {space.id})")
    table = pq.read_table(path, columns=list(_COLUMNS))
    if pc.any(pc.not_equal(table["space"], space.id)).as_py():
        raise _bad(path, f"space {space.id} in every row", "rows of other spaces")
    ok = pc.is_null(table["error"]).to_numpy(zero_copy_only=False)
    contents = table["content"].to_pylist()
    if any(not isinstance(c, str) or len(c) != 64 for c in contents):
        raise _bad(path, "64-hex-digit sha256 contents", "other values")
    good = table.filter(pa.array(ok))
    lengths = pc.list_value_length(good["vector"]).to_numpy(zero_copy_only=False)
    if len(lengths) and (np.any(np.isnan(lengths.astype(float))) or (lengths != dim).any()):
        raise _bad(path, f"{dim} values in every vector", "other lengths")
    flat = pc.list_flatten(good["vector"]).to_numpy(zero_copy_only=False)
    vectors = np.ascontiguousarray(flat, dtype=np.float32).reshape(len(good), dim)
    if not np.isfinite(vectors).all():
        raise _bad(path, "finite feature values", "NaN or infinity")
    errors = [(c, p, e) for c, p, e, k in zip(contents, table["path"].to_pylist(),
                                              table["error"].to_pylist(), ok) if not k]
    return Shard(Path(path), space, good["content"].to_pylist(), vectors, errors)


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
        space: the :class:`FeatureSpace` of interest; other spaces' shards are not read.

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
    _, pq = _arrow()
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    errors = {}
    for path in shard_files(folder):
        if not path.name.startswith(space.id[:12]) or read_meta(path)["space_id"] != space.id:
            continue
        table = pq.read_table(path, columns=["content", "error", "path"])
        for content, error, source in zip(*(table[c].to_pylist() for c in table.column_names)):
            if error is not None:
                errors[content] = (source, error)
    return errors


def import_shard(shard: Shard, cache: FeatureCache, stats: ImportStats) -> None:
    """Store a read shard's vectors the cache lacks (one transaction); update ``stats``.

    Args:
        shard: a :class:`Shard` from :func:`read_shard`.
        cache: the :class:`FeatureCache` to fill.
        stats: the :class:`ImportStats` to add to.

    Example:
        >>> import tempfile
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> folder = Path(tempfile.mkdtemp())
        >>> path = write_shard(folder / "s.parquet", space, 1280, ["ab" * 32], np.ones((1, 1280)))
        >>> stats = ImportStats()
        >>> import_shard(read_shard(path), FeatureCache(folder / "cache"), stats)
        >>> stats.added
        1
    """
    keys = [FeatureKey(c, shard.space) for c in shard.contents]
    found = cache.lookup(keys).found
    new = [(k, v) for k, v in zip(keys, shard.vectors) if k not in found]
    cache.put_many(new)
    stats.files += 1
    stats.rows += len(keys)
    stats.added += len(new)
    stats.present += len(keys) - len(new)
    stats.errors += shard.errors


def import_shards(source, cache: FeatureCache) -> ImportStats:
    """Merge shard files into a feature cache; vectors already cached are left alone.

    Every file's metadata is checked before anything is written; then each file
    is read, validated and stored in one transaction (whole or not at all).
    Importing the same shards again adds nothing.

    Args:
        source: a folder of shard files, or one file.
        cache: the :class:`FeatureCache` to fill (the single writer).

    Returns:
        :class:`ImportStats`.

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
    files = shard_files(source)
    for path in files:
        read_meta(path)
    stats = ImportStats()
    for path in files:
        import_shard(read_shard(path), cache, stats)
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
