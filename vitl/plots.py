"""Matplotlib figures for training histories, evaluation reports and image galleries.

Every function returns a ``matplotlib.figure.Figure`` and never calls
``plt.show()``. Figures are created without pyplot, so a notebook shows the
returned figure exactly once and scripts can ``fig.savefig(...)`` without a
display. Functions drawing a single panel accept ``ax=`` to draw into an
existing axes instead.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from ._errors import check_int, problem, require
from .evaluation import EvaluationReport, ThresholdChoice

BEST_COLOR = "tab:green"


def plot_history(history, axes=None) -> Figure:
    """Plot loss and accuracy (train vs validation) and the learning rate per epoch.

    The best epoch (``history.best_epoch``) is marked with a vertical line.

    Args:
        history: the training history (``ImageClassifier.history_``, or what
            :func:`vitl.training.train_head` returns) or its ``to_dict()``:
            anything with ``rows`` (one dict per epoch with ``epoch``, ``loss``,
            ``accuracy``, ``learning_rate`` and optionally ``val_loss``,
            ``val_accuracy``) and ``best_epoch``.
        axes: optional three axes to draw into (loss, accuracy, learning rate).

    Returns:
        The figure with three panels.

    Raises:
        ValueError: ``history`` has no epochs, or ``axes`` is not three axes.

    Example:
        >>> rows = [{"epoch": e, "loss": 1 / (e + 1), "accuracy": 0.5 + e / 10,
        ...          "learning_rate": 0.01} for e in range(4)]
        >>> fig = plot_history({"rows": rows, "best_epoch": 3})
        >>> [ax.get_title() for ax in fig.axes]
        ['Cross-entropy loss', 'Accuracy', 'Learning rate']
    """
    given = history
    if not isinstance(history, dict):
        history = {"rows": getattr(history, "rows", None),
                   "best_epoch": getattr(history, "best_epoch", None)}
    if not history.get("rows"):
        received = ("no epochs" if isinstance(given, dict) or hasattr(given, "rows")
                    else None if given is None else type(given).__name__)
        raise ValueError(problem("history", "a TrainingHistory with at least one epoch", received,
                                 "pass clf.history_ (fine-tuning: clf.fine_tune_history_, None "
                                 "when it did not run)"))
    table = pd.DataFrame(history["rows"]).set_index("epoch")
    fig, axes = _figure_and_axes(axes, 3, figsize=(13, 3.6))
    panels = {"loss": ("Cross-entropy loss", "train"), "accuracy": ("Accuracy", "train"),
              "learning_rate": ("Learning rate", "learning rate")}
    for ax, (name, (title, label)) in zip(axes, panels.items()):
        lines = table.reindex(columns=[name, "val_" + name]).astype(float)
        if lines["val_" + name].isna().all():  # no validation; the train line always shows
            lines = lines[[name]]
        lines.columns = [label, "validation"][:len(lines.columns)]
        lines.plot(ax=ax, title=title, xlabel="epoch", ylabel=name.replace("_", " "),
                   logy=bool(name == "learning_rate" and lines.min().min() > 0))
        if history.get("best_epoch") is not None:
            ax.axvline(history["best_epoch"], color=BEST_COLOR, linestyle="--", linewidth=1,
                       label=f"best epoch {history['best_epoch']}")
        ax.legend(loc="best", fontsize=8)
    return fig


def plot_confusion_matrix(report: EvaluationReport, normalize: bool = False, ax=None,
                          cmap: str = "Blues") -> Figure:
    """Draw the confusion matrix (rows: true class, columns: predicted class).

    Drawn by scikit-learn's ``ConfusionMatrixDisplay``.

    Args:
        report: an :class:`~vitl.evaluation.EvaluationReport`.
        normalize: divide each row by its total, so the diagonal shows each
            class's recall; cells also show the counts.
        ax: optional axes to draw into.
        cmap: matplotlib colour map.

    Returns:
        The figure holding the matrix.

    Example:
        >>> report = EvaluationReport.from_predictions(
        ...     [0, 1, 1], [[.9, .1], [.6, .4], [.2, .8]], ["CD", "UD"])
        >>> fig = plot_confusion_matrix(report)
        >>> fig.axes[0].images[0].get_array().tolist()
        [[1, 0], [1, 1]]
    """
    _check_report(report)
    side = 1.2 * len(report.class_names) + 2.5
    # names longer than a cell is wide (~12 characters at 1.2 inch) would run into each
    # other under the columns: stand them up; the figure grows by what the names take
    longest = max(map(len, report.class_names))
    rotate = longest > 12
    side += 0.09 * longest if rotate else 0
    fig, (ax,) = _figure_and_axes(None if ax is None else [ax], 1, figsize=(side, side))
    counts = report.confusion_matrix
    display = ConfusionMatrixDisplay.from_predictions(
        report.y_true, report.y_pred, labels=range(len(report.class_names)),
        display_labels=report.class_names, normalize="true" if normalize else None, ax=ax,
        cmap=cmap, colorbar=False, values_format=".0%" if normalize else "d",
        xticks_rotation="vertical" if rotate else "horizontal",
        im_kw={"vmin": 0, "vmax": 1 if normalize else max(1, counts.max())})
    if normalize:
        for text, count in zip(display.text_.ravel(), counts.ravel()):
            text.set_text(f"{text.get_text()}\n({count})")
    ax.set(xlabel="Predicted", ylabel="True",
           title="Confusion matrix" + (" (row-normalized)" if normalize else ""))
    return fig


def plot_roc_pr(report: EvaluationReport, threshold: ThresholdChoice | float | None = None,
                axes=None) -> Figure:
    """Draw the ROC and precision-recall curves of the positive-class score (two classes).

    Drawn by scikit-learn's ``RocCurveDisplay`` and ``PrecisionRecallDisplay``.

    Args:
        report: a two-class :class:`~vitl.evaluation.EvaluationReport` with both
            classes present.
        threshold: optional :class:`~vitl.evaluation.ThresholdChoice` (e.g. from
            ``report.threshold_for_recall(0.95)``) or score threshold to mark on
            both curves.
        axes: optional two axes to draw into (ROC, PR).

    Returns:
        The figure with the two panels.

    Raises:
        ValueError: the report has more than two classes, or one class only.

    Example:
        >>> report = EvaluationReport.from_predictions(
        ...     [0, 0, 1, 1], [[.9, .1], [.4, .6], [.2, .8], [.3, .7]], ["CD", "UD"])
        >>> fig = plot_roc_pr(report, threshold=report.threshold_for_recall(1.0))
        >>> [ax.get_title() for ax in fig.axes]
        ['ROC, positive class CD (AUC = 1.000)', 'Precision-recall, positive class CD (AP = 1.000)']
    """
    _check_report(report)
    is_positive, score = report.binary_scores()
    if is_positive.all() or not is_positive.any():
        raise ValueError(problem("report", "samples of both classes", "a single class",
                                 "evaluate on a set containing defects and non-defects"))
    fig, (roc_ax, pr_ax) = _figure_and_axes(axes, 2, figsize=(10, 4.4))
    curve = {"pos_label": True, "name": "model", "plot_chance_level": True}
    RocCurveDisplay.from_predictions(is_positive, score, ax=roc_ax, **curve)
    PrecisionRecallDisplay.from_predictions(is_positive, score, ax=pr_ax, **curve)
    roc_ax.set(title=_wrap(f"ROC, positive class {report.positive_class} "
                           f"(AUC = {report.roc_auc:.3f})", 58),
               xlabel="False-alarm rate (FPR)", ylabel="Recall (TPR)")
    pr_ax.set(title=_wrap(f"Precision-recall, positive class {report.positive_class} "
                          f"(AP = {report.pr_auc:.3f})", 58), xlabel="Recall", ylabel="Precision")
    if threshold is not None:
        point = report.at_threshold(getattr(threshold, "threshold", threshold))
        label = f"threshold {point.threshold:.3f}"
        roc_ax.plot([point.false_alarm_rate], [point.recall], "o", color=BEST_COLOR, label=label)
        pr_ax.plot([point.recall], [point.precision], "o", color=BEST_COLOR, label=label)
    roc_ax.legend(loc="lower right", fontsize=8)
    pr_ax.legend(loc="lower left", fontsize=8)
    return fig


def plot_confidently_wrong(report: EvaluationReport, k: int = 8, caption: str | None = None,
                           ncols: int = 4) -> Figure:
    """Show the ``k`` misclassified images the model was most sure about.

    Each title gives the true class, the predicted class and the probability
    of the prediction. Images are read with :func:`vitl.data.read_image`.

    Args:
        report: a report built with ``paths``.
        k: number of images at most.
        caption: text under the gallery, e.g. the dataset's CC BY attribution
            (SDNET2018: Maguire, Dorafshan & Thomas 2018, Utah State University, CC BY 4.0).
        ncols: images per row.

    Returns:
        The figure: one axes per image, or one axes saying there is no mistake.

    Raises:
        ValueError: the report was built without ``paths``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> paths = [tempfile.mkdtemp() + f"/{i}.png" for i in range(2)]
        >>> for path in paths:
        ...     Image.new("RGB", (8, 8)).save(path)
        >>> report = EvaluationReport.from_predictions(
        ...     [0, 1], [[.3, .7], [.2, .8]], ["CD", "UD"], paths=paths)
        >>> [ax.get_title() for ax in plot_confidently_wrong(report).axes]
        ['true CD, pred UD\\n70.0% sure']
    """
    _check_report(report)
    if report.paths is None:
        raise ValueError(problem("report.paths", "image paths", None,
                                 "build the report with paths=... to show images"))
    mistakes = report.most_confidently_wrong(k)
    if not mistakes:
        fig = Figure(figsize=(4, 1.5), layout="constrained")
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "No misclassified images", ha="center", va="center")
        ax.axis("off")
        fig.supxlabel(caption or "", fontsize=7, wrap=True)
        return fig
    titles = [f"true {m.true_label}, pred {m.predicted_label}\n{m.confidence:.1%} sure"
              for m in mistakes]
    fig = plot_images([m.path for m in mistakes], titles, ncols=ncols, caption=caption)
    fig.suptitle("Most confidently wrong")
    return fig


def plot_image_grid(paths: Sequence, labels: Sequence[str] | None = None, ncols: int = 6,
                    caption: str | None = None) -> Figure:
    """Read image files and show them in a grid, optionally titled with labels.

    Args:
        paths: image files (read with :func:`vitl.data.read_image`).
        labels: optional title per image.
        ncols: images per row.
        caption: text under the grid (e.g. the images' licence attribution).

    Returns:
        The figure, one axes per image.

    Example:
        See :func:`plot_images`, whose example calls it.
    """
    return plot_images(paths, labels, ncols=ncols, caption=caption)


def plot_images(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 6,
                caption: str | None = None, cell_inches: float = 2.2, cmap: str = "gray") -> Figure:
    """Show images as a grid: one axes per image, axes hidden.

    Args:
        images: ``HxWx3`` (RGB, uint8 0..255 or float 0..1) or ``HxW`` (grey) arrays,
            or image files (read with :func:`vitl.data.read_image`).
        titles: optional title per image.
        ncols: images per row (fewer when there are fewer images).
        caption: text under the grid.
        cell_inches: size of one cell.
        cmap: matplotlib colour map of ``HxW`` arrays.

    Returns:
        The figure, one axes per image.

    Raises:
        ValueError: no image, a title count that differs, or an array that is not an image.

    Example:
        >>> fig = plot_images([np.zeros((8, 8, 3), "uint8"), np.ones((8, 8))], ["black", "grey"])
        >>> len(fig.axes), fig.axes[1].get_title()
        (2, 'grey')
        >>> import tempfile
        >>> from PIL import Image
        >>> path = tempfile.mkdtemp() + "/a.png"
        >>> Image.new("RGB", (8, 8)).save(path)
        >>> [ax.get_title() for ax in plot_image_grid([path, path], ["one", "two"]).axes]
        ['one', 'two']
    """
    from .data import read_image

    images = list(images)
    if not images:
        raise ValueError(problem("images", "at least one image", "none", "pass a list of arrays"))
    if titles is not None and len(titles) != len(images):
        raise ValueError(problem("titles", f"{len(images)} titles, one per image", len(titles),
                                 "pass one title per image or titles=None"))
    check_int("ncols", ncols, minimum=1, fix="pass ncols=6")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig = Figure(figsize=(ncols * cell_inches, nrows * (cell_inches + 0.35) + 0.3),
                 layout="constrained")
    for i, image in enumerate(images):
        array = read_image(image) if isinstance(image, (str, Path)) else np.asarray(image)
        if array.ndim not in (2, 3):
            raise ValueError(problem(f"images[{i}]", "an HxW or HxWx3 array",
                                     f"shape {array.shape}", "pass image pixel arrays"))
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(array, cmap=cmap if array.ndim == 2 else None)
        # ~15 characters of 8 pt text per inch: longer titles (class names) wrap, not overprint
        ax.set_title("" if titles is None else _wrap(str(titles[i]), int(15 * cell_inches)),
                     fontsize=8)
        ax.axis("off")
    fig.supxlabel(caption or "", fontsize=7, wrap=True)
    return fig


def _wrap(text: str, width: int) -> str:
    """``text`` with each of its lines wrapped at ``width`` characters."""
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def _check_report(report) -> None:
    require(isinstance(report, EvaluationReport), "report", "an EvaluationReport",
            type(report).__name__, "pass clf.evaluate(images), or build one with "
            "EvaluationReport.from_predictions(...)")


def _figure_and_axes(axes, count: int, figsize) -> tuple[Figure, list]:
    if axes is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, list(np.ravel(fig.subplots(1, count)))
    axes = list(np.ravel(axes))
    if len(axes) != count:
        raise ValueError(problem("axes", f"{count} matplotlib axes", len(axes),
                                 f"pass {count} axes or none"))
    return axes[0].figure, axes


__all__ = ["plot_confidently_wrong", "plot_confusion_matrix", "plot_history", "plot_image_grid",
           "plot_images", "plot_roc_pr"]
