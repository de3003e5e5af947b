"""Registry and extractors: every backbone builds, pools to feature_dim and names its layers."""

import keras
import numpy as np
import pytest

from vitl.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    build_feature_extractor,
    get_backbone,
    list_backbones,
)

#: Smallest fast input per backbone (InceptionV3 needs at least 75 px).
SMALL = {name: 75 if name == "inceptionv3" else 64 for name in BACKBONES}


@pytest.fixture(scope="module", params=list(BACKBONES))
def extractor(request):
    return build_feature_extractor(request.param, weights=None, input_size=SMALL[request.param])


def test_registry_listing():
    assert list_backbones()[0] == DEFAULT_BACKBONE == "resnet101v2"
    assert set(list_backbones()) == {"resnet101v2", "resnet50v2", "mobilenetv2", "inceptionv3",
                                     "efficientnetb0", "mobilenetv2-tv"}
    assert get_backbone("inceptionv3").input_size == 299
    with pytest.raises(ValueError, match="mobilenetv2-tv"):
        get_backbone("vgg16")


def test_features_have_feature_dim(extractor):
    size = extractor.input_size
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    features = extractor(images)
    assert features.shape == (2, extractor.spec.feature_dim)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    assert extractor.weights.kind == "random"
    assert extractor.fingerprint.startswith("random-")
    assert not extractor.model.get_layer("backbone").trainable


def test_grad_cam_and_unfreezing_layers_exist(extractor):
    spec = extractor.spec
    output = extractor.model.get_layer("backbone").output  # what Grad-CAM explains
    assert len(output.shape) == 4 and output.shape[-1] == spec.feature_dim
    names = [layer.name for layer in extractor.model.get_layer("backbone").layers]
    for prefix in spec.block_prefixes:
        assert any(n.startswith(prefix) for n in names), prefix


def test_preprocessing_maps_pixels_to_the_networks_range():
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
    tf_range = np.asarray(get_backbone("resnet101v2").preprocessing_layer()(pixels))
    np.testing.assert_allclose(tf_range, [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)
    torch_range = np.asarray(get_backbone("mobilenetv2-tv").preprocessing_layer()(pixels))
    expected = [(0.0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1.0 - 0.406) / 0.225]
    np.testing.assert_allclose(torch_range[0, 0, 0], expected, rtol=1e-5)
    raw = np.asarray(get_backbone("efficientnetb0").preprocessing_layer()(pixels))
    np.testing.assert_array_equal(raw, pixels)


@pytest.mark.parametrize("precision, compute", [("bfloat16", "bfloat16"), ("float16", "float16")])
def test_mixed_precision_builds_and_outputs_float32(precision, compute):
    before = keras.config.dtype_policy().name
    fx = build_feature_extractor("mobilenetv2", weights=None, input_size=64, precision=precision)
    assert keras.config.dtype_policy().name == before  # the global policy is restored
    assert fx.precision == precision
    assert fx.model.get_layer("backbone").get_layer("Conv1").compute_dtype == compute
    assert fx.model.get_layer("backbone").get_layer("Conv1").kernel.dtype == "float32"
    features = fx(np.zeros((1, 64, 64, 3), "float32"))
    assert features.dtype == np.float32 and features.shape == (1, 1280)


def test_mixed_precision_loads_weights_like_float32(tmp_path):
    reference = keras.applications.MobileNetV2(include_top=False, weights=None,
                                               input_shape=(64, 64, 3))
    path = tmp_path / "mobilenet.weights.h5"
    reference.save_weights(path)
    fx = build_feature_extractor("mobilenetv2", weights=str(path), input_size=64,
                                 precision="bfloat16")
    assert fx.weights.kind == "file"
    loaded = fx.model.get_layer("backbone").get_layer("block_3_expand").kernel.numpy()
    np.testing.assert_array_equal(loaded, reference.get_layer("block_3_expand").kernel.numpy())


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 16}, "input_size"),
    ({"input_size": 64.0}, "input_size"),
    ({"precision": "int8"}, "precision"),
])
def test_bad_arguments_say_what_to_do(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}: expected .* Fix: "):
        build_feature_extractor("mobilenetv2", weights=None, **kwargs)


def test_no_images_give_no_features():
    fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
    for empty in ([], np.zeros((0, 32, 32, 3))):
        features = fx(empty)
        assert features.shape == (0, 1280) and features.dtype == np.float32


def test_repr_is_one_line_without_keras_or_function_objects():
    from sklearn.base import clone

    from vitl import ImageClassifier

    fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
    text = repr(clone(ImageClassifier(fx)))  # run_grid's classifiers share an extractor
    assert "<" not in text and "0x" not in text and "\n" not in text, text
    assert "FeatureExtractor('mobilenetv2', input_size=32, weights='random'" in text, text
