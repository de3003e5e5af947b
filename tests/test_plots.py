"""Tests for vitl.plots: figures hold exactly the data they were given."""

from __future__ import annotations

import io
import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import precision_recall_curve, roc_curve

from vitl.evaluation import EvaluationReport
from vitl.plots import (
    plot_confidently_wrong,
    plot_confusion_matrix,
    plot_history,
    plot_image_grid,
    plot_images,
    plot_roc_pr,
)
from vitl.training import TrainingHistory

NAMES = ["CD", "UD"]
Y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
P_CD = np.array([0.9, 0.6, 0.3, 0.4, 0.2, 0.1, 0.7, 0.05])
PROBA = np.column_stack([P_CD, 1 - P_CD])


def history(n=6, validation=True, best=3):
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "accuracy": 0.5 + e / 20,
             "val_loss": 1.2 / (e + 1) if validation else None,
             "val_accuracy": 0.4 + e / 20 if validation else None,
             "learning_rate": 0.01 * 0.94 ** (e // 2)} for e in range(n)]
    return TrainingHistory(rows, monitor="val_accuracy", best_epoch=best)


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def renders(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------- history
def test_plot_history_plots_the_history_values():
    h = history()
    fig = plot_history(h)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    loss_ax, acc_ax, lr_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Cross-entropy loss", "Accuracy",
                                                   "Learning rate"]
    for ax, name in [(loss_ax, "loss"), (acc_ax, "accuracy")]:
        lines = lines_by_label(ax)
        assert set(lines) == {"train", "validation", "best epoch 3"}
        np.testing.assert_allclose(lines["train"].get_ydata(), h.column(name))
        np.testing.assert_allclose(lines["validation"].get_ydata(), h.column("val_" + name))
        np.testing.assert_allclose(lines["train"].get_xdata(), range(6))
        assert list(lines["best epoch 3"].get_xdata()) == [3, 3]
        assert ax.get_xlabel() == "epoch"
    lr_line = lines_by_label(lr_ax)["learning rate"]
    np.testing.assert_allclose(lr_line.get_ydata(), h.column("learning_rate"))
    assert lr_ax.get_yscale() == "log"
    assert renders(fig)


def test_plot_history_without_validation_and_from_dict_into_given_axes():
    h = history(validation=False, best=None)
    target = Figure()
    axes = target.subplots(1, 3)
    fig = plot_history(h.to_dict(), axes=axes)
    assert fig is target
    assert set(lines_by_label(fig.axes[0])) == {"train"}
    with pytest.raises(ValueError, match="history: expected a TrainingHistory"):
        plot_history(TrainingHistory(rows=[]))
    with pytest.raises(ValueError, match="axes: expected 3 matplotlib axes"):
        plot_history(h, axes=axes[:2])


# ---------------------------------------------------------- confusion matrix
def test_plot_history_of_a_diverged_run_or_without_learning_rate_still_plots():
    diverged = history(n=2, validation=False, best=None)
    for row in diverged.rows:
        row["loss"] = float("nan")  # diverged from the first epoch: what the plot must show
    no_rate = {"rows": [{k: v for k, v in row.items() if k != "learning_rate"}
                        for row in history(n=3).rows], "best_epoch": None}
    for h in (diverged, no_rate):
        fig = plot_history(h)
        assert len(fig.axes) == 3 and renders(fig)
        assert [ax.get_lines()[0].get_label() for ax in fig.axes] == ["train", "train",
                                                                      "learning rate"]


def test_plot_confusion_matrix_counts_and_labels():
    report = EvaluationReport.from_predictions(Y, PROBA, NAMES)
    fig = plot_confusion_matrix(report)
    (ax,) = fig.axes
    np.testing.assert_array_equal(ax.images[0].get_array(), [[2, 1], [1, 4]])
    assert [t.get_text() for t in ax.texts] == ["2", "1", "1", "4"]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "Predicted", "True", "Confusion matrix")
    assert renders(fig)


def test_plot_confusion_matrix_normalized_multiclass_into_axes():
    y = np.array([0, 0, 1, 2, 2, 2])
    proba = np.eye(3)[[0, 1, 1, 2, 2, 0]]
    report = EvaluationReport.from_predictions(y, proba, ["a", "b", "c"])
    target = Figure()
    ax = target.subplots()
    fig = plot_confusion_matrix(report, normalize=True, ax=ax)
    assert fig is target and len(fig.axes) == 1
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]]) / np.array([[2], [1], [3]])
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert ax.texts[0].get_text() == "50%\n(1)"
    assert ax.get_title() == "Confusion matrix (row-normalized)"


