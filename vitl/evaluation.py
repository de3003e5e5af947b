"""Evaluate predicted probabilities: ML.NET's metrics, per-class scores, a threshold for a recall.

:class:`EvaluationReport` computes, from true labels and predicted class
probabilities, the metrics ML.NET's multiclass evaluator reports (accuracy,
macro accuracy, log-loss, log-loss reduction, confusion matrix) plus
per-class precision / recall / F1 (``sklearn.metrics``), ROC-AUC and PR-AUC for
two classes and top-k accuracy for many. It keeps the labels, probabilities and
image paths, so plots (:mod:`vitl.plots`) and the "most confidently wrong"
list can be drawn from it.

In inspection a missed crack costs more than a false alarm, so for two classes
:meth:`EvaluationReport.threshold_for_recall` picks the highest score
threshold on the defect class that still catches a target share of defects.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ._errors import check_int, is_real, problem, require
from ._files import write_bytes_atomic

#: Rows of ``proba`` must sum to 1 within this tolerance.
_SUM_TOLERANCE = 1e-3

#: Class names (in lower case, without spaces, ``-`` and ``_``) that mean "no defect".
NORMAL_CLASS_NAMES = frozenset({
    "negative", "normal", "ok", "good", "pass", "intact", "clean", "healthy", "undamaged",
    "uncracked", "noncracked", "nocrack", "nocracks", "nodefect", "nondefect", "nodefects",
    "notcracked", "crackfree", "defectfree", "nondefective", "nodamage", "damagefree"})


def default_positive_class(class_names) -> str | None:
    """Return the defect class of two: the one not named like a normal class, else the first.

    ``Negative`` / ``Positive`` gives ``Positive`` and ``ok`` / ``scratch`` gives ``scratch``
    (names in :data:`NORMAL_CLASS_NAMES`); otherwise the first class, as in the tutorial's
    ``CD`` / ``UD``.

    Args:
        class_names: the class names, in column order.

    Returns:
        A class name, or None for more (or fewer) than two classes.

    Example:
        >>> default_positive_class(["Negative", "Positive"]), default_positive_class(["CD", "UD"])
        ('Positive', 'CD')
    """
    names = [str(name) for name in class_names]
    if len(names) != 2:
        return None
    normal = [name.casefold().translate({ord(c): None for c in " -_"}) in NORMAL_CLASS_NAMES
              for name in names]
    return names[1] if normal == [True, False] else names[0]


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold on the positive-class score and what it achieves.

    An image is flagged as the positive (defect) class when its score is
    ``>= threshold``.

    Attributes:
        threshold: the chosen score threshold.
        target_recall: the recall asked for.
        recall: recall achieved on the evaluated set (>= ``target_recall``).
        precision: share of flagged images that are positives.
        false_alarm_rate: share of negatives flagged (false-positive rate; NaN
            when there are no negatives).
        positive_class: the class name the score belongs to.
        tp, fp, fn, tn: counts at the threshold.
        flags_everything: True when reaching the target means flagging every
            image (the scores do not separate the classes well enough).

    Example:
        >>> report = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], ["a", "b"])
        >>> report.threshold_for_recall(1.0)
        ThresholdChoice(flag 'a' when score >= 0.8000: recall 1.000 (target 1.000), precision 1.000, false-alarm rate 0.000; tp=1 fp=0 fn=0 tn=1)
    """

    threshold: float
    target_recall: float
    recall: float
    precision: float
    false_alarm_rate: float
    positive_class: str
    tp: int
    fp: int
    fn: int
    tn: int
    flags_everything: bool

    def to_dict(self) -> dict:
        """Return the fields as JSON-able values (NaN becomes None).

        Returns:
            ``{field: value}``.

        Example:
            >>> report = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], ["a", "b"])
            >>> report.at_threshold(0.5).to_dict()["tp"]
            1
        """
        return _plain(dataclasses.asdict(self))

    def __repr__(self) -> str:
        def rate(value):  # NaN: no case to count (e.g. nothing flagged) or no target asked
            return "-" if math.isnan(value) else f"{value:.3f}"

        target = "" if math.isnan(self.target_recall) else f" (target {rate(self.target_recall)})"
        text = (f"ThresholdChoice(flag '{self.positive_class}' when score >= {self.threshold:.4f}: "
                f"recall {rate(self.recall)}{target}, precision {rate(self.precision)}, "
                f"false-alarm rate {rate(self.false_alarm_rate)}; "
                f"tp={self.tp} fp={self.fp} fn={self.fn} tn={self.tn}")
        return text + ("; flags every image)" if self.flags_everything else ")")


