"""Pick the backbone a tutorial run uses: the reader's choice, else ResNet101V2 when its
weights can be had, else the offline ``mobilenetv2-tv``."""

from __future__ import annotations

import os
from typing import NamedTuple

from .registry import DEFAULT_BACKBONE, OFFLINE_BACKBONE, get_backbone
from .weights import WeightsUnavailableError, resolve_weights

#: Environment variable naming the backbone notebooks and ``vitl demo`` use.
BACKBONE_ENV = "VITL_BACKBONE"


class BackboneChoice(NamedTuple):
    """The chosen backbone and the one line that explains the choice.

    Example:
        >>> name, reason = BackboneChoice("mobilenetv2-tv", "backbone: mobilenetv2-tv (chosen)")
        >>> name
        'mobilenetv2-tv'
    """

    name: str
    reason: str


def choose_backbone(preferred: str | None = None) -> BackboneChoice:
    """Return the backbone to use and why, falling back to one that works offline.

    Order: ``preferred``, else ``$VITL_BACKBONE``, else ``resnet101v2`` (the
    ML.NET tutorial's). A backbone chosen explicitly (argument or variable) is
    used as is; the default falls back to ``mobilenetv2-tv`` when its ImageNet
    weights can be found neither locally nor by download (that check fails
    within seconds on a dead network).

    Args:
        preferred: a registered backbone name, or None.

    Returns:
        ``BackboneChoice(name, reason)``; print ``reason`` so readers know.

    Raises:
        ValueError: an unknown backbone name.

    Example:
        >>> choose_backbone("mobilenetv2-tv")
        BackboneChoice(name='mobilenetv2-tv', reason='backbone: mobilenetv2-tv (chosen)')
    """
    chosen = preferred or os.environ.get(BACKBONE_ENV)
    if chosen:
        get_backbone(chosen)  # validate the name now, with the list of known ones
        source = "chosen" if preferred else f"from ${BACKBONE_ENV}"
        return BackboneChoice(chosen, f"backbone: {chosen} ({source})")
    try:
        found = resolve_weights(get_backbone(DEFAULT_BACKBONE), "imagenet")
    except WeightsUnavailableError:
        return BackboneChoice(
            OFFLINE_BACKBONE,
            f"backbone: {OFFLINE_BACKBONE} — {DEFAULT_BACKBONE}'s ImageNet weights are not "
            f"available here (offline, no local copy); using torchvision's ImageNet MobileNetV2 "
            f"instead. Set {BACKBONE_ENV}=resnet101v2 after `vitl weights import BUNDLE` to "
            "follow the tutorial exactly.",
        )
    return BackboneChoice(DEFAULT_BACKBONE,
                          f"backbone: {DEFAULT_BACKBONE} (the tutorial's; weights: {found.kind})")
