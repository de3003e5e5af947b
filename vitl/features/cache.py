"""A persistent, content-addressed feature cache in one sqlite file.

A feature vector is stored under a :class:`FeatureKey`: the sha256 of the image
file's bytes (so a renamed or moved file still hits and an edited one misses)
plus a :class:`FeatureSpace`, everything else that decides the vector: backbone,
weights fingerprint, input size, preprocessing version, precision, view id and
augmentation policy id.

Why sqlite in WAL mode: every write is an atomic transaction, so a process
killed mid-run leaves whole entries or none; WAL lets readers proceed while one
process writes, and concurrent writers queue on ``busy_timeout`` instead of
failing; it is one file and the standard library. Vectors are stored as
little-endian float32 bytes with their length and a CRC32, so a damaged entry is
detected on read and the caller recomputes and replaces it. WAL needs a local
file system (not NFS).

This module imports neither TensorFlow nor Keras, so ``vitl cache info`` is fast.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import asdict, astuple, dataclass, field, fields
from pathlib import Path

import numpy as np

from .._errors import problem
from .._files import file_kind, folder_lock, stamp

#: File name of the sqlite database inside a cache folder.
DB_NAME = "features.sqlite"

#: Bumped when the table layout changes; an older vitl refuses a newer file.
SCHEMA_VERSION = 1

# Two writers each committing a batch every few milliseconds to seconds wait for
# each other far less than this; it only bounds a pathological lock holder.
BUSY_TIMEOUT_S = 120.0
#: After this long waiting for a lock, vitl warns that it is waiting (then waits on).
WAIT_NOTE_AFTER_S = 5.0

#: The numbers of a featurize run kept per backbone (FeatureStats fields, last_run columns).
_RUN_COLUMNS = ("images", "hits", "computed", "repaired", "seconds")

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS spaces (id TEXT PRIMARY KEY, backbone TEXT NOT NULL,
    fingerprint TEXT NOT NULL, input_size INTEGER NOT NULL, preprocessing INTEGER NOT NULL,
    precision TEXT NOT NULL, view INTEGER NOT NULL, transform_id TEXT);
CREATE INDEX IF NOT EXISTS spaces_backbone ON spaces (backbone);
CREATE TABLE IF NOT EXISTS features (space TEXT NOT NULL, content TEXT NOT NULL,
    dim INTEGER NOT NULL, crc32 INTEGER NOT NULL, vector BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (space, content)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS last_run (backbone TEXT PRIMARY KEY, finished REAL NOT NULL,
    images INTEGER NOT NULL, hits INTEGER NOT NULL, computed INTEGER NOT NULL,
    repaired INTEGER NOT NULL, seconds REAL NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""


@dataclass(frozen=True)
class FeatureSpace:
    """Everything besides the image that decides a feature vector.

    Attributes:
        backbone: registry name, e.g. ``"resnet101v2"``.
        fingerprint: id of the exact weights (``FeatureExtractor.fingerprint``).
        input_size: square input side in pixels.
        preprocessing: ``vitl.backbones.registry.PREPROCESSING_VERSION``.
        precision: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        view: 0 for the original image, k > 0 for the k-th augmented view.
        transform_id: names the augmentation policy for views > 0, else None.

    Example:
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> space.id == FeatureSpace("mobilenetv2", "abc", 224, 1, "float32").id
        True
        >>> space.id == FeatureSpace("mobilenetv2", "abc", 160, 1, "float32").id
        False
    """

    backbone: str
    fingerprint: str
    input_size: int
    preprocessing: int
    precision: str
    view: int = 0
    transform_id: str | None = None

    @functools.cached_property  # the sha256 is worth computing once per space object
    def id(self) -> str:
        """A stable 32-hex-digit id of all the fields (the sha256 of their JSON).

        Shown in the class example: equal fields give equal ids, any other field another id.
        """
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FeatureKey:
    """Cache key of one feature vector: image content hash + :class:`FeatureSpace`."""

    content: str
    space: FeatureSpace


@dataclass
class Lookup:
    """Result of :meth:`FeatureCache.lookup`.

    Attributes:
        found: valid vectors by key.
        damaged: keys whose stored bytes failed the length or CRC32 check; the
            caller should recompute them and ``put_many`` the fresh vectors.
    """

    found: dict
    damaged: list


@dataclass
class CacheInfo:
    """What :meth:`FeatureCache.info` reports.

    Attributes:
        path: the sqlite file.
        size_bytes: bytes on disk, including the WAL and shared-memory files.
        entries: total number of stored vectors.
        entries_per_backbone: vectors per backbone name.
        last_runs: per backbone, the last featurize run's ``images``, ``hits``,
            ``computed``, ``repaired``, ``seconds``, ``hit_rate`` and ``finished``
            (unix time).
    """

    path: Path
    size_bytes: int
    entries: int
    entries_per_backbone: dict = field(default_factory=dict)
    last_runs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"feature cache: {self.path}", f"size on disk:  {_human_bytes(self.size_bytes)}",
                 f"entries:       {self.entries}", "", f"{'backbone':<18}{'entries':>9}  last run"]
        for name in sorted(set(self.entries_per_backbone) | set(self.last_runs)):
            run = self.last_runs.get(name)
            last = run and (f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(run['finished']))}: "
                            f"{run['images']} images, hit rate {run['hit_rate']:.0%}, "
                            f"{run['computed']} computed in {run['seconds']:.1f} s")
            lines.append(f"{name:<18}{self.entries_per_backbone.get(name, 0):>9}  {last or '-'}")
        return "\n".join(lines if len(lines) > 5 else lines[:3])


def _unwritable(directory, why) -> str:
    return problem("feature cache", "a folder you can write to", f"{directory} ({why})",
                   "choose another cache folder (--cache DIR, or cache=DIR in Python) or none "
                   "(--no-cache / cache=None)")


def _is_damage(err: sqlite3.Error) -> bool:
    """Whether sqlite says the file is corrupt or not a database (not: locked, busy, full)."""
    return getattr(err, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT,
                                                          sqlite3.SQLITE_NOTADB)


def _human_bytes(n: float) -> str:
    power = min(int(math.log(max(n, 1), 1024)), 3)
    return f"{n / 1024 ** power:.{min(power, 1)}f} {('B', 'KiB', 'MiB', 'GiB')[power]}"


def _encode(vector) -> tuple[int, int, bytes]:
    blob = np.ascontiguousarray(vector, dtype="<f4").reshape(-1).tobytes()
    return len(blob) // 4, zlib.crc32(blob), blob


def _decode(rows) -> tuple[dict, list]:
    """Split ``(id, dim, crc32, blob)`` rows into ``{id: float32 vector}`` and damaged ids."""
    rows = list(rows)
    intact = {row_id: np.frombuffer(blob, dtype="<f4").astype(np.float32)
              for row_id, dim, crc, blob in rows if len(blob) == 4 * dim and zlib.crc32(blob) == crc}
    return intact, [row[0] for row in rows if row[0] not in intact]


def _inode(path) -> int | None:
    """The inode number of ``path``, None when there is no file."""
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _retry_while_locked(call, path):
    """Return ``call()``, retrying for up to :data:`BUSY_TIMEOUT_S` while sqlite says "database
    is locked"; after :data:`WAIT_NOTE_AFTER_S` a warning says what vitl waits for.

    sqlite's own busy timeout (the connection's, :data:`WAIT_NOTE_AFTER_S`) waits in silence, and
    does not cover a new file's switch to WAL: when several processes open a new cache at
    once, the switch fails at once (4 processes opening a fresh cache together: 18 of 40
    trials had one fail, 0 of 100 with this retry).
    """
    start = time.monotonic()
    noted = False
    while True:
        try:
            return call()
        except sqlite3.OperationalError as err:
            waited = time.monotonic() - start
            if "locked" not in str(err) or waited > BUSY_TIMEOUT_S:
                raise
            if not noted and waited >= WAIT_NOTE_AFTER_S:
                noted = True
                warnings.warn(f"feature cache {path} is locked by another process (another vitl "
                              f"run writing to it?); waiting up to {BUSY_TIMEOUT_S:.0f} s",
                              stacklevel=5)
            time.sleep(0.05)


class FeatureCache(contextlib.AbstractContextManager):
    """A feature cache shared by every run, notebook and CLI call using ``directory``.

    Safe for concurrent use by several processes (and threads): reads never
    block, writes are serialized by sqlite. An interrupted run keeps every batch
    it committed.

    Args:
        directory: the cache folder, created when missing; the vectors live in
            ``directory/features.sqlite``.

    A damaged database (sqlite reports it corrupt or not a database, on opening
    or on any later read or write) is moved aside to
    ``features.sqlite.damaged-<time>-<pid>`` with a warning, and a new empty one
    takes its place; the call then proceeds on it.

    Raises:
        ValueError: ``directory`` is a file, cannot be created or written (one
            line naming ``--cache DIR`` / ``--cache none``), or holds a database of
            a newer schema.

    Example:
        >>> import tempfile, numpy as np
        >>> cache = FeatureCache(tempfile.mkdtemp())
        >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
        >>> key = FeatureKey("0" * 64, space)
        >>> cache.put_many([(key, np.ones(3))])
        >>> cache.lookup([key]).found[key]
        array([1., 1., 1.], dtype=float32)
        >>> cache.info().entries_per_backbone
        {'mobilenetv2': 1}
        >>> cache.clear()
        1
    """

    def __init__(self, directory):
        self.directory = Path(directory).expanduser()
        try:  # also refuses a file ("File exists")
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            why = "a file, not a folder" if self.directory.is_file() else err.strerror
            raise ValueError(_unwritable(self.directory, why)) from None
        self.path = self.directory / DB_NAME
        with folder_lock(self.directory):  # not while another process sets a damaged file aside
            if os.path.lexists(self.path) and file_kind(self.path) != "a regular file":
                raise ValueError(_unwritable(self.directory,
                                             f"{DB_NAME} is {file_kind(self.path)}"))
        if not os.access(self.directory, os.W_OK | os.X_OK) or (
                self.path.exists() and not os.access(self.path, os.W_OK)):
            raise ValueError(_unwritable(self.directory, "read-only"))
        self._lock = threading.RLock()
        self._db = None
        self._run(lambda db: None)  # open now: a damaged or newer file is dealt with here

    def _run(self, call):
        """Return ``call(db)`` under the lock, opening the database first when needed.

        A damaged database (on opening or in ``call``) is moved aside with its WAL to
        ``features.sqlite.damaged-<time>-<pid>`` with a warning; ``call`` then runs on a new one.
        """
        with self._lock:
            try:
                if self._db is None:
                    # isolation_level=None: writers issue BEGIN IMMEDIATE, taking the write lock
                    # up front and waiting (sqlite's busy timeout, then _retry_while_locked)
                    # instead of failing when they would have to upgrade a read transaction.
                    self._inode = _inode(self.path)  # which file a damage is found in: the one
                    self._db = sqlite3.connect(self.path, timeout=WAIT_NOTE_AFTER_S,  # opened
                                               isolation_level=None, check_same_thread=False)
                    _retry_while_locked(lambda: self._set_up(self._db), self.path)
                return _retry_while_locked(lambda: call(self._db), self.path)
            except sqlite3.DatabaseError as err:
                if any(word in str(err) for word in ("readonly", "read-only", "unable to open")):
                    raise ValueError(_unwritable(self.directory, str(err))) from None
                if not _is_damage(err):
                    raise
                self._db.close()
                self._db = None
                # Processes that found it damaged at once: the first sets it aside, the others
                # find a new file in its place and use that.
                with folder_lock(self.directory):
                    if _inode(self.path) == self._inode:  # else another process did
                        self._set_aside(err)
                return self._run(call)

    def _set_aside(self, err) -> None:
        """Move the damaged database and its WAL aside (with a warning); a new one replaces it."""
        aside = self.path.with_name(f"{DB_NAME}.damaged-{stamp()}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):  # also what is not a file: sqlite failed on it
            if os.path.lexists(f"{self.path}{suffix}"):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        warnings.warn(f"feature cache {self.path} is damaged ({err}); set it aside as "
                      f"{aside} and started a new one: its features are recomputed as "
                      "needed (`vitl cache clear` deletes the damaged copy)", stacklevel=5)

    @staticmethod
    def _set_up(db) -> None:
        """Switch a new connection to WAL and create the tables (a no-op when they exist)."""
        db.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL never corrupts; only a power cut may lose the last commits.
        db.execute("PRAGMA synchronous = NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ValueError(problem(
                "feature cache", f"schema version <= {SCHEMA_VERSION}", version,
                "upgrade vitl, or point cache= at another folder"))
        if version < SCHEMA_VERSION:
            db.executescript(_SCHEMA)

    def _files(self) -> list[tuple[Path, str]]:
        """``(file, suffix)`` of the database's files that exist: itself, its WAL, its shared memory."""
        files = ((Path(f"{self.path}{suffix}"), suffix) for suffix in ("", "-wal", "-shm"))
        return [(file, suffix) for file, suffix in files if file.is_file()]

    def _query(self, sql: str, args=()) -> list:
        """All rows of one SELECT."""
        return self._run(lambda db: db.execute(sql, args).fetchall())

    def _write(self, *statements) -> None:
        """Run ``(sql, rows)`` pairs with ``executemany`` in one transaction."""
        def write(db):
            db.execute("BEGIN IMMEDIATE")
            with db:  # commits, or rolls back on any exception (also KeyboardInterrupt)
                for sql, rows in statements:
                    db.executemany(sql, rows)

        self._run(write)

    def damaged_copies(self) -> list[Path]:
        """Return the damaged databases set aside in this folder (``features.sqlite.damaged-*``).

        Returns:
            Their paths, sorted (empty when none was ever damaged).

        Example:
            >>> import tempfile
            >>> FeatureCache(tempfile.mkdtemp()).damaged_copies()
            []
        """
        return sorted(self.directory.glob(f"{DB_NAME}.damaged-*"))

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, entries={len(self)})"

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) FROM features")[0][0]

    def close(self) -> None:
        """Close the database connection (also done when the object is collected).

        Example:
            >>> import tempfile
            >>> with FeatureCache(tempfile.mkdtemp()) as cache:  # closed on leaving the block
            ...     len(cache)
            0
        """
        with self._lock:
            self._db.close()

    def __exit__(self, *exc):
        self.close()

    # -- reading ---------------------------------------------------------

    def lookup(self, keys: Iterable[FeatureKey]) -> Lookup:
        """Fetch stored vectors, verifying each one's length and CRC32.

        Args:
            keys: the :class:`FeatureKey` s wanted.

        Returns:
            A :class:`Lookup`: ``found`` maps keys to float32 vectors; ``damaged``
            lists keys whose stored bytes failed verification (treat as misses).

        Example:
            >>> import tempfile
            >>> cache = FeatureCache(tempfile.mkdtemp())
            >>> key = FeatureKey("0" * 64, FeatureSpace("mobilenetv2", "abc", 224, 1, "float32"))
            >>> cache.put_many([(key, np.ones(2))])
            >>> found = cache.lookup([key])
            >>> found.found[key].tolist(), found.damaged
            ([1.0, 1.0], [])
        """
        wanted = {(key.space.id, key.content): key for key in keys}
        rows = self._query(  # json_each: any number of keys in one statement
            "SELECT space, content, dim, crc32, vector FROM features WHERE (space, content) IN "
            "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
            (json.dumps(list(wanted)),))
        return Lookup(*_decode((wanted[space, content], *rest) for space, content, *rest in rows))

    def spaces(self) -> list[FeatureSpace]:
        """Return the feature spaces that hold vectors, sorted by id (for export).

        Returns:
            A list of :class:`FeatureSpace`.

        Example:
            >>> import tempfile
            >>> cache = FeatureCache(tempfile.mkdtemp())
            >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
            >>> cache.put_many([(FeatureKey("0" * 64, space), np.ones(2))])
            >>> cache.spaces() == [space]
            True
        """
        columns = ", ".join(column.name for column in fields(FeatureSpace))
        rows = self._query(f"SELECT {columns} FROM spaces WHERE id IN "
                           "(SELECT DISTINCT space FROM features)")
        return sorted((FeatureSpace(*row) for row in rows), key=lambda s: s.id)

    def iter_vectors(self, space: FeatureSpace, chunk: int = 10_000):
        """Yield ``(contents, float32 (n, dim) vectors)`` of one space's intact entries, by chunk.

        Entries are in content order; damaged ones are left out.

        Args:
            space: the :class:`FeatureSpace` to read.
            chunk: entries per yielded chunk.

        Returns:
            A generator of ``(list of content hashes, (n, dim) array)`` pairs.

        Example:
            >>> import tempfile
            >>> cache = FeatureCache(tempfile.mkdtemp())
            >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
            >>> cache.put_many([(FeatureKey(c * 64, space), np.ones(2)) for c in "ab"])
            >>> [(len(contents), vectors.shape) for contents, vectors in cache.iter_vectors(space)]
            [(2, (2, 2))]
        """
        last = ""
        while rows := self._query("SELECT content, dim, crc32, vector FROM features WHERE "
                                  "space = ? AND content > ? ORDER BY content LIMIT ?",
                                  (space.id, last, chunk)):
            last = rows[-1][0]
            intact, _ = _decode(rows)
            if intact:
                yield list(intact), np.stack(list(intact.values()))

    # -- writing ---------------------------------------------------------

    def put_many(self, items: Iterable[tuple[FeatureKey, np.ndarray]]) -> None:
        """Store ``(key, vector)`` pairs in one transaction, replacing existing entries.

        Args:
            items: ``(FeatureKey, vector)`` pairs; vectors are stored as float32.

        Example:
            >>> import tempfile
            >>> cache = FeatureCache(tempfile.mkdtemp())
            >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
            >>> cache.put_many([(FeatureKey("0" * 64, space), np.ones(2))])
            >>> len(cache)
            1
        """
        items = list(items)
        now = time.time()
        self._write(
            ("INSERT OR IGNORE INTO spaces VALUES (?,?,?,?,?,?,?,?)",
             [(space.id, *astuple(space)) for space in {key.space for key, _ in items}]),
            ("INSERT OR REPLACE INTO features VALUES (?,?,?,?,?,?)",
             [(key.space.id, key.content, *_encode(vector), now) for key, vector in items]))

    def record_run(self, stats) -> None:
        """Remember a featurize run's numbers as its backbone's last run (for :meth:`info`).

        Args:
            stats: the run's :class:`~vitl.features.FeatureStats` (``backbone``, ``images``,
                ``hits``, ``computed``, ``repaired``, ``seconds``).

        Example:
            >>> import tempfile
            >>> from vitl.features import FeatureStats
            >>> cache = FeatureCache(tempfile.mkdtemp())
            >>> cache.record_run(FeatureStats("mobilenetv2", 10, 8, 2, 0, 1.5))
            >>> cache.info().last_runs["mobilenetv2"]["hit_rate"]
            0.8
        """
        numbers = tuple(getattr(stats, column) for column in _RUN_COLUMNS)
        self._write(("INSERT OR REPLACE INTO last_run VALUES (?,?,?,?,?,?,?)",
                     [(stats.backbone, time.time(), *numbers)]))

    # -- maintenance -----------------------------------------------------

    def info(self) -> CacheInfo:
        """Return path, size on disk, entries per backbone and each backbone's last run.

        Returns:
            A :class:`CacheInfo` (``str()`` of it is ``vitl cache info``'s table).

        Example:
            >>> import tempfile
            >>> FeatureCache(tempfile.mkdtemp()).info().entries
            0
        """
        per_backbone = dict(self._query(
            "SELECT s.backbone, COUNT(*) FROM features f JOIN spaces s ON s.id = f.space "
            "GROUP BY s.backbone ORDER BY s.backbone"))
        runs = self._query(f"SELECT backbone, finished, {', '.join(_RUN_COLUMNS)}, "
                           "CASE WHEN images > 0 THEN CAST(hits AS REAL) / images ELSE 0.0 END "
                           "FROM last_run")  # not IIF / ->>: SQLite 3.31+ (Python 3.10 distros)
        names = ("finished", *_RUN_COLUMNS, "hit_rate")
        return CacheInfo(self.path, sum(file.stat().st_size for file, _ in self._files()),
                         sum(per_backbone.values()), per_backbone,
                         {name: dict(zip(names, values)) for name, *values in runs})

    def clear(self, backbone: str | None = None) -> int:
        """Delete all vectors, or only ``backbone``'s, and return how many were deleted.

        The file is compacted afterwards so the disk space is returned. Clearing
        everything also deletes damaged databases set aside earlier.

        Args:
            backbone: a backbone name, or None for everything.

        Returns:
            The number of vectors deleted.

        Example:
            >>> import tempfile
            >>> cache = FeatureCache(tempfile.mkdtemp())
            >>> space = FeatureSpace("mobilenetv2", "abc", 224, 1, "float32")
            >>> cache.put_many([(FeatureKey("0" * 64, space), np.ones(2))])
            >>> cache.clear("resnet101v2"), cache.clear("mobilenetv2")
            (0, 1)
        """
        where, args = ("", ()) if backbone is None else (" WHERE backbone = ?", (backbone,))
        of_spaces = where and f" WHERE space IN (SELECT id FROM spaces{where})"
        removed = self._query(f"SELECT COUNT(*) FROM features{of_spaces}", args)[0][0]
        self._write(*((f"DELETE FROM {table}{rows}", [args]) for table, rows in
                      (("features", of_spaces), ("spaces", where), ("last_run", where))))
        self._run(lambda db: db.executescript("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);"))
        if backbone is None:
            for copy in self.damaged_copies():
                copy.unlink(missing_ok=True)
        return removed