# ------------------------------------------------------------------ ROC / PR
def test_plot_roc_pr_curves_and_threshold_marker():
    report = EvaluationReport.from_predictions(Y, PROBA, NAMES)
    choice = report.threshold_for_recall(0.6)
    fig = plot_roc_pr(report, threshold=choice)
    roc_ax, pr_ax = fig.axes
    assert roc_ax.get_title() == "ROC, positive class CD (AUC = 0.800)"
    assert pr_ax.get_title().startswith("Precision-recall, positive class CD (AP = ")
    fpr, tpr, _ = roc_curve(Y == 0, P_CD)
    model = lines_by_label(roc_ax)["model (AUC = 0.80)"]
    np.testing.assert_allclose(model.get_xdata(), fpr)
    np.testing.assert_allclose(model.get_ydata(), tpr)
    precision, recall, _ = precision_recall_curve(Y == 0, P_CD)
    pr_model = lines_by_label(pr_ax)[f"model (AP = {report.pr_auc:.2f})"]
    np.testing.assert_allclose(pr_model.get_xdata(), recall)
    np.testing.assert_allclose(pr_model.get_ydata(), precision)
    marker = lines_by_label(roc_ax)["threshold 0.600"]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == pytest.approx((0.2, 2 / 3))
    pr_marker = lines_by_label(pr_ax)["threshold 0.600"]
    assert (pr_marker.get_xdata()[0], pr_marker.get_ydata()[0]) == pytest.approx((2 / 3, 2 / 3))
    assert renders(fig)


def test_plot_roc_pr_threshold_given_as_text_or_numpy_number():
    report = EvaluationReport.from_predictions(Y, PROBA, NAMES)
    for threshold in ("0.6", np.float32(0.6)):  # e.g. read from a config file
        fig = plot_roc_pr(report, threshold=threshold)
        assert "threshold 0.600" in lines_by_label(fig.axes[0])


def test_plot_roc_pr_rejects_multiclass_and_single_class():
    multi = EvaluationReport.from_predictions([0, 1, 2], np.eye(3), list("abc"))
    with pytest.raises(ValueError, match="report: expected a two-class report"):
        plot_roc_pr(multi)
    single = EvaluationReport.from_predictions([0, 0], [[0.9, 0.1], [0.2, 0.8]], NAMES)
    with pytest.raises(ValueError, match="report: expected samples of both classes"):
        plot_roc_pr(single)


# ------------------------------------------------------------------ galleries
def write_images(folder, n):
    paths, pixels = [], []
    for i in range(n):
        array = np.zeros((12, 16, 3), np.uint8)
        array[..., 0] = 20 * i
        array[: i + 1, :, 1] = 255
        path = folder / f"{i}.png"
        Image.fromarray(array).save(path)
        paths.append(str(path))
        pixels.append(array)
    return paths, pixels


def test_plot_confidently_wrong_shows_the_mistakes(tmp_path):
    paths, pixels = write_images(tmp_path, 8)
    report = EvaluationReport.from_predictions(Y, PROBA, NAMES, paths=paths)
    fig = plot_confidently_wrong(report, k=8, caption="SDNET2018, CC BY 4.0")
    mistakes = report.most_confidently_wrong(8)
    assert len(fig.axes) == len(mistakes) == 2
    for ax, mistake in zip(fig.axes, mistakes):
        np.testing.assert_array_equal(ax.images[0].get_array(), pixels[mistake.index])
        assert ax.get_title() == (f"true {mistake.true_label}, pred {mistake.predicted_label}\n"
                                  "70.0% sure")
    assert fig.get_suptitle() == "Most confidently wrong"
    assert fig.get_supxlabel() == "SDNET2018, CC BY 4.0"
    assert renders(fig)
    assert len(plot_confidently_wrong(report, k=1).axes) == 1


