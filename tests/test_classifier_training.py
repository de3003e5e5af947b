"""ImageClassifier's training settings: HeadConfig's defaults, validation_fraction hold-out."""

from __future__ import annotations

import inspect

import pytest

from vitl import ImageClassifier
from vitl.datasets import make_synthetic_cracks
from vitl.training import HeadConfig


def test_classifier_head_defaults_are_head_config_defaults():
    defaults = {name: p.default for name, p in
                inspect.signature(ImageClassifier.__init__).parameters.items()}
    shared = [name for name in HeadConfig().to_dict() if name in defaults]
    assert len(shared) >= 15
    assert {n: defaults[n] for n in shared} == {n: getattr(HeadConfig(), n) for n in shared}
    assert ImageClassifier().head_config() == HeadConfig()
    assert defaults["validation_fraction"] == 0.1


def test_mlnet_preset_through_the_classifier():
    settable = set(ImageClassifier().get_params())
    params = {k: v for k, v in HeadConfig.mlnet().to_dict().items() if k in settable}
    assert ImageClassifier(**params).head_config() == HeadConfig.mlnet()


@pytest.mark.parametrize("fraction", [-0.1, 0.95, "10%"])
def test_bad_validation_fraction(tmp_path, fraction):
    folder = make_synthetic_cracks(tmp_path / "s", 5, size=48, verbose=0)
    with pytest.raises(ValueError, match="validation_fraction: expected a number in"):
        ImageClassifier("mobilenetv2", weights=None, input_size=48, cache=None, verbose=False,
                        validation_fraction=fraction).fit(folder)


def test_fit_holds_out_a_stratified_validation_fraction(tmp_path):
    folder = make_synthetic_cracks(tmp_path / "s", 10, size=48, verbose=0)
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=48, epochs=2, cache=None,
                          verbose=False, validation_fraction=0.2).fit(folder)
    counts = clf.fit_info_["counts"]
    assert counts == {"train": {"cracked": 8, "uncracked": 8},
                      "validation": {"cracked": 2, "uncracked": 2}}
    assert clf.fit_info_["validation_fraction"] == 0.2
    assert clf.history_.has_validation and clf.history_.monitor == "val_loss"
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=48, epochs=2, cache=None,
                          verbose=False, validation_fraction=0.0).fit(folder)
    assert clf.fit_info_["counts"]["validation"] == {"cracked": 0, "uncracked": 0}
    assert not clf.history_.has_validation and clf.history_.monitor == "loss"
