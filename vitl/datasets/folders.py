"""Crash-safe folders for the data sets: built in a temp sibling, renamed into place.

A killed run leaves only a hidden ``.<name>.tmp-<pid>`` sibling, which a later
call removes once that process is gone; the target is the old folder or the new
one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path


@contextlib.contextmanager
def replacing_folder(target):
    """Yield an empty temp sibling of ``target``; on success it replaces ``target`` as a whole.

    Args:
        target: the folder to (re)create.

    Returns:
        A context manager yielding the temp folder (a Path) to fill.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "set"
        >>> with replacing_folder(target) as tmp:
        ...     _ = (tmp / "a.txt").write_text("1")
        >>> sorted(p.name for p in target.parent.iterdir()), (target / "a.txt").read_text()
        (['set'], '1')
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("tmp", "old"):
        remove_stale_temps(target.parent, f".{target.name}.{kind}-")
    tmp, old = (target.with_name(f".{target.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(root, prefix: str, max_age_s: float = 6 * 3600) -> None:
    """Remove leftovers named ``<prefix>...<pid>[.part]`` of dead processes (or very old ones).

    Args:
        root: the folder holding the leftovers.
        prefix: their name prefix, e.g. ``".sdnet2018-decks.tmp-"``.
        max_age_s: leftovers older than this are removed even if the process lives.

    Returns:
        None.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / ".x.tmp-999999999").mkdir()
        >>> remove_stale_temps(root, ".x.tmp-")
        >>> list(root.iterdir())
        []
    """
    for path in Path(root).glob(f"{prefix}*"):
        stem = path.name[len(prefix):].removesuffix(".part")
        pid = stem.rsplit("-", 1)[-1].rsplit(".", 1)[-1]
        try:
            old = time.time() - path.stat().st_mtime > max_age_s
        except OSError:
            continue
        if pid == str(os.getpid()) or old or not (pid.isdigit() and _pid_alive(int(pid))):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except PermissionError:
        return True  # exists, owned by another user
    except (ProcessLookupError, OverflowError, OSError):
        return False
    return True


__all__ = ["remove_stale_temps", "replacing_folder"]
