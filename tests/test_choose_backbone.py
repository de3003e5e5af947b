"""choose_backbone: the reader's choice, else ResNet101V2 if its weights resolve, else offline."""

import pytest

from vitl.backbones import choose_backbone
from vitl.backbones import weights as weights_module
from vitl.backbones.weights import WeightsSource, WeightsUnavailableError


def test_explicit_choice_wins_and_is_validated(monkeypatch):
    monkeypatch.setenv("VITL_BACKBONE", "resnet50v2")
    assert choose_backbone("efficientnetb0").name == "efficientnetb0"
    with pytest.raises(ValueError, match="expected one of"):
        choose_backbone("vgg19")


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("VITL_BACKBONE", "resnet50v2")
    choice = choose_backbone()
    assert choice == ("resnet50v2", "backbone: resnet50v2 (from $VITL_BACKBONE)")


def test_default_falls_back_offline_and_says_why(monkeypatch):
    monkeypatch.delenv("VITL_BACKBONE", raising=False)

    def unavailable(spec, weights):
        raise WeightsUnavailableError("no weights")

    monkeypatch.setattr(weights_module, "resolve_weights", unavailable)
    choice = choose_backbone()
    assert choice.name == "mobilenetv2-tv"
    assert "resnet101v2's ImageNet weights are not available" in choice.reason


def test_default_is_resnet101v2_when_weights_resolve(monkeypatch):
    monkeypatch.delenv("VITL_BACKBONE", raising=False)
    monkeypatch.setattr(weights_module, "resolve_weights",
                        lambda spec, weights: WeightsSource("vitl-home", "/w.h5", "ab" * 32))
    assert choose_backbone() == ("resnet101v2",
                                 "backbone: resnet101v2 (the tutorial's; weights: vitl-home)")

