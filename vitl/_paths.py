"""Where vitl keeps things: VITL_HOME (weights, bundles), the data folder and the feature cache."""

from __future__ import annotations

import os
from pathlib import Path

#: The project checkout's ``data/`` folder when vitl runs from a clone, else None.
_REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def vitl_home() -> Path:
    """Return vitl's home folder: ``$VITL_HOME``, else ``~/.vitl``.

    Weights (``weights/``) and downloaded data sets live below it unless a
    project ``data/`` folder is used.

    Returns:
        The folder (it may not exist yet).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"VITL_HOME": "/tmp/vitl-doc-home"}):
        ...     str(vitl_home())
        '/tmp/vitl-doc-home'
    """
    return _from_env("VITL_HOME", Path.home() / ".vitl")


def weights_dir() -> Path:
    """Return the folder vitl looks in for weights files: ``vitl_home()/weights``.

    Returns:
        The folder (it may not exist yet).

    Example:
        >>> weights_dir().name
        'weights'
    """
    return vitl_home() / "weights"


def data_dir() -> Path:
    """Return where data sets are unpacked: ``$VITL_DATA``, the checkout's ``data/`` or ``~/.vitl/data``.

    Returns:
        ``$VITL_DATA`` if set, else the project checkout's ``data/`` folder when vitl
        runs from a clone, else ``vitl_home()/data``.

    Example:
        >>> data_dir().name
        'data'
    """
    return _from_env("VITL_DATA", _REPO_DATA if _REPO_DATA.is_dir() else vitl_home() / "data")


def default_cache_dir() -> Path:
    """Return the shared feature-cache folder: ``$VITL_CACHE``, else ``vitl_home()/cache``.

    Returns:
        The folder (it may not exist yet).

    Example:
        >>> import os
        >>> os.environ["VITL_CACHE"] = "/tmp/vitl-doc-cache"
        >>> str(default_cache_dir())
        '/tmp/vitl-doc-cache'
        >>> del os.environ["VITL_CACHE"]
    """
    return _from_env("VITL_CACHE", vitl_home() / "cache")
