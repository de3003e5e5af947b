"""Data augmentation that keeps the feature cache: deterministic views of each image.

TensorFlow's ``retrain.py`` turns its bottleneck cache off whenever distortions
are on, because a random distortion is a new picture every time. Here view
``k`` of an image is always the *same* picture: its random parameters are
seeded by a hash of the image's pixels and ``k``. So an augmented view can be
cached like an original (:class:`vitl.features.Featurizer` with ``views`` and
``transform``), and repeating an experiment with ``K`` views per image costs
only cache look-ups.

:class:`AugmentPolicy` holds the settings and applies Keras preprocessing
layers (``RandomFlip``, ``RandomRotation``, ``RandomZoom``,
``RandomTranslation``, ``RandomContrast``, ``RandomBrightness``) with
stateless, explicitly seeded random draws, so the same image and view give
byte-identical output in every process.

Only training images are augmented; validation and test images are always
the original view 0.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np

from ._errors import (
    changed_fields_repr,
    check_fields,
    check_int,
    config_from_dict,
    is_int,
    is_real,
    require,
)

#: Bump when the meaning of a policy's parameters changes, so cached views miss.
AUGMENT_VERSION = 1
FLIPS = ("horizontal_and_vertical", "horizontal", "vertical", None)
_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_LIMITS = {"rotation": 0.5, "zoom": 0.9, "translation": 0.9, "contrast": 0.99, "brightness": 1.0}
#: AugmentPolicy's rules: (fields, what is expected, the test a value must pass[, fix]).
_RULES = (
    (("views",), "an integer >= 0", lambda v: is_int(v) and v >= 0,
     "pass views=4 (0 = no augmentation)"),
    (("flip",), f"one of {FLIPS}", lambda v: v in FLIPS),
    (("fill_mode",), f"one of {_FILL_MODES}", lambda v: v in _FILL_MODES),
    # 0 switches a transform off
    *(((name,), f"a number in [0, {high}]", lambda v, high=high: is_real(v) and 0 <= v <= high)
      for name, high in _LIMITS.items()),
)
_SEED_PAIRS = 8  # >= the number of layers a policy can have (7)
_TRACE_LOCK = threading.Lock()


@dataclass(frozen=True)
class AugmentPolicy:
    """Random flips, rotations, zooms, shifts, contrast and brightness changes.

    Each view of an image is one draw of all the transforms below, applied in
    this order; a zero (or None) switches a transform off. The default suits
    close-up photos of surfaces such as concrete decks, which have no "up":
    vertical flips and rotations make plausible new pictures. For photos with a
    natural orientation use ``flip="horizontal"``.

    Keras' ``RandomFlip("horizontal_and_vertical")`` flips both axes together
    (identity or a 180-degree turn); here ``"horizontal_and_vertical"`` uses two
    independent flips, so all four mirror images occur.

    Args:
        flip: ``"horizontal_and_vertical"``, ``"horizontal"``, ``"vertical"`` or None.
        rotation: largest rotation as a fraction of a full turn (0.1 = 36 degrees).
        zoom: largest zoom in or out as a fraction of the side (0.1 = 10%).
        translation: largest shift as a fraction of the side, in both directions.
        contrast: contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
        brightness: brightness offset up to ``brightness * 255``, up or down.
        fill_mode: how pixels outside the image are filled after rotating,
            zooming out or shifting: ``"reflect"`` (default), ``"wrap"``,
            ``"constant"`` (black) or ``"nearest"``.
        views: how many augmented views of each training image
            :class:`~vitl.classifier.ImageClassifier` adds (``augment=policy``);
            not part of :attr:`transform_id` (view k is the same picture for any count).

    Attributes:
        transform_id: ``"aug-v1-"`` plus a short hash of the transform
            parameters; names the policy in feature-cache keys.

    Example:
        >>> policy = AugmentPolicy(rotation=0.05)
        >>> policy.transform_id.startswith("aug-v1-")
        True
        >>> policy.transform_id == AugmentPolicy().transform_id
        False
        >>> image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        >>> view = policy(image, 1)
        >>> view.shape, view.dtype, bool((view == policy(image, 1)).all())
        ((32, 32, 3), dtype('uint8'), True)
    """

    flip: str | None = "horizontal_and_vertical"
    rotation: float = 0.1
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.2
    brightness: float = 0.2
    fill_mode: str = "reflect"
    views: int = 4

    __repr__ = changed_fields_repr

    def __post_init__(self):
        check_fields(self, _RULES)

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        """The parameters as a plain (JSON-able) dict.

        Returns:
            ``{field: value}`` for every field, :meth:`from_dict`'s input.

        Example:
            >>> AugmentPolicy().to_dict()["views"]
            4
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentPolicy:
        """Build a policy from :meth:`to_dict` output, rejecting unknown keys.

        Args:
            values: ``{field: value}``; missing fields keep their defaults.

        Returns:
            An :class:`AugmentPolicy` (its values checked as by the constructor).

        Raises:
            ValueError: a key that is not a field, or a value the constructor refuses.

        Example:
            >>> AugmentPolicy.from_dict({"rotation": 0.0}).rotation
            0.0
        """
        return config_from_dict(cls, values)

    @property
    def transform_id(self) -> str:
        """``"aug-v1-"`` and a hash of the transform parameters (``views`` excluded).

        The feature cache files augmented views under this id, so two policies that
        draw the same pictures share cached views.

        Returns:
            The id string.

        Example:
            >>> AugmentPolicy(views=8).transform_id == AugmentPolicy().transform_id
            True
        """
        transform = {k: v for k, v in self.to_dict().items() if k != "views"}
        text = json.dumps(transform, sort_keys=True, default=lambda v: v.item())  # numpy numbers
        return f"aug-v{AUGMENT_VERSION}-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def is_identity(self) -> bool:
        """True when every transform is switched off.

        Returns:
            Whether every view equals the original image.

        Example:
            >>> AugmentPolicy().is_identity, AugmentPolicy(flip=None, rotation=0, zoom=0,
            ...     translation=0, contrast=0, brightness=0).is_identity
            (False, True)
        """
        return self.flip is None and not any(getattr(self, name) for name in _LIMITS)

    # ------------------------------------------------------------------ applying
    def __call__(self, image, view: int) -> np.ndarray:
        """Return view ``view`` of ``image``: the same pixels for the same (image, view).

        Args:
            image: ``uint8`` RGB array ``(H, W, 3)`` (as from :func:`vitl.data.read_image`).
            view: view number; 0 returns the image unchanged, every k >= 1 a
                different random draw of the policy.

        Returns:
            ``uint8`` array of the same shape.
        """
        view = check_int("view", view, minimum=0, fix="pass view=0 (original) or 1, 2, ...")
        image = np.asarray(image)
        require(image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, "image",
                "a uint8 RGB array (H, W, 3)", f"{image.dtype} array of shape {image.shape}",
                "pass vitl.data.read_image(path, size)")
        if view == 0 or self.is_identity:
            return image.copy()
        import tensorflow as tf

        with _TRACE_LOCK:  # one compiled function even when loader threads call at once
            compiled = self._compiled
        out = compiled(tf.constant(image[None].astype(np.float32)),
                       tf.constant(self.view_seeds(image, view)))
        return np.clip(np.rint(out[0].numpy()), 0, 255).astype(np.uint8)

    def view_seeds(self, image: np.ndarray, view: int) -> np.ndarray:
        """The ``(8, 2)`` int64 seeds of (image, view): from a sha512 of the pixels and ``view``.

        Args:
            image: the ``uint8`` RGB array.
            view: the view number.

        Returns:
            An ``(8, 2)`` int64 array: the same for the same pixels and view.

        Example:
            >>> policy, image = AugmentPolicy(), np.zeros((4, 4, 3), np.uint8)
            >>> policy.view_seeds(image, 1).shape, bool((policy.view_seeds(image, 1)
            ...                                          == policy.view_seeds(image, 2)).all())
            ((8, 2), False)
        """
        image = np.ascontiguousarray(image)
        pixels = hashlib.sha256(image.tobytes() + str(image.shape).encode()).digest()
        digest = hashlib.sha512(pixels + int(view).to_bytes(8, "big")).digest()
        return np.frombuffer(digest, dtype=">u4").astype(np.int64).reshape(_SEED_PAIRS, 2)

    def augment_batch(self, images, seed):
        """Augment a float batch inside TensorFlow (e.g. in a ``tf.data`` map), statelessly.

        Every image of the batch gets its own random draw; the same ``images``
        and ``seed`` always give the same output.

        Args:
            images: float32 tensor ``(B, H, W, 3)`` in 0..255.
            seed: int tensor ``(2,)``.

        Returns:
            float32 tensor ``(B, H, W, 3)`` clipped to 0..255 (not rounded).

        Example:
            >>> import tensorflow as tf
            >>> batch = tf.fill((2, 8, 8, 3), 100.0)
            >>> out = AugmentPolicy().augment_batch(batch, tf.constant([1, 2]))
            >>> out.shape, bool(tf.reduce_all((out >= 0) & (out <= 255)))
            (TensorShape([2, 8, 8, 3]), True)
        """
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), _SEED_PAIRS)
        return self._apply(images, seeds)

    @cached_property
    def _layers(self) -> list:
        """The Keras preprocessing layers of the switched-on transforms, in order."""
        import keras

        layers, fill = keras.layers, self.fill_mode
        # "horizontal_and_vertical": two independent flips, so all four mirror images occur
        chosen = [layers.RandomFlip(m) for m in ("horizontal", "vertical") if m in (self.flip or "")]
        optional = (
            (self.rotation, lambda: layers.RandomRotation(self.rotation, fill_mode=fill)),
            (self.zoom, lambda: layers.RandomZoom(self.zoom, fill_mode=fill)),
            (self.translation, lambda: layers.RandomTranslation(
                self.translation, self.translation, fill_mode=fill)),
            (self.contrast, lambda: layers.RandomContrast(self.contrast, value_range=(0, 255))),
            (self.brightness, lambda: layers.RandomBrightness(self.brightness,
                                                              value_range=(0, 255))),
        )
        return chosen + [make() for value, make in optional if value]

    def _apply(self, images, seeds):
        """Apply layer i with seed ``seeds[i]`` to a float batch (works in graphs)."""
        import tensorflow as tf

        x = tf.convert_to_tensor(images, tf.float32)
        for layer, seed in zip(self._layers, tf.unstack(tf.cast(seeds, tf.int64))):
            transformation = layer.get_random_transformation(x, training=True,
                                                             seed=_fixed_seed(seed))
            x = layer.transform_images(x, transformation, training=True)
        return tf.clip_by_value(x, 0.0, 255.0)

    @cached_property
    def _compiled(self):
        import tensorflow as tf

        return tf.function(self._apply, input_signature=[
            tf.TensorSpec((None, None, None, 3), tf.float32),
            tf.TensorSpec((_SEED_PAIRS, 2), tf.int64)])

    def __getstate__(self):  # pickle the fields, not the cached layers and compiled function
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _fixed_seed(seed):
    """A Keras ``SeedGenerator`` stand-in that yields ``seed``, ``seed + [0, 1]``, ...

    Keras' random ops take a Python int or a ``SeedGenerator``; an int would
    retrace compiled functions for every image, and a real generator keeps its
    state in a variable shared by concurrent callers. This one holds a seed
    tensor and advances a counter at trace time (layers that draw twice, such
    as RandomTranslation, get two different seeds), so applying a layer is a
    pure, stateless function of (image, seed).
    """
    import keras

    class FixedSeed(keras.random.SeedGenerator):
        def __init__(self, value):  # no super().__init__: no state variable wanted
            self.value, self.calls = value, 0

        def next(self, ordered=True):
            import tensorflow as tf

            self.calls += 1
            return self.value + tf.constant([0, self.calls - 1], self.value.dtype)

    return FixedSeed(seed)


