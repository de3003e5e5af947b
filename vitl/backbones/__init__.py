"""Frozen ImageNet feature extractors and where their weights come from.

The offline ``mobilenetv2-tv`` port (torch-free unpickler, Keras network) lives in
:mod:`vitl.backbones.offline`.
"""

from .extractor import FeatureExtractor, build_feature_extractor
from .registry import (
                       BACKBONES,
                       DEFAULT_BACKBONE,
                       OFFLINE_BACKBONE,
                       BackboneSpec,
                       get_backbone,
                       list_backbones,
)
from .weights import (
                       BACKBONE_ENV,
                       BackboneChoice,
                       WeightsSource,
                       WeightsUnavailableError,
                       choose_backbone,
                       locate_weights,
                       resolve_weights,
                       weights_file_name,
)

__all__ = [
    "BACKBONES", "BACKBONE_ENV", "DEFAULT_BACKBONE", "OFFLINE_BACKBONE", "BackboneChoice",
    "BackboneSpec", "FeatureExtractor", "WeightsSource", "WeightsUnavailableError",
    "build_feature_extractor", "choose_backbone", "get_backbone", "list_backbones",
    "locate_weights", "resolve_weights", "weights_file_name",
]
