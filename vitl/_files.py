"""Atomic writes: a file or a whole folder is either the old one or the new one, never half.

Every writer in vitl (models, model folders, exports, weights, bundles, data sets) goes
through :func:`atomic_path` (files) or :func:`atomic_folder` (folders). Temp names
``.<name>.<kind>-<pid>-<random>`` are unique per process and call, so two writers never
share one, and :func:`remove_stale_temps` can remove those of crashed processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import time
import urllib.parse
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so folder_lock does not serialise processes there
    fcntl = None


def _temp_sibling(target: Path, kind: str, suffix: str = "") -> Path:
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}{suffix}")


@contextlib.contextmanager
def atomic_path(target, suffix: str = "", *, folder: bool = False):
    """Yield a temp path next to ``target``; on success it replaces ``target`` atomically.

    Readers never see a half-written file; on error the temp file is removed.

    Args:
        target: the file to write.
        suffix: the temp name's ending, for writers that insist on one (``".keras"``).
        folder: yield an empty temp folder instead, which replaces ``target`` as a whole
            (see :func:`atomic_folder`).

    Returns:
        A context manager yielding the temp path to write (not yet created; a new empty
        folder with ``folder=True``).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(target)
    if not folder and target.is_dir():  # os.replace would fail after the work, naming the temp
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = _temp_sibling(target, "tmp", suffix)
    if folder:
        tmp.mkdir(mode=0o755)
    try:
        yield tmp
        if folder:
            _swap_in(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        _remove(tmp)  # gone already when it replaced target


def write_bytes_atomic(target, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`).

    Args:
        target: the file to write.
        data: its new contents.

    Returns:
        ``target`` as a Path.

    Example:
        >>> import tempfile
        >>> write_bytes_atomic(Path(tempfile.mkdtemp()) / "x.bin", b"ok").read_bytes()
        b'ok'
    """
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_folder(target):
    """Yield an empty sibling temp folder; on success it replaces ``target`` as a whole.

    The old ``target`` (if any) is moved aside, the new folder renamed into its
    place and the old one removed. With several writers at once the last one
    wins and the folder always holds one writer's complete contents. On error
    (or a crash) ``target`` is left as it was; crashed runs' temp folders are
    removed by later calls (:func:`remove_stale_temps`).

    Args:
        target: the folder to (re)create.

    Returns:
        A context manager yielding the temp folder (a Path) to fill.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "model"
        >>> with atomic_folder(target) as tmp:
        ...     _ = (tmp / "a.txt").write_text("1")
        >>> [p.name for p in target.parent.iterdir()], (target / "a.txt").read_text()
        (['model'], '1')
    """
    return atomic_path(target, folder=True)


@contextlib.contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on ``folder`` (created when missing) until the block ends.

    For make-once work shared between processes (unpacking a data set): the second
    process waits, then finds the work done instead of redoing it and swapping the
    folder away under the first one's readers. ``flock`` on the folder itself
    leaves no lock file behind; the lock goes with the process. Where there is no
    ``flock`` (Windows, some network file systems) the block runs unlocked.

    Args:
        folder: the folder to lock, e.g. the parent of the folder to make.

    Returns:
        A context manager.

    Example:
        >>> import tempfile
        >>> with folder_lock(tempfile.mkdtemp()):
        ...     pass
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a network file system without flock: go on unlocked, as before
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # also releases the lock


def _swap_in(new: Path, target: Path) -> None:
    for _ in range(100):
        try:
            os.rename(new, target)  # atomic; fails when target is a non-empty folder
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
        old = _temp_sibling(target, "old")
        with contextlib.suppress(FileNotFoundError):  # another writer moved it aside first
            os.rename(target, old)
            _remove(old)
    raise OSError(errno.EBUSY, "too many concurrent writers", str(target))


def remove_stale_temps(target) -> None:
    """Remove the temp files and folders of ``target`` left by processes that are gone.

    Args:
        target: the file or folder whose ``.<name>.<kind>-<pid>-*`` siblings to check.

    Returns:
        None.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / ".x.tmp-999999999-ab").mkdir()
        >>> remove_stale_temps(root / "x")
        >>> list(root.iterdir())
        []
    """
    target = Path(target)
    for path in target.parent.glob(f".{target.name}.*-*-*"):
        pid = path.name[len(target.name) + 2:].split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(path)


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree; one already gone (another writer's cleanup) is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except (OSError, OverflowError) as err:
        return isinstance(err, PermissionError)  # it exists, owned by another user
    return True


#: What :func:`file_kind` calls each type letter of ``stat.filemode``.
_KINDS = {"-": "a regular file", "d": "a folder", "p": "a FIFO (named pipe)",
          "c": "a character device", "b": "a block device", "s": "a socket"}


def file_kind(path) -> str:
    """Name what ``path`` is, for messages: ``"a FIFO (named pipe)"``, ``"a device"``...

    Args:
        path: the path to describe.

    Returns:
        A phrase such as ``"a regular file"`` or ``"unreadable (<reason>)"``.

    Example:
        >>> file_kind("/dev/zero")
        'a character device'
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        return f"unreadable ({getattr(err, 'strerror', None) or err})"
    return _KINDS.get(stat.filemode(mode)[0], "not a regular file")


def regular_opener(name, flags: int) -> int:
    """An ``opener`` for :func:`open` that refuses FIFOs, devices and sockets without blocking.

    ``O_NONBLOCK`` makes opening a FIFO return at once (a plain ``open`` waits
    for a writer forever); the type is then checked on the open descriptor, so
    a file swapped between a check and the open cannot slip through.

    Args:
        name: the path, as :func:`open` passes it.
        flags: the ``os.open`` flags, as :func:`open` passes them.

    Returns:
        An open file descriptor of a regular file.

    Raises:
        IsADirectoryError: ``name`` is a folder.
        OSError: (``errno.EINVAL``) ``name`` is a FIFO, device or socket.

    Example:
        >>> open("/dev/zero", "rb", opener=regular_opener)
        Traceback (most recent call last):
        ...
        OSError: [Errno 22] not a regular file (a character device): '/dev/zero'
    """
    fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", os.fsdecode(name))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({file_kind(name)})",
                          os.fsdecode(name))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path, mode: str = "rb"):
    """Open a regular file for reading: ``open(path, mode)`` refusing FIFOs and devices.

    Args:
        path: the file.
        mode: a read mode, ``"rb"`` or ``"r"``.

    Returns:
        The open file object.

    Raises:
        OSError: (``errno.EINVAL``) ``path`` is not a regular file (see :func:`regular_opener`).

    Example:
        >>> with open_regular(__file__) as handle:
        ...     handle.read(1) == b'"'
        True
    """
    return open(path, mode, opener=regular_opener)


def stamp() -> str:
    """Return a sortable local time stamp for file names, e.g. ``20260130-114501``.

    Returns:
        ``YYYYmmdd-HHMMSS``.

    Example:
        >>> len(stamp())
        15
    """
    return time.strftime("%Y%m%d-%H%M%S")


def resolve_host(url: str) -> None:
    """Raise OSError unless the host of ``url`` has an address (offline: at once).

    ``keras.utils.get_file`` prints "Downloading data from ..." before it finds out that
    the network is down; downloads call this first, so an offline run never claims one.

    Args:
        url: the address to be downloaded.

    Raises:
        OSError: naming the host and the resolver's error.

    Example:
        >>> resolve_host("https://host.invalid/file.zip")
        Traceback (most recent call last):
        ...
        OSError: gaierror: ... (host.invalid)
    """
    host = urllib.parse.urlsplit(url).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError as err:
        raise OSError(f"{type(err).__name__}: {err} ({host})") from err
