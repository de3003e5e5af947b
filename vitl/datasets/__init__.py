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

# Each module's __all__ is the one list of what it exports.
from .sdnet import *
from .synthetic import *
