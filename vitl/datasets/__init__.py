"""Data sets: the ML.NET tutorial's SDNET2018 deck sample and a synthetic crack generator.

Both return a plain image folder (one sub-folder per class) that
``vitl.data.load_image_folder`` reads.

- :mod:`vitl.datasets.sdnet`: :func:`sdnet2018_decks` finds the tutorial's zip
  (a mirror folder, then a download), checks its sha256 and unpacks it once,
  crash-safely; :func:`tutorial_data` falls back to synthetic tiles;
  :func:`data_mirror_dir` and :func:`find_sdnet_zip` serve the offline bundles.
- :mod:`vitl.datasets.synthetic`: :func:`make_synthetic_cracks` draws concrete-like
  tiles with and without thin branching cracks, for offline demos, tests and teaching.
"""

from .sdnet import (
    MIRROR_ENV,
    SDNET2018_ATTRIBUTION,
    SDNET2018_CLASSES,
    SDNET2018_SHA256,
    SDNET2018_SIZE,
    SDNET2018_URL,
    SDNET2018_ZIP_NAMES,
    DatasetChecksumError,
    DatasetUnavailableError,
    data_mirror_dir,
    find_sdnet_zip,
    sdnet2018_decks,
    tutorial_data,
)
from .synthetic import SYNTHETIC_MASK_DIR, make_synthetic_cracks, synthetic_mask_path

__all__ = ["MIRROR_ENV", "SDNET2018_ATTRIBUTION", "SDNET2018_CLASSES", "SDNET2018_SHA256",
           "SDNET2018_SIZE", "SDNET2018_URL", "SDNET2018_ZIP_NAMES", "SYNTHETIC_MASK_DIR",
           "DatasetChecksumError", "DatasetUnavailableError", "data_mirror_dir", "find_sdnet_zip",
           "make_synthetic_cracks", "sdnet2018_decks", "synthetic_mask_path", "tutorial_data"]
