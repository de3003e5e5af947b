"""Frozen ImageNet feature extractors and where their weights come from."""

from .extractor import FeatureExtractor, build_feature_extractor
from .registry import BACKBONES, DEFAULT_BACKBONE, BackboneSpec, get_backbone, list_backbones
from .weights import WeightsSource, resolve_weights, sha256_file

__all__ = [
    "BACKBONES", "DEFAULT_BACKBONE", "BackboneSpec", "FeatureExtractor", "WeightsSource",
    "build_feature_extractor", "get_backbone", "list_backbones", "resolve_weights", "sha256_file",
]
