"""Grid experiments: many classifiers on cached features, chosen by validation, tested once.

:func:`run_grid` trains one :class:`~vitl.classifier.ImageClassifier` per
combination of the grid's values and per seed. Runs that share a backbone
share one frozen feature extractor, and every image (and augmented view) goes
through the backbone once: later runs read it from the feature cache. The
:class:`ExperimentResults` hold a tidy table (one row per run), pick the best
configuration by a *validation* metric, and evaluate it on the test set once.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from ._errors import check_choice, check_verbose, counted, problem
from ._files import atomic_path
from .augment import AugmentPolicy
from .classifier import ImageClassifier
from .data import load_image_folder, split
from .evaluation import EvaluationReport
from .finetune import FineTuneConfig
from .training import HeadConfig

#: Parameters a grid may not vary (seeds come from ``seeds``; the rest is plumbing).
_NOT_IN_GRID = ("seed", "cache", "verbose", "callbacks", "on_epoch")
#: Grid names ``<param>__<field>`` set one field of these settings objects.
_NESTED = {"head": HeadConfig, "fine_tune": FineTuneConfig, "augment": AugmentPolicy}
#: The validation metrics runs are chosen by.
METRICS = ("val_accuracy", "val_log_loss")


@dataclass
class BestRun:
    """The configuration chosen by validation and its best seed's classifier.

    Attributes:
        params: the grid values of the configuration.
        seed: the seed of the chosen run.
        row: that run's row of the results table.
        summary: the configuration's row of :meth:`ExperimentResults.summary`.
        classifier: the fitted :class:`~vitl.classifier.ImageClassifier`.
    """

    params: dict
    seed: int
    row: dict
    summary: dict
    classifier: ImageClassifier


class ExperimentResults:
    """The runs of :func:`run_grid`: a table, the best configuration, plots.

    Attributes:
        grid: the grid that was run (name -> values).
        seeds: the seeds of every configuration.
        rows: one dict per run: ``run``, the grid parameters, ``seed``,
            ``val_accuracy``, ``val_log_loss``, ``train_seconds`` (fit incl.
            featurizing), ``epochs_run``, ``best_epoch``, ``features_computed``
            (vectors the backbone computed for this run: 0 when all came from
            the cache).
        classifiers: the fitted classifiers, aligned with ``rows``.
        test_report: the :class:`~vitl.evaluation.EvaluationReport` of
            :meth:`evaluate_best_on_test`, once it ran.
    """

    def __init__(self, grid, seeds, rows, classifiers, test=None):
        self.grid = dict(grid)
        self.seeds = tuple(seeds)
        self.rows = rows
        self.classifiers = classifiers
        self.test = test
        self.test_report: EvaluationReport | None = None
        self._tested = None

    def __len__(self) -> int:
        return len(self.rows)

    # ------------------------------------------------------------------ tables
    def to_pandas(self) -> pd.DataFrame:
        """The results table as a ``pandas.DataFrame``, one row per run.

        Returns:
            A DataFrame with the columns of :attr:`rows`.

        Example:
            >>> rows = [{"run": i, "learning_rate": lr, "seed": 0, "val_accuracy": acc,
            ...          "val_log_loss": 1 - acc, "train_seconds": 1.0}
            ...         for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
            >>> results = ExperimentResults({"learning_rate": [0.1, 0.01]}, (0,), rows, ["a", "b"])
            >>> results.to_pandas()["val_accuracy"].tolist()
            [0.8, 0.9]
        """
        return pd.DataFrame(self.rows)

    def to_csv(self, path) -> Path:
        """Write the results table as CSV (``DataFrame.to_csv``); return the path.

        Args:
            path: the CSV file to write, atomically (its folder is created).

        Returns:
            ``path`` as a Path.

        Example:
            >>> import tempfile
            >>> rows = [{"run": i, "learning_rate": lr, "seed": 0, "val_accuracy": acc,
            ...          "val_log_loss": 1 - acc, "train_seconds": 1.0}
            ...         for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
            >>> results = ExperimentResults({"learning_rate": [0.1, 0.01]}, (0,), rows, ["a", "b"])
            >>> path = results.to_csv(tempfile.mkdtemp() + "/grid.csv")
            >>> path.read_text().splitlines()[0]
            'run,learning_rate,seed,val_accuracy,val_log_loss,train_seconds'
        """
        path = Path(path)
        with atomic_path(path, suffix=".csv") as tmp:  # old or new table, never half
            # dtype=object: a column with a None (e.g. input_size) keeps its ints as "32", not "32.0"
            pd.DataFrame(self.rows, dtype=object).to_csv(tmp, index=False)
        return path

    def summary(self, metric: str = "val_accuracy") -> list[dict]:
        """One row per configuration: its grid values, ``runs``, and mean / sd over seeds.

        Args:
            metric: ``"val_accuracy"`` or ``"val_log_loss"``: the order, best first.

        Returns:
            One dict per configuration with columns ``val_accuracy_mean``,
            ``val_accuracy_sd``, ``val_log_loss_mean``, ``val_log_loss_sd``,
            ``train_seconds_mean``, ``train_seconds_sd`` (sd 0 for a single seed).

        Example:
            >>> rows = [{"run": i, "learning_rate": lr, "seed": 0, "val_accuracy": acc,
            ...          "val_log_loss": 1 - acc, "train_seconds": 1.0}
            ...         for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
            >>> results = ExperimentResults({"learning_rate": [0.1, 0.01]}, (0,), rows, ["a", "b"])
            >>> [(e["learning_rate"], e["val_accuracy_mean"]) for e in results.summary()]
            [(0.01, 0.9), (0.1, 0.8)]
        """
        return [entry for entry, _ in self._configurations(metric)]

    def _configurations(self, metric: str) -> list[tuple[dict, list[int]]]:
        """(summary row, run indices) per configuration, best mean ``metric`` first."""
        check_choice("metric", metric, METRICS)
        if not self.rows:
            return []
        frame = self.to_pandas()
        # grouped by the values' repr: grid values (configs, policies) need not be hashable
        groups = frame.groupby([repr([row[name] for name in self.grid]) for row in self.rows],
                               sort=False)
        stats = groups[["val_accuracy", "val_log_loss", "train_seconds"]].agg(["mean", "std"])
        stats.columns = [f"{column}_{'sd' if stat == 'std' else stat}" for column, stat in stats]
        stats = stats.fillna({c: 0.0 for c in stats if c.endswith("_sd")}).sort_values(
            # sd of one seed: 0 (a NaN mean stays NaN); ties: the lower log-loss
            [f"{metric}_mean", "val_log_loss_mean"], ascending=[metric == "val_log_loss", True])
        runs = groups.indices
        return [({name: self.rows[runs[key][0]][name] for name in self.grid}
                 | {"runs": len(runs[key])} | entry.to_dict(), runs[key].tolist())
                for key, entry in stats.iterrows()]

    # ------------------------------------------------------------------ choosing
    def best(self, metric: str = "val_accuracy") -> BestRun:
        """The configuration with the best mean validation ``metric`` over seeds.

        Ties go to the lower mean validation log-loss. Within the configuration,
        the run with the best ``metric`` (then log-loss) is returned.

        Args:
            metric: ``"val_accuracy"`` (higher is better) or ``"val_log_loss"``
                (lower is better).

        Returns:
            A :class:`BestRun`.

        Example:
            >>> rows = [{"run": i, "learning_rate": lr, "seed": 0, "val_accuracy": acc,
            ...          "val_log_loss": 1 - acc, "train_seconds": 1.0}
            ...         for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
            >>> results = ExperimentResults({"learning_rate": [0.1, 0.01]}, (0,), rows, ["a", "b"])
            >>> best = results.best()
            >>> best.params, best.classifier
            ({'learning_rate': 0.01}, 'b')
        """
        if not self.rows:
            raise ValueError(problem("results", "at least one run", "none", "run a grid first"))
        top, runs = self._configurations(metric)[0]
        sign = 1 if metric == "val_log_loss" else -1
        index = min(runs, key=lambda i: (sign * self.rows[i][metric], self.rows[i]["val_log_loss"]))
        row = self.rows[index]
        return BestRun({name: row[name] for name in self.grid}, row["seed"], dict(row), top,
                       self.classifiers[index])

    def evaluate_best_on_test(self, metric: str = "val_accuracy",
                              positive_class=None) -> EvaluationReport:
        """Evaluate the best run (by validation ``metric``) on the test set, once.

        The test set plays no part in choosing; asking again returns the same
        report rather than evaluating anew (asking with another metric is
        refused: choosing among test results would make them optimistic).

        Args:
            metric: the validation metric choosing the run, as for :meth:`best`.
            positive_class: passed to ``ImageClassifier.evaluate``.

        Returns:
            The :class:`~vitl.evaluation.EvaluationReport` (also kept as ``test_report``).

        Raises:
            ValueError: ``run_grid`` got no test set, or another metric was asked.

        Example:
            >>> rows = [{"run": i, "learning_rate": lr, "seed": 0, "val_accuracy": acc,
            ...          "val_log_loss": 1 - acc, "train_seconds": 1.0}
            ...         for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
            >>> results = ExperimentResults({"learning_rate": [0.1, 0.01]}, (0,), rows, ["a", "b"])
            >>> results.evaluate_best_on_test()
            Traceback (most recent call last):
            ...
            ValueError: test set: expected run_grid(..., test=...), received None. Fix: pass a test collection to run_grid
        """
        if self.test is None:
            raise ValueError(problem("test set", "run_grid(..., test=...)", None,
                                     "pass a test collection to run_grid"))
        if self._tested not in (None, metric):
            raise ValueError(problem(
                "metric", f"{self._tested!r}, the one the test set was already used for",
                metric, "report the existing test_report; choose by validation only"))
        if self._tested is None:
            self.test_report = self.best(metric).classifier.evaluate(
                self.test, positive_class=positive_class)
            self._tested = metric
        return self.test_report

    # ------------------------------------------------------------------ display
    def plot(self, metric: str = "val_accuracy"):
        """Bar chart of every configuration's mean validation ``metric`` (± sd over seeds).

        Args:
            metric: ``"val_accuracy"`` or ``"val_log_loss"``.

        Returns:
            A ``matplotlib.figure.Figure``; the best configuration is highlighted.

        Example:
            >>> rows = [{"run": i, "learning_rate": lr, "seed": 0, "val_accuracy": acc,
            ...          "val_log_loss": 1 - acc, "train_seconds": 1.0}
            ...         for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
            >>> results = ExperimentResults({"learning_rate": [0.1, 0.01]}, (0,), rows, ["a", "b"])
            >>> [float(bar.get_width()) for bar in results.plot().axes[0].patches]
            [0.9, 0.8]
        """
        from matplotlib.figure import Figure

        table = self.summary(metric)
        means = np.array([entry[f"{metric}_mean"] for entry in table])
        sds = np.array([entry[f"{metric}_sd"] for entry in table])
        fig = Figure(figsize=(7, 0.9 + 0.38 * len(table)), layout="constrained")
        ax = fig.add_subplot()
        y = np.arange(len(table))[::-1]
        ax.barh(y, means, xerr=sds, color=["tab:orange"] + ["tab:blue"] * (len(table) - 1), capsize=3)
        ax.set_yticks(y, [self._label(entry) for entry in table], fontsize=8)
        ax.set_xlabel(f"{metric} (mean ± sd over {counted(len(self.seeds), 'seed')})")
        if metric.endswith("accuracy"):
            low = np.min(means - sds)
            ax.set_xlim(max(0.0, math.floor(low * 20) / 20 - 0.05), 1.0)
        ax.set_title("Grid results (best in orange)")
        return fig

    def _table(self, render: str) -> str:
        """The runs' table through ``DataFrame.to_string`` or ``DataFrame.to_html``."""
        columns = ["run", *self.grid, "seed", "val_accuracy", "val_log_loss", "train_seconds",
                   "epochs_run", "features_computed"]
        frame = pd.DataFrame(self.rows, dtype=object).reindex(columns=columns)  # ints stay ints
        for name in self.grid:  # grid values as given: a learning rate 1e-05 is not 0.0000
            frame[name] = pd.Series([f"{v:g}" if isinstance(v, float) and not math.isnan(v) else v
                                     for v in frame[name]], index=frame.index, dtype=object)
        frame = frame.where(frame.notna(), np.nan)  # None (e.g. fine_tune=None) shows as "-" too
        return getattr(frame, render)(index=False, float_format="{:.4f}".format, na_rep="-")

    def __repr__(self) -> str:
        return self._headline() + ("\n" + self._table("to_string") if self.rows else "")

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self._headline())}</p>" + self._table("to_html")

    # ------------------------------------------------------------------ helpers
    def _headline(self) -> str:
        shape = f"{counted(len(ParameterGrid(self.grid)), 'configuration')} x " \
                f"{counted(len(self.seeds), 'seed')}"
        text = f"ExperimentResults: {counted(len(self.rows), 'run')} ({shape})"
        if self.rows:
            best = self.best().summary
            text += f"; best by val_accuracy: {self._label(best)} ({best['val_accuracy_mean']:.4f})"
        if self.test_report is not None:
            text += f"; test accuracy {self.test_report.accuracy:.4f}"
        return text

    def _label(self, entry) -> str:
        return ", ".join(f"{name}={entry[name]}" for name in self.grid) or "(base)"


def run_grid(train, validation=None, test=None, *, grid: dict, seeds=(0,), base=None,
             cache="default", verbose=1) -> ExperimentResults:
    """Train one classifier per grid point and seed; collect validation metrics.

    Every run is ``sklearn.base.clone(base).set_params(**point, seed=seed)``.
    Runs that share a backbone share one frozen extractor
    (:meth:`~vitl.classifier.ImageClassifier.build_extractor`, set as the
    run's ``backbone``), and every image (and augmented view) goes through the
    backbone once: later runs read it from the feature cache.

    Args:
        train: training images (:class:`~vitl.data.ImageCollection` or class-folder root).
        validation: validation images for choosing; None holds out
            ``base.validation_fraction`` of ``train`` once (the same for every run).
        test: optional test images for :meth:`ExperimentResults.evaluate_best_on_test`.
        grid: ``{parameter: [values...]}`` over ``ImageClassifier`` parameters;
            ``head__<field>``, ``fine_tune__<field>`` and ``augment__<field>``
            set one field of :class:`~vitl.training.HeadConfig`,
            :class:`~vitl.finetune.FineTuneConfig` or
            :class:`~vitl.augment.AugmentPolicy`, e.g. ``{"backbone": [...],
            "head__learning_rate": [...], "augment": [0, 4]}``. Runs go in
            ``ParameterGrid`` order (names sorted, the last varying fastest),
            each seed in turn.
        seeds: the seeds every grid point runs with.
        base: the :class:`~vitl.classifier.ImageClassifier` every run starts
            from (None: ``ImageClassifier()``).
        cache: the feature cache (``"default"``, a folder, or None: then every
            run featurizes again).
        verbose: 0 silent, 1 a progress bar over runs (the runs themselves are silent).

    Returns:
        :class:`ExperimentResults`.

    Raises:
        ValueError: unknown or fixed parameters in ``grid``, empty value lists, no seeds.

    Example:
        >>> import tempfile
        >>> from vitl.data import load_image_folder, split
        >>> from vitl.datasets import make_synthetic_cracks
        >>> images = load_image_folder(make_synthetic_cracks(tempfile.mkdtemp() + "/s", 8, size=64,
        ...                            verbose=0), verbose=0)
        >>> parts = split(images, 0.5, 0.25, 0.25, seed=0)
        >>> base = ImageClassifier("mobilenetv2", weights=None, input_size=64,
        ...                        head=HeadConfig(epochs=2))
        >>> results = run_grid(parts.train, parts.validation, parts.test, base=base,
        ...                    grid={"head__learning_rate": [0.01, 0.1]}, seeds=(0, 1),
        ...                    cache=tempfile.mkdtemp(), verbose=0)
        >>> len(results), sorted(results.rows[0])[:4]
        (4, ['best_epoch', 'epochs_run', 'features_computed', 'head__learning_rate'])
        >>> results.best().params["head__learning_rate"] in (0.01, 0.1)
        True
    """
    from tqdm import tqdm

    base = ImageClassifier() if base is None else base
    points = _check_grid(grid, base)
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(problem("seeds", "a non-empty list of integers >= 0", seeds,
                                 "pass seeds=(0, 1, 2)"))
    train, validation, test = (load_image_folder(images, verbose=0)
                               if isinstance(images, (str, Path)) else images
                               for images in (train, validation, test))
    if validation is None:
        fraction = base.validation_fraction
        parts = split(train, 1 - fraction, fraction, 0.0, seed=0)
        train, validation = parts.train, parts.validation
    extractors = {}  # runs with the same backbone share one frozen extractor
    rows, classifiers = [], []
    jobs = [(point, seed) for point in points for seed in seeds]
    for point, seed in tqdm(jobs, desc="grid", unit="run", disable=not check_verbose(verbose)):
        clf = _grid_point(base, point).set_params(seed=seed, cache=cache, verbose=0)
        key = (repr(clf.backbone), repr(clf.weights), clf.input_size, clf.precision)
        if key not in extractors:
            extractors[key] = clf.build_extractor()
        started = time.perf_counter()
        clf.set_params(backbone=extractors[key]).fit(train, validation)
        seconds = time.perf_counter() - started
        report = clf.evaluate(validation)
        features = clf.fit_info_["features"].values()
        computed = sum(part["computed"] for part in features if isinstance(part, dict))
        rows.append({"run": len(rows), **point, "seed": seed, "val_accuracy": float(report.accuracy),
                     "val_log_loss": float(report.log_loss), "train_seconds": seconds,
                     "epochs_run": len(clf.history_), "best_epoch": clf.history_.best_epoch,
                     "features_computed": computed})
        classifiers.append(clf)
    return ExperimentResults(grid, seeds, rows, classifiers, test)


def _grid_point(base: ImageClassifier, point: dict) -> ImageClassifier:
    """``clone(base)`` with the point's parameters; ``<param>__<field>`` replaces one field."""
    clf = clone(base).set_params(**{k: v for k, v in point.items() if "__" not in k})
    for name, value in point.items():
        if "__" in name:
            owner, field = name.split("__", 1)
            current = getattr(clf, owner)
            if not isinstance(current, _NESTED[owner]):  # None, or augment=K
                current = AugmentPolicy(views=current) if owner == "augment" else _NESTED[owner]()
            clf.set_params(**{owner: replace(current, **{field: value})})
    return clf


def _check_grid(grid, base) -> list[dict]:
    """The grid's points (sklearn's ``ParameterGrid`` checks the shape), after checking the names."""
    try:
        points = list(ParameterGrid([grid]))  # [grid]: one dict, not sklearn's list of dicts
    except (TypeError, ValueError) as err:
        raise ValueError(problem("grid", "a dict {parameter: [values...]}, no list empty",
                                 str(err).splitlines()[0],
                                 "pass e.g. grid={'head__learning_rate': [0.01, 0.001]}")) from None
    names = [n for n in base.get_params(deep=False) if n not in _NOT_IN_GRID]
    names += [f"{owner}__{f.name}" for owner, kind in _NESTED.items() for f in fields(kind)]
    for name in grid:
        if name not in names:
            fix = {"seed": "pass seeds=(0, 1, 2) instead"}.get(
                name, "set it in run_grid's arguments" if name in _NOT_IN_GRID
                else "check the spelling")
            raise ValueError(problem("grid parameter", f"an ImageClassifier parameter other than "
                                     f"{', '.join(_NOT_IN_GRID)}, or <param>__<field> "
                                     f"({', '.join(names)})", name, fix))
    return points


__all__ = ["BestRun", "ExperimentResults", "run_grid"]
