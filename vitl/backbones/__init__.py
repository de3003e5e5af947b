"""Frozen ImageNet feature extractors and where their weights come from."""

from .choose import BACKBONE_ENV, OFFLINE_BACKBONE, BackboneChoice, choose_backbone
from .extractor import FeatureExtractor, build_feature_extractor
from .registry import BACKBONES, DEFAULT_BACKBONE, BackboneSpec, get_backbone, list_backbones
from .weights import (
    WeightsSource,
    WeightsUnavailableError,
    locate_weights,
    resolve_weights,
    sha256_file,
    weights_file_name,
)

__all__ = [
    "BACKBONES",
    "BACKBONE_ENV",
    "DEFAULT_BACKBONE",
    "OFFLINE_BACKBONE",
    "BackboneChoice",
    "BackboneSpec",
    "FeatureExtractor",
    "WeightsSource",
    "WeightsUnavailableError",
    "build_feature_extractor",
    "choose_backbone",
    "get_backbone",
    "list_backbones",
    "locate_weights",
    "resolve_weights",
    "sha256_file",
    "weights_file_name",
]
