"""Build a frozen feature extractor: RGB pixels (0..255) in, pooled features out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import keras
import numpy as np

from .._errors import check_int
from .._tensorflow import filtered_native_stderr
from .precision import resolve_precision
from .registry import BackboneSpec, get_backbone
from .weights import WeightsSource, resolve_weights

#: Images per backbone call, always: a short last batch is padded with zeros. oneDNN picks
#: kernels by batch shape, so one fixed shape makes every vector's bits independent of its
#: batch-mates; 16 was the fastest size measured (benchmarks/README.md, "Backbones").
BACKBONE_BATCH = 16


@dataclass
class FeatureExtractor:
    """A frozen backbone with its preprocessing and global average pooling.

    Attributes:
        spec: the registry entry.
        model: Keras model, input ``(input_size, input_size, 3)`` float32 RGB
            in 0..255, output ``(feature_dim,)``. The backbone is the nested
            layer named ``"backbone"``.
        input_size: side of the square input in pixels.
        weights: where the weights came from (kind, path, sha256).
        precision: ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    The example below shows the properties ``name``, ``feature_dim`` and ``fingerprint``.

    Example:
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> fx.name, fx.feature_dim, fx.fingerprint[:7], len(fx.fingerprint)
        ('mobilenetv2', 1280, 'random-', 23)
        >>> build_feature_extractor("mobilenetv2-tv", input_size=32).fingerprint
        'b03531047ffacf1e'
    """

    spec: BackboneSpec
    model: keras.Model
    input_size: int
    weights: WeightsSource
    precision: str = "float32"

    @property
    def name(self) -> str:
        """The backbone's registry name (example: the class docstring)."""
        return self.spec.name

    @property
    def feature_dim(self) -> int:
        """The length of a feature vector (example: the class docstring)."""
        return self.spec.feature_dim

    @property
    def fingerprint(self) -> str:
        """A short id of the exact weights, part of every feature-cache key.

        The sha256 of the weights file (16 hex digits), or ``"random-"`` and the
        hash of the random weights themselves (example: the class docstring).
        """
        if self.weights.sha256:
            return self.weights.sha256[:16]
        weights = b"".join(w.numpy().tobytes() for w in self.model.get_layer("backbone").weights)
        return "random-" + hashlib.sha256(weights).hexdigest()[:16]

    def __repr__(self) -> str:  # the name, not the Keras model and registry entry inside
        return (f"FeatureExtractor({self.name!r}, input_size={self.input_size}, "
                f"weights={self.weights.kind!r}, precision={self.precision!r})")

    def __call__(self, images) -> np.ndarray:
        """Featurize images already at ``input_size`` (RGB, 0..255), in fixed-size batches.

        Every backbone call sees exactly :data:`BACKBONE_BATCH` images (the last
        batch is padded), so a vector does not depend on which images shared its
        batch or how many there were.

        Args:
            images: array ``(N, input_size, input_size, 3)``, any real dtype.

        Returns:
            float32 array ``(N, feature_dim)``.

        Example:
            >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
            >>> x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3))
            >>> bool((fx(x[:1]) == fx(x)[:1]).all())
            True
        """
        images = np.asarray(images, dtype=np.float32)
        padded = np.pad(images, [(0, -len(images) % BACKBONE_BATCH)] + [(0, 0)] * (images.ndim - 1))
        # predict_on_batch keeps its traced function on the model: later calls skip the trace.
        batches = [np.asarray(self.model.predict_on_batch(padded[start:start + BACKBONE_BATCH]))
                   for start in range(0, len(padded), BACKBONE_BATCH)]
        vectors = np.concatenate([np.empty((0, self.feature_dim)), *batches], dtype=np.float32)
        return vectors[:len(images)]


def build_feature_extractor(backbone: str | BackboneSpec = "resnet101v2",
                            weights: str | None = "imagenet", input_size: int | None = None,
                            precision: str = "float32") -> FeatureExtractor:
    """Build a frozen, pooled feature extractor for a registered backbone.

    Args:
        backbone: a name from :func:`vitl.backbones.list_backbones`.
        weights: ``"imagenet"`` (resolved offline-first, see
            :func:`vitl.backbones.resolve_weights`), a path to a Keras weights
            file, or ``None`` for random initialisation (plumbing tests only:
            random features are useless for classification).
        input_size: square input side; defaults to the backbone's own. Smaller
            sizes make fast tests (``weights=None`` or any size >= 32).
        precision: ``"float32"``, ``"bfloat16"`` (CPUs with AVX512-BF16/AMX),
            ``"float16"`` (GPUs) for the frozen backbone, or ``"auto"``: the fastest
            on this machine (:func:`vitl.backbones.precision.resolve_precision`,
            measured once); features are float32.

    Returns:
        A :class:`FeatureExtractor`.

    Raises:
        ValueError: unknown backbone, bad input size or precision.

    Example:
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=64)
        >>> fx.model.output_shape
        (None, 1280)
        >>> fx.weights.kind
        'random'
    """
    spec = get_backbone(backbone)
    precision = resolve_precision(precision, spec.name)  # validates; "auto": measured once
    size = check_int("input_size", spec.input_size if input_size is None else input_size, 32,
                     f"omit it to use {spec.name}'s own {spec.input_size}")
    source = resolve_weights(spec, weights)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision if precision == "float32" else f"mixed_{precision}")
    try:
        with filtered_native_stderr():  # the first ops: CPU-feature notices on some machines
            base = spec.constructor(include_top=False, weights=source.path,
                                    input_shape=(size, size, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    base.name = "backbone"
    base.trainable = False

    inputs = keras.Input((size, size, 3), name="image")
    x = base(spec.preprocessing_layer()(inputs), training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool", dtype="float32")(x)
    model = keras.Model(inputs, x, name=f"{spec.name.replace('-', '_')}_features")
    return FeatureExtractor(spec, model, size, source, precision)
