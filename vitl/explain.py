"""Grad-CAM: where in the image did the classifier see its class?

Grad-CAM (Selvaraju et al., 2017) weighs the channels ``A_k`` of the
backbone's last convolutional block (the backbone's output, before pooling) by the spatial
mean ``alpha_k`` of the gradient of the class score with respect to them:
``heatmap = ReLU(sum_k alpha_k A_k)``, upsampled bilinearly to the image size
and scaled to [0, 1]. The class score is the head's pre-softmax logit (its
``scores`` layer without the softmax).

The classifier's model nests backbone and head (image -> ``<name>_features``
[preprocess -> backbone -> pool] -> head), so the forward pass runs through
those Keras layers inside one ``tf.GradientTape``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image
from sklearn.utils.validation import check_is_fitted
from tqdm import tqdm

from ._errors import check_fraction, check_int, check_verbose, problem, require
from .data import paths_or_arrays, read_image
from .features.pipeline import to_model_image
from .plots import plot_images


@dataclass(frozen=True)
class Explanation:
    """One image's Grad-CAM explanation.

    Attributes:
        image: the image, ``(H, W, 3)`` uint8 RGB, at its own size.
        heatmap: ``(H, W)`` float32 in [0, 1]; 1 = where the class score rose most.
        label: the explained class.
        score: the classifier's probability of ``label`` for this image.
        predicted: the predicted class (equal to ``label`` unless a class was asked for).
        path: the image file, or None for an array.

    Example:
        >>> e = Explanation(np.zeros((4, 4, 3), "uint8"), np.ones((4, 4), "float32"), "cracked",
        ...                 0.9, "cracked", "a/tile.png")
        >>> print(e)
        a/tile.png: cracked (0.900)
    """

    image: np.ndarray
    heatmap: np.ndarray
    label: str
    score: float
    predicted: str
    path: str | None = None

    def overlay(self, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
        """The heatmap blended over the image, see :func:`overlay`.

        Args:
            alpha, cmap: as for :func:`overlay`.

        Returns:
            ``(H, W, 3)`` uint8 RGB.

        Example:
            >>> e = Explanation(np.zeros((4, 4, 3), "uint8"), np.ones((4, 4), "float32"), "a",
            ...                 0.9, "a")
            >>> e.overlay(alpha=1.0)[0, 0].tolist()  # jet(1.0) is dark red
            [128, 0, 0]
        """
        return overlay(self.image, self.heatmap, alpha=alpha, cmap=cmap)

    def __str__(self) -> str:
        return f"{self.path or '<array>'}: {self.label} ({self.score:.3f})"

    def __repr__(self) -> str:  # a notebook cell shows the explanation, not its pixels
        return (f"Explanation(path={self.path!r}, label={self.label!r}, score={self.score:.3f}, "
                f"predicted={self.predicted!r}, image shape {self.image.shape})")


def explain(classifier, images, class_name=None, *, batch_size: int = 16,
            verbose: int = 1) -> list[Explanation]:
    """Explain each image's class score with a Grad-CAM heatmap at the image's own size.

    Args:
        classifier: a fitted or loaded :class:`~vitl.classifier.ImageClassifier`.
        images: an image path, a folder, a list of paths, an
            :class:`~vitl.data.ImageCollection`, or RGB arrays (one ``(H, W, 3)``
            image or an ``(N, H, W, 3)`` batch, 0..255).
        class_name: the class to explain (e.g. the defect class for every
            image); None explains each image's predicted class.
        batch_size: images per backbone call.
        verbose: 0 silent, 1 or 2 a progress bar when there is more than one batch.

    Returns:
        One :class:`Explanation` per image, in input order.

    Raises:
        ValueError: unknown class, unreadable image, or an unfitted classifier.

    Example:
        >>> import tempfile
        >>> from vitl.classifier import ImageClassifier
        >>> from vitl.datasets import make_synthetic_cracks
        >>> from vitl.training import HeadConfig
        >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 4, size=64, verbose=0)
        >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=64, cache=None,
        ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
        >>> [e] = explain(clf, folder / "cracked" / "cracked_0000.png", class_name="cracked")
        >>> e.label, e.heatmap.shape, e.image.shape
        ('cracked', (64, 64), (64, 64, 3))
    """
    check_is_fitted(classifier, "classes_")
    check_int("batch_size", batch_size, minimum=1)
    verbose = check_verbose(verbose)
    classes = [str(c) for c in classifier.classes_]
    require(class_name is None or str(class_name) in classes, "class_name",
            f"None or one of {classes}", class_name, "pass a class the model was trained on, "
            "or None to explain each image's predicted class")
    target = None if class_name is None else classes.index(str(class_name))
    pictures, names = _read_inputs(images)
    size = classifier.extractor_.input_size
    explanations = []
    for start in tqdm(range(0, len(pictures), batch_size), desc="grad-cam", unit="batch",
                      disable=not verbose or len(pictures) <= batch_size):
        chunk = pictures[start:start + batch_size]
        batch = np.stack([to_model_image(p, size) for p in chunk]).astype(np.float32)
        maps, proba = _gradcam_maps(classifier, batch, target)
        for picture, name, cam, row in zip(chunk, names[start:], maps, proba):
            index = int(row.argmax()) if target is None else target
            explanations.append(Explanation(
                image=picture, heatmap=_upsample(cam, picture.shape[:2]), label=classes[index],
                score=float(row[index]), predicted=classes[int(row.argmax())], path=name))
    return explanations


def grad_cam(classifier, images, class_name=None, *, batch_size: int = 16,
             verbose: int = 1) -> np.ndarray:
    """Return Grad-CAM heatmaps ``(N, H, W)`` float32 in [0, 1], one per image.

    ``H, W`` is the images' size; all images must share it (use :func:`explain`
    for images of different sizes). An image whose class score no channel
    raises gets an all-zero map.

    Args:
        classifier, images, class_name, batch_size, verbose: as for :func:`explain`.

    Returns:
        ``(N, H, W)`` float32 heatmaps in [0, 1].

    Raises:
        ValueError: as for :func:`explain`, or images of different sizes.

    Example:
        >>> import tempfile
        >>> from vitl.classifier import ImageClassifier
        >>> from vitl.datasets import make_synthetic_cracks
        >>> from vitl.training import HeadConfig
        >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 2, size=32, verbose=0)
        >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
        ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder, folder)
        >>> maps = grad_cam(clf, np.zeros((3, 40, 50, 3), "uint8"), class_name="cracked")
        >>> maps.shape, maps.dtype, bool(maps.min() >= 0 and maps.max() <= 1)
        ((3, 40, 50), dtype('float32'), True)
    """
    explanations = explain(classifier, images, class_name, batch_size=batch_size,
                           verbose=verbose)
    shapes = sorted({e.heatmap.shape for e in explanations})
    if len(shapes) > 1:
        raise ValueError(problem("images", "images of one size (to stack the heatmaps)",
                                 f"sizes {shapes[:4]}", "use explain(...), which keeps each "
                                 "image at its own size, or resize the images first"))
    return np.stack([e.heatmap for e in explanations]).astype(np.float32)


def overlay(image, heatmap, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped heatmap over an image: ``(1 - alpha) * image + alpha * colour``.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 0..255 (or float 0..1), or ``(H, W)`` grey.
        heatmap: 2-D, values in [0, 1]; resized (bilinear) to the image when needed.
        alpha: weight of the heatmap colour, 0..1.
        cmap: a matplotlib colormap name.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: an image or heatmap of the wrong shape, ``alpha`` outside [0, 1] or an
            unknown ``cmap``.

    Example:
        >>> out = overlay(np.full((4, 6, 3), 100, "uint8"), np.ones((2, 3)), alpha=0.5)
        >>> out.shape, out.dtype, out[0, 0].tolist()  # jet(1.0) is dark red (127, 0, 0)
        ((4, 6, 3), dtype('uint8'), [114, 50, 50])
    """
    picture = _as_rgb(image, "image")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(problem("heatmap", "a 2-D array (H, W)", f"shape {heat.shape}",
                                 "pass one heatmap, e.g. grad_cam(...)[0]"))
    check_fraction("alpha", alpha)
    if cmap not in colormaps:
        raise ValueError(problem("cmap", "a matplotlib colormap name", cmap, "pass cmap='jet'"))
    heat = np.clip(np.nan_to_num(_upsample(heat, picture.shape[:2], normalise=False)), 0, 1)
    colour = colormaps[cmap](heat)[..., :3] * 255.0
    blended = (1 - alpha) * picture.astype(np.float32) + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def plot_explanation(explanation: Explanation, alpha: float = 0.4, cmap: str = "jet") -> Figure:
    """Show one explanation: the image, the heatmap and the overlay side by side.

    Args:
        explanation: an :class:`Explanation`.
        alpha: weight of the heatmap colour in the overlay, 0..1.
        cmap: a matplotlib colormap name.

    Returns:
        The figure: image, heatmap (with a colour bar) and overlay.

    Raises:
        ValueError: ``explanation`` is not an :class:`Explanation`.

    Example:
        >>> e = Explanation(np.zeros((8, 8, 3), "uint8"), np.eye(8, dtype="float32"), "cracked",
        ...                 0.9, "cracked")
        >>> [ax.get_title() for ax in plot_explanation(e).axes[:3]]
        ['image', 'Grad-CAM: cracked', 'overlay']
    """
    (e,) = _check_explanations([explanation])
    fig = plot_images([e.image, e.heatmap, e.overlay(alpha=alpha, cmap=cmap)],
                      ["image", f"Grad-CAM: {e.label}", "overlay"], ncols=3, cmap=cmap)
    fig.axes[1].images[0].set_clim(0, 1)
    fig.colorbar(fig.axes[1].images[0], ax=fig.axes[1], fraction=0.046)
    name = Path(e.path).name if e.path else "image"
    fig.suptitle(f"{name}: predicted {e.predicted}; p({e.label}) = {e.score:.3f}", fontsize=10)
    return fig


