"""File hashing shared by the data, dataset and feature-cache layers."""

from __future__ import annotations

import hashlib


def sha256_file(path) -> str:
    """Return the hex sha256 of a file's bytes, read in 1 MiB chunks.

    Example:
        >>> import tempfile, os
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> sha256_file(f.name)[:16]
        'ba7816bf8f01cfea'
        >>> os.remove(f.name)
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
