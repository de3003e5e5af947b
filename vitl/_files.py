"""Atomic writes: a file or a whole folder is either the old one or the new one, never half.

Every writer in vitl (models, model folders, exports, weights, bundles) goes through
:func:`atomic_path` (files) or :func:`atomic_folder` (folders). Temp names are unique
per process and call, so two processes writing the same target never share one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path


def _unique(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}"


@contextlib.contextmanager
def atomic_path(target, suffix: str = ""):
    """Yield a temp path next to ``target``; on success it replaces ``target`` atomically.

    Readers never see a half-written file; on error the temp file is removed.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_bytes_atomic(target, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`); return ``target``.

    Example:
        >>> import tempfile, pathlib
        >>> path = write_bytes_atomic(pathlib.Path(tempfile.mkdtemp()) / "x.bin", b"ok")
        >>> path.read_bytes()
        b'ok'
    """
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


@contextlib.contextmanager
def atomic_folder(target):
    """Yield an empty sibling temp folder; on success it replaces ``target`` as a whole.

    The old ``target`` (if any) is moved aside, the new folder renamed into its
    place and the old one removed. With several writers at once the last one
    wins and the folder always holds one writer's complete contents. On error
    (or a crash) ``target`` is left as it was; crashed runs' temp folders are
    removed by later calls once their process is gone.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "model"
        >>> with atomic_folder(target) as tmp:
        ...     _ = (tmp / "a.txt").write_text("1")
        >>> sorted(p.name for p in target.iterdir())
        ['a.txt']
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    tmp = target.with_name(_unique(target, "tmp"))
    tmp.mkdir(mode=0o755)
    try:
        yield tmp
        _swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    for _ in range(100):
        try:
            os.rename(new, target)  # atomic; fails when target is a non-empty folder
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
        old = target.with_name(_unique(target, "old"))
        try:
            os.rename(target, old)
        except FileNotFoundError:
            continue  # another writer moved it aside first: try again
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    raise OSError(errno.EBUSY, "too many concurrent writers", str(target))


def _remove_orphans(target: Path) -> None:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.old-`` folders left by processes that died."""
    for kind in ("tmp", "old"):
        for orphan in target.parent.glob(f".{target.name}.{kind}-*"):
            pid = orphan.name.rsplit("-", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)) and orphan.is_dir():
                shutil.rmtree(orphan, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_regular_file(path) -> bool:
    """Whether ``path`` is (or links to) a regular file: not a FIFO, device, socket or folder.

    Example:
        >>> is_regular_file("/dev/zero"), is_regular_file(__file__)
        (False, True)
    """
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def file_kind(path) -> str:
    """Name what ``path`` is, for messages: ``"a FIFO (named pipe)"``, ``"a device"``...

    Example:
        >>> file_kind("/dev/zero")
        'a character device'
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return f"unreadable ({err.strerror})"
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_opener(name, flags: int) -> int:
    """An ``opener`` for :func:`open` that refuses FIFOs, devices and sockets without blocking.

    ``O_NONBLOCK`` makes opening a FIFO return at once (a plain ``open`` waits
    for a writer forever); the type is then checked on the open descriptor, so
    a file swapped between a check and the open cannot slip through.

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
    """``open(path, mode)`` for reading regular files only (see :func:`regular_opener`).

    Raises:
        OSError: (``errno.EINVAL``) ``path`` is not a regular file.
    """
    return open(path, mode, opener=regular_opener)


def stamp() -> str:
    """A sortable local time stamp for file names, e.g. ``20260130-114501``."""
    return time.strftime("%Y%m%d-%H%M%S")