def plot_explanations(explanations, ncols: int = 4, caption: str | None = None,
                      alpha: float = 0.4, cmap: str = "jet") -> Figure:
    """Show a gallery of overlays, each titled with its file name, class and score.

    Args:
        explanations: :class:`Explanation` objects, e.g. from :func:`explain`.
        ncols: images per row.
        caption: text under the gallery (e.g. the images' licence attribution).
        alpha: weight of the heatmap colour, 0..1.
        cmap: a matplotlib colormap name.

    Returns:
        The figure, one overlay per axes.

    Raises:
        ValueError: no explanation, or an item that is not an :class:`Explanation`.

    Example:
        >>> e = Explanation(np.zeros((8, 8, 3), "uint8"), np.zeros((8, 8), "float32"), "ok",
        ...                 0.75, "ok", "a/b.png")
        >>> fig = plot_explanations([e, e, e], ncols=2)
        >>> len(fig.axes), fig.axes[0].get_title()
        (3, 'b.png\\nok 0.750')
    """
    explanations = _check_explanations(explanations)
    titles = [(f"{Path(e.path).name}\n" if e.path else "") + f"{e.label} {e.score:.3f}"
              for e in explanations]
    overlays = [e.overlay(alpha=alpha, cmap=cmap) for e in explanations]
    return plot_images(overlays, titles, ncols=ncols, caption=caption)