def test_plot_confidently_wrong_without_mistakes_or_paths(tmp_path):
    paths, _ = write_images(tmp_path, 2)
    perfect = EvaluationReport.from_predictions([0, 1], [[0.9, 0.1], [0.2, 0.8]], NAMES,
                                                paths=paths)
    fig = plot_confidently_wrong(perfect)
    assert len(fig.axes) == 1 and fig.axes[0].texts[0].get_text() == "No misclassified images"
    with pytest.raises(ValueError, match="report.paths: expected image paths"):
        plot_confidently_wrong(EvaluationReport.from_predictions(Y, PROBA, NAMES))


def test_plot_image_grid_reads_files_into_a_grid(tmp_path):
    paths, pixels = write_images(tmp_path, 7)
    labels = [f"label {i}" for i in range(7)]
    fig = plot_image_grid(paths, labels, ncols=3, caption="caption text")
    assert len(fig.axes) == 7
    assert fig.axes[0].get_subplotspec().get_geometry()[:2] == (3, 3)
    assert [ax.get_title() for ax in fig.axes] == labels
    for ax, expected in zip(fig.axes, pixels):
        np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    assert fig.get_supxlabel() == "caption text"
    with pytest.raises(ValueError, match="titles: expected 7 titles, one per image, received 3. Fix: "):
        plot_image_grid(paths, labels[:3])


def test_plot_images_grey_and_errors():
    grey = np.linspace(0, 1, 20).reshape(4, 5)
    fig = plot_images([grey, np.zeros((4, 5, 3), np.uint8)], ncols=6)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_subplotspec().get_geometry()[:2] == (1, 2)
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), grey)
    assert not fig.axes[0].axison
    with pytest.raises(ValueError, match="images: expected at least one image"):
        plot_images([])
    with pytest.raises(ValueError, match="titles: expected 2 titles"):
        plot_images([grey, grey], ["one"])
    with pytest.raises(ValueError, match=r"images\[0\]: expected an HxW or HxWx3 array"):
        plot_images([np.zeros(5)])


@pytest.mark.parametrize("plot", [plot_confusion_matrix, plot_roc_pr, plot_confidently_wrong])
def test_report_plots_reject_what_is_not_a_report_in_one_line(plot):
    with pytest.raises(ValueError) as err:
        plot({"accuracy": 0.9})
    message = str(err.value)
    assert message.count("\n") == 0
    assert "report: expected an EvaluationReport, received 'dict'" in message
    assert "Fix: pass clf.evaluate(images)" in message


@pytest.mark.parametrize("given, received", [
    (None, "None"), (object(), "'object'"), ({"rows": []}, "'no epochs'")])
def test_plot_history_of_something_else_names_what_it_got(given, received):
    with pytest.raises(ValueError) as raised:
        plot_history(given)
    message = str(raised.value)
    assert f"received {received}." in message and "clf.history_" in message, message


def test_plot_confusion_matrix_long_class_names_do_not_overlap():
    names = ["no defect (intact surface)", "longitudinal crack with efflorescence", "spalling"]
    report = EvaluationReport.from_predictions([0, 1, 2], np.eye(3), names)
    fig = plot_confusion_matrix(report)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    (ax,) = fig.axes
    boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()),
                   key=lambda box: box.x0)
    assert all(left.x1 <= right.x0 for left, right in itertools.pairwise(boxes))
    # and the matrix keeps a readable size: cells at least 0.5 inch wide
    assert ax.get_window_extent(renderer).width / fig.dpi >= 1.5
    short = plot_confusion_matrix(EvaluationReport.from_predictions(Y, PROBA, NAMES))
    assert short.axes[0].get_xticklabels()[0].get_rotation() == 0  # CD / UD stay as they were


def _overlap(boxes) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_long_class_names_do_not_overprint_titles(tmp_path):
    paths, _ = write_images(tmp_path, 4)
    names = ["no defect (intact surface)", "longitudinal crack with efflorescence"]
    report = EvaluationReport.from_predictions([1, 1, 1, 1], [[.8, .2]] * 4, names, paths=paths,
                                               positive_class=names[1])
    fig = plot_confidently_wrong(report, ncols=4)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert not _overlap([ax.title.get_window_extent(renderer) for ax in fig.axes])
    assert fig.axes[0].get_title().replace("\n", " ") == (
        f"true {names[1]}, pred {names[0]} 80.0% sure")  # wrapped, not cut
    both = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], names)
    fig = plot_roc_pr(both)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    assert not _overlap(boxes) and all(b.x0 >= 0 and b.x1 <= fig.bbox.width for b in boxes)
