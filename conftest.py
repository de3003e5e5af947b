"""Root pytest configuration: applies to tests/, doctests in vitl/ and notebooks."""

from __future__ import annotations

import importlib.util
import os

import pytest

# Notebook kernels inherit this: fewer images and epochs, the same steps (see notebooks/).
os.environ.setdefault("VITL_FAST", "1")


@pytest.fixture(autouse=True, scope="session")
def _isolated_vitl_home(tmp_path_factory):
    """Keep tests away from the user's ~/.vitl: one fresh home (weights, cache) per session.

    Shared by the whole session so the mobilenetv2-tv conversion happens once.
    """
    saved = {k: os.environ.get(k) for k in ("VITL_HOME", "VITL_CACHE", "VITL_DATA")}
    home = tmp_path_factory.mktemp("vitl-home")
    os.environ["VITL_HOME"] = str(home)
    os.environ["VITL_CACHE"] = str(home / "cache")
    os.environ["VITL_DATA"] = str(home / "data")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# Feature shards are Parquet files: their doctests need pyarrow (the `ray` extra, which the
# `test` extra includes, so `make test` runs them).
collect_ignore = [] if importlib.util.find_spec("pyarrow") else ["vitl/features/shards.py"]
