"""Fine-tuning the top backbone blocks: which layers train, a new cache identity, save/load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vitl.augment import AugmentPolicy
from vitl.backbones import build_feature_extractor
from vitl.classifier import ImageClassifier
from vitl.data import load_image_folder
from vitl.datasets import make_synthetic_cracks
from vitl.features import Featurizer
from vitl.finetune import (
    FineTuneConfig,
    fine_tune,
    set_trainable_blocks,
    top_block_layers,
    weights_digest,
)
from vitl.training import HeadConfig, build_head


@pytest.fixture(scope="module")
def cracks(tmp_path_factory):
    root = make_synthetic_cracks(tmp_path_factory.mktemp("ft") / "s", 6, size=64, verbose=0)
    return load_image_folder(root, verbose=0)


def _extractor(seed=0):
    keras.utils.set_random_seed(seed)
    return build_feature_extractor("mobilenetv2", weights=None, input_size=64)


def _weights_by_layer(extractor):
    return {layer.name: [np.array(w) for w in layer.get_weights()]
            for layer in extractor.model.get_layer("backbone").layers if layer.weights}


def test_top_blocks_follow_the_registry_prefixes():
    fx = _extractor()
    names = {layer.name for layer in top_block_layers(fx, 2)}
    assert names and all(n.startswith(("block_16_", "Conv_1")) for n in names)
    assert any(n.startswith("block_16_") for n in names) and "Conv_1" in names
    assert "block_1_expand" not in names
    with pytest.raises(ValueError, match="blocks: expected at most 17"):
        top_block_layers(fx, 18)


def test_unfreezing_keeps_batch_norm_and_lower_blocks_frozen():
    fx = _extractor()
    unfrozen = set_trainable_blocks(fx, 2)
    backbone = fx.model.get_layer("backbone")
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable == set(unfrozen)
    assert {"Conv_1", "block_16_project", "block_16_depthwise"} <= trainable
    assert not any(isinstance(backbone.get_layer(n), keras.layers.BatchNormalization)
                   for n in trainable)
    assert not backbone.get_layer("block_15_project").trainable
    set_trainable_blocks(fx, 0)
    assert not backbone.trainable_weights


@pytest.mark.slow
def test_fine_tune_trains_only_the_top_blocks_of_a_copy(cracks):
    fx = _extractor()
    before = _weights_by_layer(fx)
    fingerprint = fx.fingerprint
    result = fine_tune(fx, build_head(1280, 2), cracks, cracks.labels,
                       config=FineTuneConfig(blocks=2, epochs=2, learning_rate=1e-3),
                       verbose=False)
    # the extractor passed in is untouched: same weights, same cache identity
    assert fx.fingerprint == fingerprint
    for name, values in _weights_by_layer(fx).items():
        assert all(np.array_equal(a, b) for a, b in zip(values, before[name]))
    # without validation data all epochs run and the last weights are kept
    assert result.improved and len(result.history) == 2
    after = _weights_by_layer(result.extractor)
    changed = {name for name, values in after.items()
               if not all(np.array_equal(a, b) for a, b in zip(values, before[name]))}
    assert changed and changed <= set(result.unfrozen)
    assert "Conv_1" in changed
    backbone = result.extractor.model.get_layer("backbone")
    assert not any(isinstance(backbone.get_layer(n), keras.layers.BatchNormalization)
                   for n in changed)  # BatchNorm weights and moving statistics kept
    # a new cache identity that hashes the weights
    assert result.extractor.weights.kind == "fine-tuned"
    assert result.extractor.weights.sha256 == weights_digest(result.extractor)
    assert result.extractor.fingerprint != fingerprint
    assert not result.extractor.model.get_layer("backbone").trainable_weights  # frozen again


@pytest.mark.slow
def test_fine_tune_with_augmentation_and_validation_records_history(cracks):
    fx = _extractor()
    result = fine_tune(fx, build_head(1280, 2), cracks, cracks.labels, cracks, cracks.labels,
                       config=FineTuneConfig(blocks=1, epochs=2, patience=5, seed=3,
                                             schedule="constant"),
                       policy=AugmentPolicy(), verbose=False)
    assert result.initial is not None and set(result.initial) == {"val_loss", "val_accuracy"}
    rows = result.history.rows
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(r["val_accuracy"] is not None and r["learning_rate"] == pytest.approx(1e-4)
               for r in rows)
    if not result.improved:  # nothing beat head-only: the originals come back unchanged
        assert result.extractor is fx


def test_classifier_checks_fine_tune_settings_before_any_work(cracks, monkeypatch):
    def no_featurizing(*args, **kwargs):
        raise AssertionError("featurized before checking the fine-tuning settings")

    monkeypatch.setattr(Featurizer, "featurize", no_featurizing)
    with pytest.raises(ValueError, match="blocks: expected at most 17"):
        ImageClassifier("mobilenetv2", weights=None, input_size=64, cache=None, verbose=0,
                        fine_tune=FineTuneConfig(blocks=18)).fit(cracks)
    with pytest.raises(ValueError, match="blocks: expected an integer >= 1"):
        ImageClassifier("mobilenetv2", fine_tune=FineTuneConfig(blocks=-1)).fit(cracks)
    assert ImageClassifier("mobilenetv2")._settings()[2] is None
    config = ImageClassifier("mobilenetv2", seed=2, fine_tune=FineTuneConfig(
        blocks=3, epochs=4, learning_rate=3e-5))._settings()[2]
    assert (config.blocks, config.epochs, config.learning_rate, config.seed) == (3, 4, 3e-5, 2)


def test_warmup_cosine_ramps_up_over_the_first_epoch_then_decays():
    config = FineTuneConfig(epochs=5, learning_rate=1e-4, schedule="warmup_cosine").validate()
    schedule = config.learning_rate_schedule(steps_per_epoch=10)
    rate = {step: float(schedule(step)) for step in (0, 5, 10, 30, 50)}
    assert rate[0] == 0.0 and rate[5] == pytest.approx(5e-5)
    assert rate[10] == pytest.approx(1e-4)
    assert 0 < rate[30] < 1e-4 and rate[50] == pytest.approx(0.0, abs=1e-9)
    constant = FineTuneConfig(learning_rate=1e-4, schedule="constant").make_optimizer(10)
    assert float(constant.learning_rate) == pytest.approx(1e-4)


@pytest.mark.parametrize("as_array", [False, True])
def test_fine_tune_refuses_mismatched_labels(cracks, as_array):
    fx = _extractor()
    # a numpy array of paths too: the labels' check runs (a one-line error), not numpy's
    # "truth value is ambiguous"
    images = np.array([str(p) for p in cracks.paths]) if as_array else cracks
    with pytest.raises(ValueError, match="train / y_train: expected one label per image"):
        fine_tune(fx, build_head(1280, 2), images, cracks.labels[:3],
                  config=FineTuneConfig(blocks=1), verbose=False)
    with pytest.raises(ValueError, match="y_val: expected one label per validation image"):
        fine_tune(fx, build_head(1280, 2), images, cracks.labels, images, None,
                  config=FineTuneConfig(blocks=1), verbose=False)
    with pytest.raises(ValueError, match="verbose"):
        fine_tune(fx, build_head(1280, 2), cracks, cracks.labels,
                  config=FineTuneConfig(blocks=1), verbose="loud")


@pytest.mark.parametrize("kwargs, word", [
    ({"blocks": 0}, "blocks"), ({"schedule": "step"}, "schedule"), ({"learning_rate": 0}, "learning_rate"),
    ({"optimizer": "rmsprop"}, "optimizer"), ({"momentum": 1.5}, "momentum"),
    ({"keep": "last"}, "keep"),
])
def test_bad_fine_tune_settings_say_how_to_fix(kwargs, word):
    with pytest.raises(ValueError, match=f"{word}: expected .* Fix:"):
        FineTuneConfig(**kwargs).validate()


def test_fine_tune_config_dict_round_trip_rejects_unknown_keys():
    config = FineTuneConfig(blocks=3, optimizer="sgd")
    assert FineTuneConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"FineTuneConfig keys: expected .*\['class_weight'\].* Fix:"):
        FineTuneConfig.from_dict({"class_weight": None})


@pytest.fixture(scope="module")
def tuned(cracks, tmp_path_factory):
    """A classifier whose fine-tuned backbone was kept (keep="best": random-weight features
    are ~1e-12, so nothing here can improve, but the plumbing must still be exercised)."""
    cache = tmp_path_factory.mktemp("cache")
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=64, head=HeadConfig(epochs=3),
                          fine_tune=FineTuneConfig(blocks=2, epochs=3, learning_rate=1e-3,
                                                   keep="best"),
                          cache=cache, verbose=0)
    clf.fit(cracks, cracks)
    assert clf.fit_info_["fine_tune"]["kept"], "fixture needs fine-tuning that was kept"
    return clf, cache


@pytest.mark.slow
def test_classifier_fine_tunes_and_records_it(tuned):
    clf, _ = tuned
    info = clf.fit_info_
    assert info["weights"]["kind"] == "fine-tuned"
    assert info["fingerprint"] != info["base_fingerprint"]
    assert info["fine_tune"]["blocks"] == 2 and info["fine_tune"]["learning_rate"] == 1e-3
    assert info["fine_tune"]["epochs_run"] == len(clf.fine_tune_history_) >= 1
    assert len(clf.history_) == 3  # the head phase keeps its own history


@pytest.mark.slow
def test_fine_tuned_features_never_come_from_the_stale_cache(tuned, cracks, tmp_path):
    clf, _ = tuned
    keras.utils.set_random_seed(0)
    base = build_feature_extractor("mobilenetv2", weights=None, input_size=64)
    assert base.fingerprint == clf.fit_info_["base_fingerprint"]
    paths = cracks.paths[:4]
    Featurizer(base, cache=tmp_path, verbose=0).featurize(paths)  # the stale entries
    tuned_featurizer = Featurizer(clf.extractor_, cache=tmp_path, verbose=0)
    assert tuned_featurizer.space() != Featurizer(base, cache=None).space()
    features = tuned_featurizer.featurize(paths)
    assert tuned_featurizer.last_stats.hits == 0 and tuned_featurizer.last_stats.computed == 4
    direct = clf.featurize(np.stack([_read(p) for p in paths]))
    np.testing.assert_allclose(features, direct, rtol=1e-4,
                               atol=1e-5 * float(np.abs(direct).max()))
    tuned_featurizer.featurize(paths)
    assert tuned_featurizer.last_stats.hits == 4  # and its own entries are reused


@pytest.mark.slow
def test_fine_tuned_model_saves_loads_and_exports_like_any(tuned, cracks, tmp_path):
    clf, cache = tuned
    path = clf.save(tmp_path / "tuned.keras")
    loaded = ImageClassifier.load(path, cache=cache, verbose=0)
    np.testing.assert_allclose(loaded.predict_proba(cracks), clf.predict_proba(cracks), atol=1e-6)
    assert loaded.extractor_.fingerprint == clf.extractor_.fingerprint
    assert loaded.fine_tune == clf.fine_tune and loaded.fine_tune.blocks == 2
    assert loaded.fine_tune_history_.rows == clf.fine_tune_history_.rows
    pixels = np.stack([_read(p) for p in cracks.paths[:3]]).astype(np.float32)
    np.testing.assert_allclose(loaded.model_.predict(pixels, verbose=0),
                               clf.predict_proba(cracks.paths[:3]), atol=1e-5)
    exported = loaded.export(tmp_path / "export", format="savedmodel")
    assert exported.exists()


def _read(path):
    from vitl.data import read_image

    return read_image(path, 64)


def test_fit_interrupted_while_fine_tuning_leaves_the_classifier_unfitted(cracks, monkeypatch):
    from sklearn.exceptions import NotFittedError

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C during the (long) fine-tuning phase

    monkeypatch.setattr("vitl.classifier.fine_tune", interrupted)
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None, verbose=0,
                          head=HeadConfig(epochs=1), fine_tune=FineTuneConfig(blocks=1))
    with pytest.raises(KeyboardInterrupt):
        clf.fit(cracks)
    assert not [name for name in vars(clf) if name.endswith("_")]
    with pytest.raises(NotFittedError, match="is not fitted yet. Call 'fit'"):
        clf.predict(cracks)
