"""Settings shared by the teaching notebooks, so they show inspection, not test plumbing.

The notebooks in ``notebooks/`` also run as tests (``make test`` sets
``VITL_FAST=1``): the same steps on fewer photos and epochs. One call,
:func:`workshop_settings`, holds that switch and the seed; :func:`image_credit`
gives the caption line for whichever photos a notebook ended up using.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._errors import check_fraction

__all__ = ["FAST_ENV", "WorkshopSettings", "image_credit", "workshop_settings"]

#: Environment variable that switches the notebooks to fast mode (set by ``make test``).
FAST_ENV = "VITL_FAST"


@dataclass(frozen=True)
class WorkshopSettings:
    """The seed and sizes a notebook uses; built by :func:`workshop_settings`.

    Attributes:
        fast: True when the test suite runs the notebook (``VITL_FAST=1``).
        seed: the one seed for splits, training and plots.
        epochs: the most epochs to train (early stopping usually ends sooner).
        fast_share: share of the photos kept by :meth:`sample` in fast mode.
    """

    fast: bool
    seed: int = 0
    epochs: int = 200
    fast_share: float = 0.15

    def pick(self, normal, fast):
        """Return ``normal``, or ``fast`` in fast mode.

        Args:
            normal: the value for a full run.
            fast: the value for a test run.

        Returns:
            One of the two.

        Example:
            >>> WorkshopSettings(fast=True).pick(normal=4, fast=2)
            2
        """
        return fast if self.fast else normal

    def sample(self, images, fast_share: float | None = None):
        """Return ``images``, or in fast mode every k-th photo of each class.

        A stride rather than a hashed :func:`vitl.split`: a later
        ``split(sample, ..., seed=seed)`` would otherwise sort the sample by the
        same hash and put nearly all of it into one part.

        Args:
            images: a :class:`vitl.ImageCollection`.
            fast_share: the share kept in fast mode; default ``self.fast_share``.

        Returns:
            All of ``images`` normally; about ``fast_share`` of each class in fast mode.

        Example:
            >>> from vitl import ImageCollection
            >>> paths = [f"/d/{c}/{i}.jpg" for c in "ab" for i in range(100)]
            >>> images = ImageCollection.from_paths(paths, [p[3] for p in paths], ["a", "b"])
            >>> len(WorkshopSettings(fast=False).sample(images))
            200
            >>> len(WorkshopSettings(fast=True).sample(images)), len(WorkshopSettings(fast=True).sample(images, 0.5))
            (30, 100)
        """
        if not self.fast:
            return images
        share = check_fraction("fast_share", self.fast_share if fast_share is None else fast_share)
        step = max(1, round(1 / share)) if share > 0 else len(images)
        keep = [np.flatnonzero(images.labels == c)[::step] for c in range(len(images.class_names))]
        return images.subset(np.sort(np.concatenate(keep)))


def workshop_settings(fast: bool | None = None, seed: int = 0) -> WorkshopSettings:
    """Return the notebooks' settings: 200 epochs, or 40 epochs and fewer photos in fast mode.

    Args:
        fast: force fast mode on or off; default: on when ``$VITL_FAST`` is ``1``.
        seed: the seed every notebook uses.

    Returns:
        A :class:`WorkshopSettings`.

    Example:
        >>> settings = workshop_settings(fast=False)
        >>> settings.seed, settings.epochs, settings.pick(normal=30, fast=10)
        (0, 200, 30)
        >>> workshop_settings(fast=True).epochs
        40
    """
    if fast is None:
        fast = os.environ.get(FAST_ENV) == "1"
    return WorkshopSettings(fast=bool(fast), seed=seed, epochs=40 if fast else 200)


def image_credit(folder) -> str:
    """Return one caption line crediting the photos in ``folder``.

    The first line of the folder's ``ATTRIBUTION.md`` (the SDNET2018 sample
    ships one; its CC BY 4.0 licence asks for it), a note for
    :func:`vitl.make_synthetic_cracks` tiles, else the folder's name.

    Args:
        folder: the image folder.

    Returns:
        One line such as ``"Images: SDNET2018, ... CC BY 4.0, ..."``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> image_credit(folder) == f"Images: {folder.name}"
        True
        >>> _ = (folder / "ATTRIBUTION.md").write_text("Images: X, CC BY 4.0\\n\\nmore")
        >>> image_credit(folder)
        'Images: X, CC BY 4.0'
    """
    folder = Path(folder)
    attribution = folder / "ATTRIBUTION.md"
    text = attribution.read_text(encoding="utf-8").strip() if attribution.is_file() else ""
    if text:
        return text.splitlines()[0].strip()
    if (folder / "tiles.csv").is_file():
        return "Images: synthetic concrete tiles drawn by vitl.make_synthetic_cracks (not real photos)"
    return f"Images: {folder.name}"
