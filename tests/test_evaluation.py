"""Tests for vitl.evaluation against hand-computed values and sklearn.metrics."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from vitl.evaluation import EvaluationReport, ThresholdChoice, default_positive_class

NAMES = ["CD", "UD"]  # cracked deck first, as in the ML.NET tutorial
Y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
P_CD = np.array([0.9, 0.6, 0.3, 0.4, 0.2, 0.1, 0.7, 0.05])
PROBA = np.column_stack([P_CD, 1 - P_CD])
PATHS = [f"img{i}.jpg" for i in range(8)]


@pytest.fixture
def report():
    return EvaluationReport.from_predictions(Y, PROBA, NAMES, paths=PATHS)


def test_headline_metrics_by_hand(report):
    # predictions: CD CD UD UD UD UD CD UD -> 6 of 8 right
    assert report.accuracy == pytest.approx(0.75)
    assert report.macro_accuracy == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert report.confusion_matrix.tolist() == [[2, 1], [1, 4]]
    p_true = np.array([0.9, 0.6, 0.3, 0.6, 0.8, 0.9, 0.3, 0.95])
    assert report.log_loss == pytest.approx(-np.log(p_true).mean())
    assert report.log_loss == pytest.approx(skm.log_loss(Y, PROBA))
    prior = -(3 / 8 * math.log(3 / 8) + 5 / 8 * math.log(5 / 8))
    assert report.log_loss_reduction == pytest.approx((prior - report.log_loss) / prior)
    assert report.n == 8 and report.positive_class == "CD"


def test_per_class_scores(report):
    cd, ud = report.per_class["CD"], report.per_class["UD"]
    assert (cd["precision"], cd["recall"], cd["f1"], cd["support"]) == pytest.approx(
        (2 / 3, 2 / 3, 2 / 3, 3))
    assert (ud["precision"], ud["recall"], ud["f1"], ud["support"]) == pytest.approx(
        (4 / 5, 4 / 5, 4 / 5, 5))
    assert cd["log_loss"] == pytest.approx(-np.log([0.9, 0.6, 0.3]).mean())


@pytest.mark.parametrize(("names", "defect"), [
    (["Negative", "Positive"], "Positive"),  # the concrete-cracks data set
    (["ok", "scratch"], "scratch"),
    (["No-Defect", "defect"], "defect"),
    (["cracked", "uncracked"], "cracked"),
    (["CD", "UD"], "CD"),  # no name says which: the first, as in the tutorial
    (["good", "ok"], "good"),
    # names users give a normal class that sort first and once made it the defect class
    (["crack-free", "cracked"], "cracked"), (["non-defective", "scratch"], "scratch"),
    (["defect free", "porosity"], "porosity"), (["no_damage", "rust"], "rust"),
    (["not cracked", "spalled"], "spalled"), (["Crack", "No Crack"], "Crack"),
])
def test_default_positive_class_is_the_one_not_named_normal(names, defect):
    assert default_positive_class(names) == defect
    proba = [[0.8, 0.2], [0.3, 0.7]]
    report = EvaluationReport.from_predictions([0, 1], proba, names)
    assert report.positive_class == defect
    is_positive, score = report.binary_scores()
    assert score.tolist() == [row[names.index(defect)] for row in proba]
    assert is_positive.tolist() == [names[0] == defect, names[1] == defect]
    other = next(name for name in names if name != defect)  # a given class still wins
    assert EvaluationReport.from_predictions([0, 1], proba, names,
                                             positive_class=other).positive_class == other
    assert default_positive_class(["a", "b", "ok"]) is None


def test_binary_aucs_use_positive_class(report):
    # CD scores of positives .9 .6 .3 beat 5 + 4 + 3 of the 5 negatives' scores
    assert report.roc_auc == pytest.approx(12 / 15)
    assert report.roc_auc == pytest.approx(skm.roc_auc_score(Y == 0, P_CD))
    assert report.pr_auc == pytest.approx(skm.average_precision_score(Y == 0, P_CD))
    ud = EvaluationReport.from_predictions(Y, PROBA, NAMES, positive_class="UD")
    assert ud.roc_auc == pytest.approx(12 / 15)
    assert ud.pr_auc == pytest.approx(skm.average_precision_score(Y == 1, 1 - P_CD))
    assert ud.pr_auc != pytest.approx(report.pr_auc)
    assert report.top_k_accuracy == {}


def test_string_labels_equal_indices(report):
    named = EvaluationReport.from_predictions([NAMES[i] for i in Y], PROBA, NAMES)
    assert named.to_dict() == report.to_dict()


def test_threshold_for_recall_on_constructed_example(report):
    choice = report.threshold_for_recall(0.6)  # needs 2 of 3 positives: 2nd highest score
    assert isinstance(choice, ThresholdChoice)
    assert choice.threshold == pytest.approx(0.6)
    assert (choice.tp, choice.fp, choice.fn, choice.tn) == (2, 1, 1, 4)
    assert choice.recall == pytest.approx(2 / 3) and choice.precision == pytest.approx(2 / 3)
    assert choice.false_alarm_rate == pytest.approx(1 / 5)
    assert not choice.flags_everything

    everything = report.threshold_for_recall(1.0)
    assert everything.threshold == pytest.approx(0.3)
    assert (everything.tp, everything.fp, everything.recall) == (3, 2, 1.0)
    assert everything.false_alarm_rate == pytest.approx(2 / 5)
    # it is the highest such threshold: just above it, recall drops below target
    assert report.at_threshold(0.3 + 1e-9).recall < 1.0


def test_threshold_exact_fraction_is_not_rounded_up():
    y = np.array([0] * 20 + [1] * 20)
    score = np.concatenate([np.linspace(0.99, 0.6, 20), np.linspace(0.5, 0.01, 20)])
    rep = EvaluationReport.from_predictions(y, np.column_stack([score, 1 - score]), NAMES)
    choice = rep.threshold_for_recall(0.95)  # 0.95 * 20 = 19 positives, not 20
    assert choice.tp == 19 and choice.threshold == pytest.approx(np.sort(score[:20])[1])
    assert choice.precision == 1.0 and choice.fp == 0


def test_threshold_degenerate_cases():
    flat = EvaluationReport.from_predictions([0, 1, 0, 1], [[0.5, 0.5]] * 4, NAMES)
    choice = flat.threshold_for_recall(0.9)
    assert choice.flags_everything and choice.recall == 1.0 and choice.precision == 0.5
    assert "flags every image" in repr(choice)
    no_defects = EvaluationReport.from_predictions([1, 1], [[0.2, 0.8], [0.4, 0.6]], NAMES)
    with pytest.raises(ValueError, match="y_true: expected at least one 'CD' sample"):
        no_defects.threshold_for_recall()
    for bad in (0, 1.5, "high", True):
        with pytest.raises(ValueError, match="target_recall: expected a number in"):
            flat.threshold_for_recall(bad)
    multi = EvaluationReport.from_predictions([0, 1, 2], np.eye(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="report: expected a two-class report, received .3 classes.*Fix: "):
        multi.threshold_for_recall()


def test_at_threshold_takes_a_number_as_text_and_refuses_none_in_one_line(report):
    assert report.at_threshold("0.5") == report.at_threshold(0.5)
    with pytest.raises(ValueError, match="threshold: expected a number .*received None.*Fix: "):
        report.at_threshold(None)


def test_single_class_set_gives_nan_auc_and_reduction():
    rep = EvaluationReport.from_predictions([0, 0], [[0.9, 0.1], [0.3, 0.7]], NAMES)
    assert math.isnan(rep.roc_auc) and math.isnan(rep.log_loss_reduction)
    assert rep.pr_auc == pytest.approx(1.0)
    data = json.loads(rep.to_json())
    assert data["roc_auc"] is None and data["log_loss_reduction"] is None


def test_most_confidently_wrong_sorted(report):
    mistakes = report.most_confidently_wrong(5)
    # wrong: sample 2 (CD predicted UD at 0.7) and sample 6 (UD predicted CD at 0.7)
    assert [m.index for m in mistakes] == [2, 6]
    assert [(m.path, m.true_label, m.predicted_label) for m in mistakes] == [
        ("img2.jpg", "CD", "UD"), ("img6.jpg", "UD", "CD")]
    assert [m.confidence for m in mistakes] == pytest.approx([0.7, 0.7])
    assert len(report.most_confidently_wrong(1)) == 1
    proba = np.array([[0.2, 0.8], [0.45, 0.55], [0.05, 0.95], [0.4, 0.6]])
    rep = EvaluationReport.from_predictions([0, 0, 0, 1], proba, NAMES)
    assert [m.index for m in rep.most_confidently_wrong()] == [2, 0, 1]
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        rep.most_confidently_wrong(0)


def test_multiclass_top_k_by_hand():
    names = ["a", "b", "c", "d"]
    # true class is ranked 1st, 2nd, 3rd and 4th in the four rows
    proba = np.array([[0.4, 0.3, 0.2, 0.1],
                      [0.3, 0.4, 0.2, 0.1],
                      [0.4, 0.3, 0.2, 0.1],
                      [0.4, 0.3, 0.2, 0.1]])
    y = np.array([0, 0, 2, 3])
    rep = EvaluationReport.from_predictions(y, proba, names)
    assert rep.accuracy == 0.25
    assert rep.top_k_accuracy == {2: 0.5, 3: 0.75}
    for k in (2, 3):
        assert rep.top_k_accuracy[k] == skm.top_k_accuracy_score(y, proba, k=k, labels=range(4))
    assert rep.roc_auc is None and rep.positive_class is None
    # macro accuracy averages recall over classes present in y_true only (a, c, d)
    assert rep.macro_accuracy == pytest.approx((1 / 2 + 0 + 0) / 3)
    six = EvaluationReport.from_predictions(np.arange(6), np.full((6, 6), 1 / 6), list("abcdef"))
    assert sorted(six.top_k_accuracy) == [2, 3, 4, 5]
    three = EvaluationReport.from_predictions([0, 1, 2], np.eye(3), list("abc"))
    assert three.top_k_accuracy == {2: 1.0}
    assert "top_k_accuracy" in three.to_dict() and "roc_auc" not in three.to_dict()


def test_json_round_trip(report, tmp_path):
    data = report.to_dict()
    for key in ("accuracy", "macro_accuracy", "log_loss", "log_loss_reduction",
                "confusion_matrix", "labels", "per_class", "roc_auc", "pr_auc", "n"):
        assert key in data
    assert json.loads(report.to_json()) == data
    assert data["per_class"]["CD"]["support"] == 3 and data["labels"] == NAMES
    path = tmp_path / "report.json"
    report.to_json(path, include_predictions=True)
    full = json.loads(path.read_text())
    assert full["paths"] == PATHS and len(full["proba"]) == 8
    again = EvaluationReport.from_dict(full)
    assert again.to_dict() == data
    assert again.most_confidently_wrong() == report.most_confidently_wrong()
    with pytest.raises(ValueError, match="include_predictions=True"):
        EvaluationReport.from_dict(data)


def test_to_json_file_is_old_or_new_never_half(report, tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    report.to_json(path)
    before = path.read_bytes()
    real_open = Path.open

    class DiskFull:  # writes half of what it is given, then the disk is full
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: DiskFull(real_open(self, *a, **k)))
    with pytest.raises(OSError, match="No space left"):
        report.to_json(path, include_predictions=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_repr_is_readable(report):
    text = repr(report)
    lines = text.splitlines()
    assert lines[0] == "EvaluationReport: 8 samples, 2 classes (positive class: CD)"
    assert "  accuracy            0.7500" in lines
    assert any(line.split() == ["CD", "0.6667", "0.6667", "0.6667", "3"] for line in lines)
    assert any(line.split() == ["UD", "1", "4"] for line in lines)
    assert any(line.strip().startswith("ROC-AUC") and line.endswith("0.8000") for line in lines)


@pytest.mark.parametrize("y, proba, kwargs, message", [
    (Y, PROBA[:, :1], {}, "proba: expected a 2-D array (samples, 2)"),
    (Y, PROBA * 3, {}, "proba: expected finite, non-negative rows summing to 1"),
    (Y[:5], PROBA, {}, "y_true: expected shape (8,)"),
    (np.array([0, 1, 2, 0, 0, 0, 0, 0]), PROBA, {}, "y_true: expected class indices in [0, 1]"),
    (["CD"] * 7 + ["XX"], PROBA, {}, "y_true: expected labels among"),
    (Y, PROBA, {"positive_class": "crack"}, "positive_class: expected one of"),
    (Y, PROBA, {"paths": ["a.jpg"]}, "paths: expected 8 paths"),
])
def test_input_errors(y, proba, kwargs, message):
    with pytest.raises(ValueError) as err:
        EvaluationReport.from_predictions(y, proba, NAMES, **kwargs)
    assert str(err.value).startswith(message) and "Fix:" in str(err.value)


def test_class_name_errors():
    with pytest.raises(ValueError, match="class_names: expected two or more distinct names"):
        EvaluationReport.from_predictions([0, 1], [[1, 0], [0, 1]], ["a", "a"])
    with pytest.raises(ValueError, match="positive_class: expected None for more than two"
                       ) as err:
        EvaluationReport.from_predictions([0, 1, 2], np.eye(3), list("abc"), positive_class="a")
    # three classes: the fix is to leave it out, not to "pass the defect class name"
    assert str(err.value).endswith("Fix: leave positive_class out (None): with 3 classes "
                                   "there is no one defect score; read per_class and the "
                                   "confusion matrix")


def test_threshold_repr_shows_no_nan_for_what_was_not_asked_or_has_no_cases():
    report = EvaluationReport.from_predictions([0, 0], [[.8, .2], [.3, .7]], ["a", "b"])
    text = repr(report.at_threshold(0.9))  # no target; no negatives; nothing flagged
    assert "nan" not in text and "target" not in text, text
    assert "precision -, false-alarm rate -" in text, text


def test_report_of_one_true_class_shows_undefined_metrics_as_a_dash_not_nan():
    text = repr(EvaluationReport.from_predictions([0, 0], [[.8, .2], [.3, .7]], ["a", "b"]))
    assert "nan" not in text, text
    assert "  ROC-AUC             - (one true class only)" in text, text


def test_repr_of_one_true_class_keeps_macro_avg_with_macro_accuracy():
    # a folder of cracked photos only, all found: no 'macro avg 0.5000' beside 'macro accuracy 1'
    report = EvaluationReport.from_predictions([1, 1, 1], [[.1, .9]] * 3, ["Negative", "Positive"])
    text = repr(report)
    assert "macro accuracy      1.0000" in text
    assert re.search(r"macro avg\s+1\.0000\s+1\.0000\s+1\.0000\s+3", text)
    assert not re.search(r"^\s+Negative\s+0\.0000", text, re.MULTILINE)
    assert "Negative         0         0" in text  # the confusion matrix keeps every class
