"""Shared pytest fixtures. Keep them small; add, don't change."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture
def image_folder(tmp_path):
    """A tiny two-class image folder: ``cracked`` (dark) and ``intact`` (light), 6 each.

    Images are 24x16 (width x height) RGB, PNG and JPEG mixed. Returns the root path.
    """
    root = tmp_path / "images"
    for name, grey in [("cracked", 40), ("intact", 210)]:
        (root / name).mkdir(parents=True)
        for i in range(6):
            suffix = "png" if i % 2 else "jpg"
            Image.new("RGB", (24, 16), (grey, grey + i, grey)).save(root / name / f"{i}.{suffix}")
    return root
