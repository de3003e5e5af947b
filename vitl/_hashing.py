"""File hashing shared by the data, weights, bundle and feature-cache layers."""

from __future__ import annotations

import hashlib

from ._files import open_regular


def file_digests(path, algorithms=("sha256",)) -> dict[str, str]:
    """Return ``{algorithm: hex digest}`` of a regular file's bytes, read once in 1 MiB chunks.

    FIFOs, devices and sockets are refused (OSError) rather than read: reading
    ``/dev/zero`` or a pipe named ``x.jpg`` would never end.

    Args:
        path: the file.
        algorithms: ``hashlib`` names, e.g. ``("sha256", "md5")``.

    Returns:
        ``{algorithm: hex digest}``.

    Raises:
        OSError: ``path`` cannot be read or is not a regular file.

    Example:
        >>> import tempfile, os
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> file_digests(f.name, ("md5",))
        {'md5': '900150983cd24fb0d6963f7d28e17f72'}
        >>> os.remove(f.name)
    """
    digests = {name: hashlib.new(name) for name in algorithms}
    with open_regular(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_file(path) -> str:
    """Return the hex sha256 of a regular file's bytes (see :func:`file_digests`).

    Args:
        path: the file.

    Returns:
        64 hex digits.

    Example:
        >>> import tempfile, os
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> sha256_file(f.name)[:16]
        'ba7816bf8f01cfea'
        >>> os.remove(f.name)
    """
    return file_digests(path)["sha256"]


def copy_hashing(source, sink, limit: int | None = None) -> tuple[str, int]:
    """Copy one open binary file to another; return the sha256 and byte count.

    With ``limit`` at most ``limit + 1`` bytes are copied, so a source longer
    than it says (a zip bomb) is caught without writing it all out.

    Args:
        source: a binary file object to read.
        sink: a binary file object to write.
        limit: the most bytes expected, or None.

    Returns:
        ``(hex sha256, bytes copied)``.

    Example:
        >>> import io
        >>> copy_hashing(io.BytesIO(b"abcdef"), io.BytesIO(), limit=2)[1]
        3
    """
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(1 << 20 if limit is None else min(1 << 20, limit + 1 - size)):
        digest.update(chunk)
        size += len(chunk)
        sink.write(chunk)
        if limit is not None and size > limit:
            break
    return digest.hexdigest(), size