def _gradcam_maps(classifier, batch, target: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return (coarse maps ``(N, h, w)``, probabilities ``(N, C)``) for a model-size batch."""
    features = classifier.extractor_.model
    scores = classifier.head_.get_layer("scores")
    before_scores = keras.Model(classifier.head_.inputs, scores.input)
    with tf.GradientTape() as tape:
        conv = features.get_layer("backbone")(features.get_layer("preprocess")(batch),
                                              training=False)
        x = before_scores(tf.cast(features.get_layer("pool")(conv), tf.float32), training=False)
        logits = tf.matmul(x, scores.kernel) + scores.bias
        chosen = tf.argmax(logits, axis=1) if target is None else tf.fill([len(batch)], target)
        picked = tf.gather(logits, chosen, axis=1, batch_dims=1)
    # Summed over the batch: each image's score depends only on its own activations.
    grads = tf.cast(tape.gradient(picked, conv), tf.float32)
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(alpha * tf.cast(conv, tf.float32), axis=-1))
    return maps.numpy(), tf.nn.softmax(logits).numpy()


def _read_inputs(images) -> tuple[list[np.ndarray], list[str | None]]:
    paths, arrays = paths_or_arrays(images)
    if not (paths if arrays is None else arrays):
        raise ValueError(problem("images", "at least one image", "none",
                                 "pass image files, a folder holding images, or RGB arrays"))
    if arrays is None:
        return [read_image(p) for p in paths], [str(p) for p in paths]
    return [_as_rgb(a, f"images[{i}]") for i, a in enumerate(arrays)], [None] * len(arrays)


def _as_rgb(image, name: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 from RGB or grey pixels: uint8 0..255, or float 0..1 or 0..255."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(problem(name, "an RGB image (H, W, 3) or grey (H, W)",
                                 f"shape {array.shape}", "pass image pixels"))
    if array.dtype.kind == "f" and array.max(initial=0) <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _upsample(cam: np.ndarray, shape, normalise: bool = True) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``shape`` (H, W); optionally scale to [0, 1]."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != tuple(shape):
        cam = np.asarray(Image.fromarray(cam, "F").resize((shape[1], shape[0]), Image.BILINEAR))
    if not normalise:
        return cam
    cam = np.maximum(np.nan_to_num(cam), 0)
    peak = cam.max(initial=0)
    return cam / peak if peak > 0 else np.zeros_like(cam)


def _check_explanations(explanations) -> list[Explanation]:
    explanations = list(explanations)
    wrong = [type(e).__name__ for e in explanations if not isinstance(e, Explanation)]
    if wrong or not explanations:
        raise ValueError(problem("explanations", "at least one Explanation",
                                 wrong[0] if wrong else "none",
                                 "make them with vitl.explain.explain(classifier, images)"))
    return explanations


__all__ = ["Explanation", "explain", "grad_cam", "overlay", "plot_explanation",
           "plot_explanations"]
