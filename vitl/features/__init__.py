"""Featurizing images with a frozen backbone, through a persistent feature cache.

:func:`featurize` / :class:`Featurizer` compute (N, D) float32 features aligned
with the input images, streaming only cache misses through the backbone;
:func:`featurize_folder` is the bottleneck phase as its own step (``vitl featurize``,
locally or on Ray); :class:`FeatureCache` is the content-addressed sqlite store shared by every run
using the same folder (``vitl cache info`` / ``vitl cache clear`` manage it).
Importing this package does not import TensorFlow.
"""

from .cache import CacheInfo, FeatureCache, FeatureKey, FeatureSpace, Lookup
from .folder import FolderStats, featurize_folder
from .pipeline import FeatureStats, Featurizer, featurize

__all__ = [
    "CacheInfo", "FeatureCache", "FeatureKey", "FeatureSpace", "FeatureStats", "Featurizer",
    "FolderStats", "Lookup", "featurize", "featurize_folder",
]
