"""ImageClassifier as a scikit-learn estimator: params, clone, set_params, hold-out, unfitted use."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from vitl import ImageClassifier
from vitl.augment import AugmentPolicy
from vitl.datasets import make_synthetic_cracks
from vitl.finetune import FineTuneConfig
from vitl.training import HeadConfig

TINY = {"weights": None, "input_size": 48, "cache": None, "verbose": 0}


def test_constructor_stores_arguments_and_defaults_are_head_configs():
    clf = ImageClassifier()
    assert clf.get_params(deep=False) == {
        "backbone": "auto", "weights": "imagenet", "input_size": None, "precision": "float32",
        "head": None, "augment": 0, "fine_tune": None, "validation_fraction": 0.1, "seed": 0,
        "cache": "default", "verbose": 1, "callbacks": (), "on_epoch": None}
    head, policy, tune = clf._settings()
    assert head == HeadConfig() and policy is None and tune is None
    head, policy, tune = ImageClassifier(head=HeadConfig.mlnet(seed=9), augment=3, seed=2,
                                         fine_tune=FineTuneConfig(blocks=1))._settings()
    assert head == HeadConfig.mlnet(seed=2)  # the classifier's seed wins
    assert policy == AugmentPolicy(views=3) and (tune.blocks, tune.seed) == (1, 2)
    assert ImageClassifier(augment=AugmentPolicy(views=0))._settings()[1] is None


def test_clone_gives_an_unfitted_copy_with_equal_params(tmp_path):
    folder = make_synthetic_cracks(tmp_path / "s", 4, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", head=HeadConfig(epochs=2), augment=1, **TINY).fit(folder)
    copy = clone(clf)
    assert repr(copy.get_params()) == repr(clf.get_params())
    assert copy.head == clf.head and copy.head is not clf.head
    with pytest.raises(NotFittedError, match="is not fitted yet. Call 'fit'"):
        copy.predict(folder)
    assert "head=HeadConfig(epochs=2" in repr(copy)


def test_set_params_changes_training(tmp_path):
    folder = make_synthetic_cracks(tmp_path / "s", 4, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", head=HeadConfig(epochs=5, early_stopping=False), **TINY)
    assert len(clf.fit(folder).history_) == 5
    assert clf.set_params(head=HeadConfig(epochs=3)) is clf
    assert len(clf.fit(folder).history_) == 3 and clf.fit_info_["head"]["epochs"] == 3
    with pytest.raises(ValueError, match="Invalid parameter 'epochs'"):
        clf.set_params(epochs=3)
    with pytest.raises(ValueError, match=r"head__epochs: expected ImageClassifier's own "
                                          r"parameter names.*Fix: pass head=\.\.\. whole"):
        clf.set_params(head__epochs=3)


def test_mlnet_preset_through_the_classifier():
    assert ImageClassifier.mlnet()._settings()[0] == HeadConfig.mlnet()
    assert ImageClassifier.mlnet("mobilenetv2").backbone == "mobilenetv2"


@pytest.mark.parametrize("params, message", [
    ({"head": {"epochs": 3}}, "head: expected a vitl HeadConfig"),
    ({"fine_tune": 2}, "fine_tune: expected a vitl FineTuneConfig"),
    ({"augment": "strong"}, "augment: expected an integer >= 0"),
    ({"augment": -1}, "augment: expected an integer >= 0"),
    ({"head": HeadConfig(epochs=0)}, "epochs: expected an integer >= 1"),
    ({"verbose": "loud"}, "verbose: expected 0"),
])
def test_bad_settings_are_refused_before_any_work(params, message):
    with pytest.raises(ValueError, match=message):
        ImageClassifier(**params).fit("no/such/folder")


def test_auto_backbone_is_resolved_at_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITL_BACKBONE", "mobilenetv2")
    folder = make_synthetic_cracks(tmp_path / "s", 3, size=48, verbose=0)
    clf = ImageClassifier(head=HeadConfig(epochs=1), **{**TINY, "verbose": 1}).fit(folder)
    assert clf.backbone == "auto" and clf.fit_info_["backbone"] == "mobilenetv2"
    assert "backbone: mobilenetv2 (from $VITL_BACKBONE)" in capsys.readouterr().out


@pytest.mark.parametrize("fraction", [-0.1, 0.95, "10%"])
def test_bad_validation_fraction(tmp_path, fraction):
    folder = make_synthetic_cracks(tmp_path / "s", 5, size=48, verbose=0)
    with pytest.raises(ValueError, match="validation_fraction: expected a number in"):
        ImageClassifier("mobilenetv2", validation_fraction=fraction, **TINY).fit(folder)


def test_fit_holds_out_a_stratified_validation_fraction(tmp_path):
    folder = make_synthetic_cracks(tmp_path / "s", 10, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", head=HeadConfig(epochs=2), validation_fraction=0.2,
                          **TINY).fit(folder)
    counts = clf.fit_info_["counts"]
    assert counts == {"train": {"cracked": 8, "uncracked": 8},
                      "validation": {"cracked": 2, "uncracked": 2}}
    assert clf.fit_info_["validation_fraction"] == 0.2
    assert clf.history_.has_validation and clf.history_.monitor == "val_loss"
    clf.set_params(validation_fraction=0.0).fit(folder)
    assert clf.fit_info_["counts"]["validation"] == {"cracked": 0, "uncracked": 0}
    assert not clf.history_.has_validation and clf.history_.monitor == "loss"


def test_numpy_numbers_in_the_settings_are_saved_as_numbers(tmp_path):
    import numpy as np

    folder = make_synthetic_cracks(tmp_path / "s", 3, size=32, verbose=0)
    head = HeadConfig(epochs=np.int64(1), learning_rate=np.float32(0.01))  # e.g. from np.arange
    clf = ImageClassifier("mobilenetv2", head=head, **{**TINY, "input_size": 32}).fit(folder)
    loaded = ImageClassifier.load(clf.save(tmp_path / "m.keras"), cache=None, verbose=0)
    assert loaded.head.epochs == 1 and loaded.head.learning_rate == pytest.approx(0.01)
    assert loaded.head.validate() == loaded.head  # not the text "1" and "0.01"
    assert len(loaded.continue_training(folder).fit_info_["continued"]) == 1


def test_classify_skips_and_names_unreadable_files(tmp_path):
    folder = make_synthetic_cracks(tmp_path / "s", 4, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", head=HeadConfig(epochs=1), **TINY).fit(folder)
    new = tmp_path / "new"
    new.mkdir()
    good = sorted(folder.rglob("*.png"))[:2]
    for i, path in enumerate(good):
        (new / f"{i}.png").write_bytes(path.read_bytes())
    (new / "bad.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"skipped .*bad\.png: not an image"):
        predictions = clf.classify(new, csv_path=tmp_path / "p.csv")
    assert [p.path for p in predictions] == [str(new / "0.png"), str(new / "1.png")]
    assert [p.label for p in predictions] == list(clf.predict([new / "0.png", new / "1.png"]))
    assert "bad.png" not in (tmp_path / "p.csv").read_text()
    with pytest.raises(FileNotFoundError, match=r"image file: expected an existing file, "
                                                r"received '.*typo\.png'. Fix: check the path"):
        clf.classify([new / "0.png", new / "typo.png"])  # a typo is not skipped


def test_evaluate_on_other_classes_names_them_plainly(tmp_path):
    folder = make_synthetic_cracks(tmp_path / "s", 4, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", head=HeadConfig(epochs=1), **TINY).fit(folder)
    other = make_synthetic_cracks(tmp_path / "o", 2, size=48, class_names=("rust", "uncracked"),
                                  verbose=0)
    with pytest.raises(ValueError) as caught:
        clf.evaluate(other)
    message = str(caught.value)
    assert message.startswith("test classes: expected names among ['cracked', 'uncracked']")
    assert "received ['rust']" in message and "np.str_" not in message


def test_sklearn_style_arrays_in_fit_say_to_save_them_as_class_folders():
    pixels, labels = np.zeros((4, 48, 48, 3), np.uint8), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError) as raised:
        ImageClassifier("mobilenetv2", **TINY).fit(pixels, labels)
    message = str(raised.value)
    assert "received 'a numpy array of shape (4, 48, 48, 3)'" in message
    assert "one sub-folder per class" in message and "split fractions" not in message


@pytest.mark.parametrize("pixels, received, fix", [
    (np.zeros((2, 48, 48, 1), np.uint8), "an array of shape (48, 48, 1)", "np.repeat"),
    (np.full((2, 48, 48, 3), 0.5), "floats in 0..1", "multiply by 255"),
])
def test_predict_names_pixel_arrays_it_cannot_use(tmp_path, pixels, received, fix):
    folder = make_synthetic_cracks(tmp_path / "s", 3, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", head=HeadConfig(epochs=1), **TINY).fit(folder)
    with pytest.raises(ValueError) as raised:
        clf.predict(pixels)
    message = str(raised.value)
    assert message.startswith("images: expected RGB pixels 0..255") and received in message, message
    assert fix in message and "transform" not in message, message


def test_loading_a_file_that_is_no_model_says_which_file_to_pass(tmp_path):
    (tmp_path / "predictions.keras").write_text("path,label\n")
    with pytest.raises(ValueError) as raised:
        ImageClassifier.load(tmp_path / "predictions.keras")
    message = str(raised.value)
    assert "File is not a zip file" in message and "ImageClassifier.save" in message, message
    assert "retrain with this vitl version" not in message, message
