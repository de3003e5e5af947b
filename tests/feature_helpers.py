"""Shared helpers for tests/test_features.py and tests/test_cache.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder, count: int, start: int = 0, side: int = 40) -> list[Path]:
    """Write ``count`` distinct noise JPEGs ``img_<i>.jpg`` (i from ``start``); return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        pixels = np.random.RandomState(i).randint(0, 256, (side, side, 3)).astype(np.uint8)
        path = folder / f"img_{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def build_extractor(seed: int = 0, size: int = 32, backbone: str = "mobilenetv2",
                    precision: str = "float32"):
    """A random-weights extractor whose fingerprint depends only on ``seed`` (and the rest)."""
    import keras

    from vitl.backbones import build_feature_extractor

    keras.utils.set_random_seed(seed)
    return build_feature_extractor(backbone, weights=None, input_size=size, precision=precision)


def direct_features(extractor, paths) -> np.ndarray:
    """Features computed without vitl.features: read_image, stack, one model call."""
    from vitl.data import read_image

    batch = np.stack([read_image(p, extractor.input_size) for p in paths]).astype(np.float32)
    return np.asarray(extractor.model(batch, training=False), dtype=np.float32)


def assert_features_close(actual, expected) -> None:
    """allclose relative to the features' scale (random MobileNetV2 features are ~1e-12)."""
    scale = float(np.abs(expected).max())
    assert scale > 0, "reference features are all zero: the comparison would be vacuous"
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * scale)


def features_differ(a, b) -> bool:
    """True when two feature arrays differ by more than 1% of their scale."""
    return float(np.abs(np.asarray(a) - b).max()) > 1e-2 * float(np.abs(b).max())