def plot_views(image_or_path, policy: AugmentPolicy | None = None, k: int = 8, size: int = 224,
               columns: int = 3, caption: str | None = None):
    """Draw an image and its first ``k`` augmented views in a grid.

    Args:
        image_or_path: an image file or a ``uint8`` RGB array.
        policy: the :class:`AugmentPolicy`; default ``AugmentPolicy()``.
        k: number of views to show after the original.
        size: side the file is read at (:func:`vitl.data.read_image`); ignored for arrays.
        columns: pictures per row.
        caption: text under the grid (e.g. the image's licence attribution).

    Returns:
        A ``matplotlib.figure.Figure`` (view 0 is the original).

    Example:
        >>> image = np.full((32, 32, 3), 128, np.uint8)
        >>> image[:, 10:14] = 30
        >>> fig = plot_views(image, AugmentPolicy(), k=5)
        >>> len([ax for ax in fig.axes if ax.images])
        6
        >>> plot_views(image, k=1, caption="CC BY 4.0").texts[-1].get_text()
        'CC BY 4.0'
    """
    from matplotlib.figure import Figure

    from .data import read_image

    policy = policy or AugmentPolicy()
    check_int("k", k, minimum=0, fix="pass k=8")
    check_int("columns", columns, minimum=1, fix="pass columns=3")
    if isinstance(image_or_path, (str, Path)):
        image, title = read_image(image_or_path, size), Path(image_or_path).name
    else:
        image, title = np.asarray(image_or_path), None
    total = k + 1
    rows = -(-total // columns)
    fig = Figure(figsize=(2.4 * columns, 2.4 * rows + (0.4 if title else 0)))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for view, ax in enumerate(axes):
        ax.set_axis_off()
        if view < total:
            ax.imshow(policy(image, view))
            ax.set_title("original" if view == 0 else f"view {view}", fontsize=9)
    if title:
        fig.suptitle(f"{title}: {policy.transform_id}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", fontsize=7)
    return fig


__all__ = ["AUGMENT_VERSION", "AugmentPolicy", "plot_views"]