class Mistake(NamedTuple):
    """One misclassified sample (see :meth:`EvaluationReport.most_confidently_wrong`).

    Example:
        >>> report = EvaluationReport.from_predictions([0], [[.1, .9]], ["a", "b"], paths=["x.png"])
        >>> report.most_confidently_wrong()
        [Mistake(index=0, path='x.png', true_label='a', predicted_label='b', confidence=0.9)]
    """

    index: int
    path: str | None
    true_label: str
    predicted_label: str
    confidence: float


class EvaluationReport:
    """Metrics of predicted class probabilities against true labels.

    Build it with :meth:`from_predictions`. Attributes (all computed once):

    Attributes:
        class_names: class names, in the column order of ``proba``.
        y_true: ``(N,)`` true class indices.
        proba: ``(N, C)`` predicted probabilities.
        y_pred: ``(N,)`` predicted class indices (argmax).
        paths: image paths or None.
        positive_class: for two classes, the class whose score ROC/PR and
            thresholds use (default :func:`default_positive_class`); None for more
            classes.
        n: number of samples.
        accuracy: share of correct predictions (ML.NET MicroAccuracy).
        macro_accuracy: mean per-class recall over the classes present in
            ``y_true`` (ML.NET MacroAccuracy).
        log_loss: mean ``-ln p(true class)`` (ML.NET LogLoss), by
            ``sklearn.metrics.log_loss(y_true, proba, labels=range(C))`` as the
            training history's ``val_loss``, so the two agree.
        log_loss_reduction: ``(LL_prior - LL) / LL_prior`` where ``LL_prior``
            is the log-loss of always predicting the label distribution of
            ``y_true``, i.e. its entropy (ML.NET LogLossReduction; 1 is
            perfect, 0 no better than the prior, negative worse; NaN when only
            one class is present).
        confusion_matrix: ``(C, C)`` counts, rows true, columns predicted.
        per_class: ``{name: {precision, recall, f1, support, log_loss}}``.
        roc_auc, pr_auc: for two classes, area under the ROC curve and average
            precision of the positive-class score (NaN when ``y_true`` holds a
            single class); None for more classes.
        top_k_accuracy: ``{k: accuracy}`` for k = 2..min(5, C - 1) when C >= 3,
            else empty.

    Example:
        >>> report = EvaluationReport.from_predictions([0, 1, 1], [[.8, .2], [.3, .7], [.6, .4]],
        ...                                            ["CD", "UD"])
        >>> print(repr(report).splitlines()[0])
        EvaluationReport: 3 samples, 2 classes (positive class: CD)
        >>> round(report.accuracy, 3), report.confusion_matrix.tolist()
        (0.667, [[1, 0], [1, 1]])
    """

    def __init__(self, y_true, proba, class_names, paths=None, positive_class=None):
        self.class_names = [str(c) for c in class_names]
        self.y_true, self.proba = y, proba = _check_inputs(y_true, proba, self.class_names)
        self.n, labels = len(y), list(range(len(self.class_names)))
        self.paths = None if paths is None else [str(p) for p in paths]
        require(self.paths is None or len(self.paths) == self.n, "paths",
                f"{self.n} paths, one per sample", len(self.paths or ()),
                "pass the image paths in the order of y_true")
        allowed = self.class_names if len(labels) == 2 else [None]
        self.positive_class = (default_positive_class(self.class_names) if positive_class is None
                               else str(positive_class))
        require(self.positive_class in allowed, "positive_class", f"one of {self.class_names}"
                if len(labels) == 2 else "None for more than two classes", positive_class,
                "pass the defect class name, or leave it out" if len(labels) == 2 else
                f"leave positive_class out (None): with {len(labels)} classes there is no one "
                "defect score; read per_class and the confusion matrix")
        self.y_pred = proba.argmax(axis=1)
        self.accuracy = float(skm.accuracy_score(y, self.y_pred))
        with warnings.catch_warnings():  # a class predicted but absent from y_true is fine here
            warnings.simplefilter("ignore", UserWarning)
            self.macro_accuracy = float(skm.balanced_accuracy_score(y, self.y_pred))
        self.confusion_matrix = skm.confusion_matrix(y, self.y_pred, labels=labels)
        self.log_loss = float(skm.log_loss(y, proba, labels=labels))
        support = self.confusion_matrix.sum(axis=1)
        # ML.NET's LogLossReduction is relative to always predicting the label distribution,
        # whose log-loss is its entropy (undefined for one class: that prior is perfect).
        shares = support[support > 0] / self.n
        prior = -float(np.sum(shares * np.log(shares)))
        self.log_loss_reduction = 1 - self.log_loss / prior if len(shares) > 1 else math.nan
        table = dict(zip(("precision", "recall", "f1", "support"), skm.precision_recall_fscore_support(
            y, self.y_pred, labels=labels, zero_division=0)))
        table["log_loss"] = [skm.log_loss(y[y == i], proba[y == i], labels=labels)
                             if support[i] else math.nan for i in labels]
        self.per_class = pd.DataFrame(table, index=self.class_names).to_dict("index")
        self.roc_auc = self.pr_auc = None
        self.top_k_accuracy = {k: float(skm.top_k_accuracy_score(y, proba, k=k, labels=labels))
                               for k in range(2, min(5, len(labels) - 1) + 1)}
        if len(labels) == 2:
            is_positive, score = self.binary_scores()
            both = 0 < is_positive.sum() < self.n
            self.roc_auc = float(skm.roc_auc_score(is_positive, score)) if both else math.nan
            self.pr_auc = (float(skm.average_precision_score(is_positive, score))
                           if is_positive.any() else math.nan)

    @classmethod
    def from_predictions(cls, y_true, proba, class_names: Sequence[str], paths=None,
                         positive_class: str | None = None) -> EvaluationReport:
        """Compute all metrics from labels and probabilities.

        Args:
            y_true: ``(N,)`` true labels, as class indices or class names.
            proba: ``(N, C)`` probabilities, columns in ``class_names`` order,
                rows summing to 1.
            class_names: the C class names.
            paths: optional N image paths (for galleries of mistakes).
            positive_class: two classes only: the defect class whose score
                ROC-AUC, PR-AUC and :meth:`threshold_for_recall` use. Default:
                :func:`default_positive_class` (the class not named like a normal
                one, e.g. ``Positive`` beside ``Negative``; else the first, as the
                tutorial's ``CD``, cracked deck).

        Returns:
            The :class:`EvaluationReport`.

        Raises:
            ValueError: on inconsistent shapes, labels outside the classes,
                probabilities that are negative or do not sum to 1, or
                ``positive_class`` with more than two classes.

        Example:
            >>> report = EvaluationReport.from_predictions(
            ...     ["CD", "CD", "UD", "UD"],
            ...     [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]], ["CD", "UD"])
            >>> report.accuracy, report.macro_accuracy, report.roc_auc
            (0.75, 0.75, 1.0)
            >>> report.confusion_matrix.tolist()
            [[1, 1], [0, 2]]
        """
        return cls(y_true, proba, class_names, paths=paths, positive_class=positive_class)

    def binary_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(is_positive, score)`` arrays (two classes only).

        Returns:
            ``(is_positive, score)``: ``is_positive`` marks the samples of
            :attr:`positive_class`; ``score`` is every sample's predicted
            probability of that class.

        Raises:
            ValueError: the report has more than two classes.

        Example:
            >>> report = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], ["a", "b"])
            >>> [array.tolist() for array in report.binary_scores()]
            [[True, False], [0.8, 0.3]]
        """
        require(self.positive_class is not None, "report", "a two-class report",
                f"{len(self.class_names)} classes", "evaluate a defect / no-defect set; "
                "for more classes use the confusion matrix")
        positive = self.class_names.index(self.positive_class)
        return self.y_true == positive, self.proba[:, positive]

    # ---------------------------------------------------------------- decisions
    def threshold_for_recall(self, target_recall: float = 0.95) -> ThresholdChoice:
        """Choose the highest positive-class threshold that reaches ``target_recall``.

        A higher threshold flags fewer images, so the highest one that still
        catches ``target_recall`` of the positives gives the fewest false
        alarms for that recall. Computed on this report's data: pick it on a
        validation set, not the test set you report.

        Args:
            target_recall: share of positives to catch, in (0, 1].

        Returns:
            A :class:`ThresholdChoice`.

        Raises:
            ValueError: more than two classes, ``target_recall`` outside (0, 1],
                or no positive sample to compute recall on.

        Example:
            >>> report = EvaluationReport.from_predictions(
            ...     [0, 0, 0, 0, 1, 1, 1, 1],
            ...     [[.9, .1], [.8, .2], [.6, .4], [.3, .7], [.7, .3], [.2, .8], [.1, .9], [0, 1]],
            ...     ["CD", "UD"])  # positive class: CD (the first), score = column 0
            >>> choice = report.threshold_for_recall(0.75)
            >>> choice.threshold, choice.recall, choice.precision, choice.fp
            (0.6, 0.75, 0.75, 1)
        """
        is_positive, score = self.binary_scores()
        require(is_real(target_recall) and 0 < target_recall <= 1, "target_recall",
                "a number in (0, 1]", target_recall, "pass e.g. target_recall=0.95")
        require(is_positive.any(), "y_true", f"at least one '{self.positive_class}' sample",
                "none", "evaluate on a set that contains defects")
        _, recall, thresholds = skm.precision_recall_curve(is_positive, score)
        # Thresholds rise as recall falls: the last one reaching the target is the highest
        # (the tolerance keeps e.g. recall 19 / 20 from missing 0.95 by a rounding error).
        threshold = thresholds[recall[:-1] >= target_recall - 1e-9][-1]
        return dataclasses.replace(self.at_threshold(threshold), target_recall=float(target_recall))

    def at_threshold(self, threshold: float) -> ThresholdChoice:
        """Return the counts and rates for flagging positives when score >= ``threshold``.

        Args:
            threshold: the score threshold on the positive class.

        Returns:
            A :class:`ThresholdChoice` (its ``target_recall`` is NaN).

        Raises:
            ValueError: the report has more than two classes, or ``threshold`` is not a number.

        Example:
            >>> report = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], ["a", "b"])
            >>> choice = report.at_threshold(0.25)
            >>> choice.tp, choice.fp, choice.recall
            (1, 1, 1.0)
        """
        is_positive, score = self.binary_scores()
        try:  # float() as before: "0.5" is accepted, None is a one-line error
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(problem("threshold", "a number (a score, e.g. 0.5)", threshold,
                                     "pass e.g. at_threshold(0.5)")) from None
        flagged = score >= threshold
        tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(is_positive, flagged,
                                                                labels=[False, True]).ravel())
        return ThresholdChoice(
            threshold=float(threshold), target_recall=math.nan,
            recall=tp / (tp + fn) if tp + fn else math.nan,
            precision=tp / (tp + fp) if tp + fp else math.nan,
            false_alarm_rate=fp / (fp + tn) if fp + tn else math.nan,
            positive_class=self.positive_class, tp=tp, fp=fp, fn=fn, tn=tn,
            flags_everything=bool(flagged.all()))

    def most_confidently_wrong(self, k: int = 8) -> list[Mistake]:
        """Return up to ``k`` misclassified samples, most confident first.

        Confidence is the probability given to the (wrong) predicted class.

        Args:
            k: the most to return (an integer >= 1).

        Returns:
            A list of :class:`Mistake`.

        Raises:
            ValueError: ``k`` is not an integer >= 1.

        Example:
            >>> report = EvaluationReport.from_predictions(
            ...     [0, 0, 1], [[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]], ["CD", "UD"],
            ...     paths=["a.jpg", "b.jpg", "c.jpg"])
            >>> [(m.path, m.predicted_label, m.confidence)
            ...  for m in report.most_confidently_wrong(5)]
            [('a.jpg', 'UD', 0.8), ('b.jpg', 'UD', 0.6)]
        """
        check_int("k", k, minimum=1, fix="pass k=8")
        wrong = np.flatnonzero(self.y_pred != self.y_true)
        confidence = self.proba[wrong, self.y_pred[wrong]]
        return [Mistake(index=int(i), path=None if self.paths is None else self.paths[i],
                        true_label=self.class_names[self.y_true[i]],
                        predicted_label=self.class_names[self.y_pred[i]],
                        confidence=float(self.proba[i, self.y_pred[i]]))
                for i in wrong[np.argsort(-confidence, kind="stable")][:k]]

    # ------------------------------------------------------------------ output
    def to_dict(self, include_predictions: bool = False) -> dict:
        """Return the metrics as plain JSON-able types (NaN becomes None).

        Args:
            include_predictions: also include ``y_true``, ``proba`` and ``paths``,
                so :meth:`from_dict` can rebuild the full report.

        Returns:
            A dict of lists, numbers and strings.

        Example:
            >>> report = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], ["a", "b"])
            >>> report.to_dict()["confusion_matrix"]
            [[1, 0], [0, 1]]
        """
        names = ["accuracy", "macro_accuracy", "log_loss", "log_loss_reduction",
                 "confusion_matrix", "per_class"]
        names += ["positive_class", "roc_auc", "pr_auc"] if self.positive_class else \
            ["top_k_accuracy"]
        names += ["y_true", "proba", "paths"] if include_predictions else []
        return _plain({"n": self.n, "labels": self.class_names,
                       **{name: getattr(self, name) for name in names}})

    def to_json(self, path=None, include_predictions: bool = False, indent: int = 2) -> str:
        """Return :meth:`to_dict` as JSON text; also write it to ``path`` when given.

        Args:
            path: optional file to write (atomically: a crash leaves the old file).
            include_predictions: as for :meth:`to_dict`.
            indent: JSON indentation.

        Returns:
            The JSON text.

        Example:
            >>> report = EvaluationReport.from_predictions([0, 1], [[.8, .2], [.3, .7]], ["a", "b"])
            >>> report.to_json(indent=None)[:25]
            '{"n": 2, "labels": ["a", '
        """
        text = json.dumps(self.to_dict(include_predictions), indent=indent)
        if path is not None:
            write_bytes_atomic(path, (text + "\n").encode("utf-8"))  # old or new, never half
        return text

    @classmethod
    def from_dict(cls, values: dict) -> EvaluationReport:
        """Rebuild a report from ``to_dict(include_predictions=True)`` output.

        Args:
            values: the dict (or its JSON, parsed).

        Returns:
            A new :class:`EvaluationReport`.

        Raises:
            ValueError: ``values`` lacks the predictions.

        Example:
            >>> report = EvaluationReport.from_predictions(
            ...     [0, 1], [[0.7, 0.3], [0.2, 0.8]], ["a", "b"])
            >>> again = EvaluationReport.from_dict(report.to_dict(include_predictions=True))
            >>> again.to_dict() == report.to_dict()
            True
        """
        missing = sorted({"y_true", "proba", "labels"} - set(values))
        require(not missing, "report dict", "keys y_true, proba and labels", f"missing {missing}",
                "save it with to_dict(include_predictions=True)")
        return cls(values["y_true"], values["proba"], values["labels"],
                   paths=values.get("paths"), positive_class=values.get("positive_class"))

    def __repr__(self) -> str:
        head = f"EvaluationReport: {self.n} samples, {len(self.class_names)} classes"
        if self.positive_class is not None:
            head += f" (positive class: {self.positive_class})"
        headline = {"accuracy": self.accuracy, "macro accuracy": self.macro_accuracy,
                    "log-loss": self.log_loss, "log-loss reduction": self.log_loss_reduction}
        if self.roc_auc is not None:
            headline.update({"ROC-AUC": self.roc_auc, "PR-AUC (AP)": self.pr_auc})
        headline.update({f"top-{k} accuracy": v for k, v in self.top_k_accuracy.items()})
        matrix = pd.DataFrame(self.confusion_matrix, self.class_names, self.class_names)
        shown = {name: "- (one true class only)" if math.isnan(value) else f"{value:.4f}"
                 for name, value in headline.items()}  # NaN: undefined for one true class
        # a class neither present nor predicted has no row: its 0s would pull 'macro avg' down
        seen = np.flatnonzero(self.confusion_matrix.sum(axis=0) + self.confusion_matrix.sum(axis=1))
        return "\n".join([head, *(f"  {name:<20}{value}" for name, value in shown.items()),
                          "", skm.classification_report(
                              self.y_true, self.y_pred, labels=seen,
                              target_names=[self.class_names[i] for i in seen], digits=4,
                              zero_division=0),
                          "Confusion matrix (rows: true, columns: predicted)",
                          matrix.to_string()])


def _check_inputs(y_true, proba, class_names) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true as class indices, proba with rows summing to 1 exactly)``, or a ValueError."""
    n_classes = len(class_names)
    require(n_classes >= 2 and len(set(class_names)) == n_classes, "class_names",
            "two or more distinct names", class_names,
            "pass the class names in the column order of proba")
    proba = np.asarray(proba, dtype=np.float64)
    require(proba.ndim == 2 and proba.shape[1:] == (n_classes,) and len(proba) > 0, "proba",
            f"a 2-D array (samples, {n_classes}) with a row per sample", f"shape {proba.shape}",
            "pass the model's predicted probabilities")
    sums = proba.sum(axis=1, keepdims=True)
    require(np.isfinite(proba).all() and (proba >= 0).all()
            and np.abs(sums - 1).max() <= _SUM_TOLERANCE, "proba",
            "finite, non-negative rows summing to 1", "other values",
            "pass softmax probabilities, not logits")
    raw = np.asarray(y_true)
    require(raw.shape == (len(proba),), "y_true", f"shape ({len(proba)},) matching proba",
            f"shape {raw.shape}", "pass one label per row of proba")
    if raw.dtype.kind in "USO":
        unknown = sorted({str(v) for v in raw} - set(class_names))
        require(not unknown, "y_true", f"labels among {class_names}", unknown[:5],
                "check class_names")
        raw = np.array([class_names.index(str(v)) for v in raw])
    y = raw.astype(np.int64)
    require((y == raw).all() and 0 <= y.min() and y.max() < n_classes, "y_true",
            f"class indices in [0, {n_classes - 1}]", f"values from {raw.min()} to {raw.max()}",
            "pass integers 0..C-1 or class names")
    return y, proba / sums  # rows summing to 1 exactly, as sklearn's log_loss wants them


def _plain(value):
    """Return a JSON-able copy of ``value``: numpy values as Python ones, NaN and inf as None."""
    text = json.dumps(value, default=lambda item: item.tolist())  # numpy arrays and scalars
    return json.loads(text, parse_constant=lambda constant: None)


__all__ = ["EvaluationReport", "Mistake", "ThresholdChoice"]
