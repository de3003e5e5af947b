"""Train the classification head on cached bottleneck features with Keras ``model.fit``.

ML.NET's ``ImageClassificationTrainer`` runs every image once through the frozen
backbone ("bottleneck phase"), then trains one softmax layer on the cached
features. This module is that second phase, on ``(N, D)`` float32 feature
arrays, in plain Keras: a ``tf.data`` pipeline over the feature tensors,
``model.fit``, and Keras callbacks (``EarlyStopping(restore_best_weights=True)``,
``tqdm.keras.TqdmCallback`` for the bar, :class:`EpochLog` for ML.NET's log).
Measurements behind the defaults: ``benchmarks/README.md`` ("Training", "Head defaults").

* :class:`HeadConfig` - the hyper-parameters. The defaults were chosen by
  measurement (``benchmarks/bench_head_defaults.py``); ``HeadConfig.mlnet()``
  gives ML.NET's settings.
* :func:`build_head` - the Keras head model (softmax output).
* :func:`train_head` - ``model.fit``; returns the model and a :class:`TrainingHistory`.
* :class:`EpochLog` - a Keras callback printing ML.NET-style epoch lines.
"""

from __future__ import annotations

import html
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import accuracy_score, log_loss
from sklearn.utils import check_X_y
from sklearn.utils.class_weight import compute_class_weight

from ._errors import (
    changed_fields_repr,
    check_choice,
    check_fields,
    check_int,
    check_verbose,
    config_from_dict,
    counted,
    is_int,
    is_real,
    problem,
    require,
)

LR_SCHEDULES = ("exponential", "constant", "cosine")
OPTIMIZERS = ("sgd", "adam")
MONITORS = ("val_accuracy", "val_loss", "accuracy", "loss")
#: Columns of :class:`TrainingHistory`, in display order.
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


@dataclass
class HeadConfig:
    """Hyper-parameters of the classification head and its training.

    The defaults were chosen by measurement on three crack data sets
    (``benchmarks/README.md``, "Head defaults"): Adam at a constant 1e-3,
    batch 32, up to 200 epochs, early stopping when the validation loss has
    not improved for 20 epochs, the best epoch's weights restored. On the same
    features they match or beat ``sklearn.linear_model.LogisticRegression``.
    :meth:`mlnet` gives ML.NET ``ImageClassificationTrainer``'s settings (what
    the ML.NET tutorial shows).

    Attributes:
        epochs: maximum number of passes over the training features.
        batch_size: samples per gradient step (the last, smaller batch of an
            epoch is used too; ML.NET skips it).
        learning_rate: initial learning rate.
        lr_schedule: ``"constant"``, ``"exponential"`` (staircase, ML.NET's
            ExponentialLRDecay) or ``"cosine"`` (to zero over all epochs).
        lr_decay: factor applied every ``decay_every_epochs`` (exponential only).
        decay_every_epochs: epochs between decays (exponential only).
        optimizer: ``"adam"`` or ``"sgd"`` (plain gradient descent, as ML.NET).
        early_stopping: stop when ``monitor`` stops improving.
        monitor: ``"val_loss"``, ``"val_accuracy"``, ``"loss"`` or
            ``"accuracy"``. Without validation data a ``val_`` monitor falls
            back to the training metric, as in ML.NET.
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        restore_best_weights: end with the weights of the best epoch.
        dropout: dropout rate on the features (0 = none).
        hidden_units: size of an optional hidden ReLU layer (None = none).
        class_weight: None, ``"balanced"`` (sklearn's ``compute_class_weight``)
            or a dict ``{class_index: weight}`` (missing classes weigh 1).
        l2: L2 penalty on the kernels (0 = none).
        seed: seeds initialisation, shuffling and dropout; same data and seed
            give identical weights and metrics.
        jit_compile: compile the training step with XLA. Off by default: at
            the tutorial's size compiling costs more than it saves
            (``benchmarks/README.md``, "Training").

    Example:
        >>> config = HeadConfig(epochs=50)
        >>> config.validate().batch_size
        32
        >>> HeadConfig.mlnet().batch_size, HeadConfig.mlnet(epochs=5).epochs
        (10, 5)
        >>> HeadConfig(batch_size=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: batch_size: expected an integer >= 1, received 0. Fix: pass batch_size=32 (the default)
    """

    epochs: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_decay: float = 0.94
    decay_every_epochs: float = 2
    optimizer: str = "adam"
    early_stopping: bool = True
    monitor: str = "val_loss"
    patience: int = 20
    min_delta: float = 0.0
    restore_best_weights: bool = True
    dropout: float = 0.0
    hidden_units: int | None = None
    class_weight: None | str | dict = None
    l2: float = 0.0
    seed: int = 0
    jit_compile: bool = False

    __repr__ = changed_fields_repr

    @classmethod
    def mlnet(cls, **overrides) -> HeadConfig:
        """ML.NET ``ImageClassificationTrainer``'s settings, the ones the ML.NET tutorial shows.

        200 epochs, batch 10, plain gradient descent at 0.01 decayed by 0.94
        every 2 epochs (staircase), early stopping when validation accuracy
        has not improved by 0.01 for 20 epochs. One difference: the best
        epoch's weights are restored (ML.NET keeps the last ones).

        Args:
            **overrides: fields to change, e.g. ``epochs=50``.

        Returns:
            A :class:`HeadConfig`.

        Example:
            >>> c = HeadConfig.mlnet()
            >>> c.optimizer, c.learning_rate, c.monitor, c.min_delta
            ('sgd', 0.01, 'val_accuracy', 0.01)
        """
        mlnet = cls(epochs=200, batch_size=10, learning_rate=0.01, lr_schedule="exponential",
                    lr_decay=0.94, decay_every_epochs=2, optimizer="sgd", monitor="val_accuracy",
                    patience=20, min_delta=0.01)
        return replace(mlnet, **overrides)

    def validate(self) -> HeadConfig:
        """Check every field; return ``self`` so calls can be chained.

        Returns:
            ``self``.

        Example:
            >>> HeadConfig(epochs=5).validate().epochs
            5

        Raises:
            ValueError: naming the field, what was expected, what was received
                and how to fix it.
        """
        return check_fields(self, _RULES)

    def to_dict(self) -> dict:
        """Return the fields as a plain dict (JSON-able when ``class_weight`` is).

        Example:
            >>> HeadConfig().to_dict()["optimizer"]
            'adam'
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HeadConfig:
        """Build a config from :meth:`to_dict` output, rejecting unknown keys.

        Args:
            values: ``{field: value}``; missing fields keep their defaults.

        Returns:
            A :class:`HeadConfig`.

        Raises:
            ValueError: a key that is not a field.

        Example:
            >>> HeadConfig.from_dict({"epochs": 5}).epochs
            5
        """
        return config_from_dict(cls, values)

    def make_optimizer(self, steps_per_epoch: int) -> keras.optimizers.Optimizer:
        """Create the optimizer with its learning-rate schedule.

        Args:
            steps_per_epoch: gradient steps per epoch; the schedules count steps.

        Returns:
            A ``keras.optimizers.Adam`` or ``SGD``.

        Example:
            >>> opt = HeadConfig.mlnet().make_optimizer(steps_per_epoch=32)
            >>> type(opt).__name__, type(opt.learning_rate).__name__ != "float"
            ('SGD', True)
        """
        check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        if self.lr_schedule == "exponential":
            decay_steps = max(1, round(self.decay_every_epochs * steps_per_epoch))
            rate = keras.optimizers.schedules.ExponentialDecay(
                self.learning_rate, decay_steps, self.lr_decay, staircase=True)
        elif self.lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(
                self.learning_rate, decay_steps=self.epochs * steps_per_epoch)
        else:
            rate = float(self.learning_rate)
        optimizer = keras.optimizers.Adam if self.optimizer == "adam" else keras.optimizers.SGD
        return optimizer(learning_rate=rate)


def _weights_ok(value) -> bool:
    return value is None or value == "balanced" or isinstance(value, dict) and all(
        is_real(v) and v >= 0 for v in value.values())


#: HeadConfig.validate's rules: (fields, what is expected, the test a value must pass).
_RULES = (
    (("epochs", "batch_size"), "an integer >= 1", lambda v: is_int(v) and v >= 1),
    (("patience", "seed"), "an integer >= 0", lambda v: is_int(v) and v >= 0),
    (("hidden_units",), "None or an integer >= 1", lambda v: v is None or is_int(v) and v >= 1),
    (("learning_rate", "decay_every_epochs"), "a number > 0", lambda v: is_real(v) and v > 0),
    (("min_delta", "l2"), "a number >= 0", lambda v: is_real(v) and v >= 0),
    (("lr_decay",), "a number in (0, 1]", lambda v: is_real(v) and 0 < v <= 1),
    (("dropout",), "a number in [0, 0.95]", lambda v: is_real(v) and 0 <= v <= 0.95),
    (("lr_schedule",), f"one of {LR_SCHEDULES}", lambda v: v in LR_SCHEDULES),
    (("optimizer",), f"one of {OPTIMIZERS}", lambda v: v in OPTIMIZERS),
    (("monitor",), f"one of {MONITORS}", lambda v: v in MONITORS),
    (("early_stopping", "restore_best_weights", "jit_compile"), "True or False",
     lambda v: isinstance(v, bool)),
    (("class_weight",), "None, 'balanced' or a dict {class_index: weight >= 0}", _weights_ok),
)


def build_head(feature_dim: int, n_classes: int, config: HeadConfig | None = None) -> keras.Model:
    """Build the head: (dropout) -> (hidden ReLU layer) -> softmax over the classes.

    The output layer starts as ML.NET's does: weights from a truncated normal
    with standard deviation 0.001, biases zero.

    Args:
        feature_dim: length of one feature vector (e.g. 2048 for ResNet-101 v2).
        n_classes: number of classes, 2 or more.
        config: dropout, hidden layer, L2 and seed; defaults to ``HeadConfig()``.

    Returns:
        An uncompiled ``keras.Model`` named ``"head"`` mapping ``(batch,
        feature_dim)`` float32 to ``(batch, n_classes)`` probabilities. Layers:
        ``"features"`` (input), ``"dropout"`` / ``"hidden"`` when configured,
        ``"scores"`` (softmax).

    Example:
        >>> head = build_head(16, 3, HeadConfig(hidden_units=8))
        >>> [layer.name for layer in head.layers]
        ['features', 'hidden', 'scores']
        >>> head.output_shape
        (None, 3)
    """
    config = (config or HeadConfig()).validate()
    check_int("feature_dim", feature_dim, minimum=1)
    check_int("n_classes", n_classes, minimum=2,
              fix="a classifier needs at least two classes (e.g. cracked and intact)")
    regularizer = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    inputs = keras.Input(shape=(feature_dim,), name="features")
    x = inputs
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    if config.hidden_units:
        x = keras.layers.Dense(
            config.hidden_units, activation="relu", kernel_regularizer=regularizer,
            kernel_initializer=keras.initializers.HeNormal(seed=config.seed), name="hidden",
        )(x)
    outputs = keras.layers.Dense(
        n_classes, activation="softmax", kernel_regularizer=regularizer,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.001, seed=config.seed),
        bias_initializer="zeros", name="scores",
    )(x)
    return keras.Model(inputs, outputs, name="head")


class EpochLog(keras.callbacks.Callback):
    """Print ML.NET-style training lines, one per dataset per epoch (``verbose=2``).

    Lines look like ML.NET's ``ImageClassificationTrainer`` log::

        Phase: Training, Dataset used:      Train, Batch Processed Count:  32, Epoch:   0, Accuracy: 0.8214, Cross-Entropy: 0.4113, Learning Rate: 0.010000
        Phase: Training, Dataset used: Validation, Batch Processed Count:   8, Epoch:   0, Accuracy: 0.7500, Cross-Entropy: 0.5021

    A plain Keras callback: pass it to ``model.fit`` after :class:`LearningRateLog`,
    which puts the learning rate of the epoch into the logs.

    Args:
        stream: where to write; default ``sys.stdout``.
        val_steps: validation batch count to show; omitted when None.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> log = EpochLog(stream=out)
        >>> log.set_params({"steps": 32, "epochs": 1})
        >>> log.on_epoch_end(0, {"loss": 0.4113, "accuracy": 0.8214, "learning_rate": 0.01})
        >>> print(out.getvalue().strip())
        Phase: Training, Dataset used:      Train, Batch Processed Count:  32, Epoch:   0, Accuracy: 0.8214, Cross-Entropy: 0.4113, Learning Rate: 0.010000
    """

    def __init__(self, stream=None, val_steps: int | None = None):
        super().__init__()
        self.stream = stream
        self.val_steps = val_steps

    def on_epoch_end(self, epoch, logs=None):
        """Keras hook: print the epoch's lines (the class example calls it)."""
        logs = logs or {}
        datasets = [("Train", "", (self.params or {}).get("steps"))]
        if logs.get("val_accuracy") is not None:
            datasets.append(("Validation", "val_", self.val_steps))
        for dataset, prefix, steps in datasets:
            parts = [f"Phase: Training, Dataset used: {dataset:>10}"]
            if steps is not None:
                parts.append(f"Batch Processed Count: {int(steps):3d}")
            parts.append(f"Epoch: {epoch:3d}")
            parts += [label.format(float(logs[prefix + key])) for key, label in _LOGGED
                      if logs.get(prefix + key) is not None]
            print(", ".join(parts), file=self.stream or sys.stdout)


#: EpochLog's metrics: (log key without ``val_``, its text in ML.NET's log line).
_LOGGED = (("accuracy", "Accuracy: {:.4f}"), ("loss", "Cross-Entropy: {:.4f}"),
           ("learning_rate", "Learning Rate: {:.6f}"))


def progress_callbacks(verbose, epochs: int, desc: str, val_steps: int | None = None) -> list:
    """The Keras callbacks showing a run's progress for a ``verbose`` level.

    Args:
        verbose: 0 (nothing), 1 (``tqdm.keras.TqdmCallback``'s bar over epochs,
            on stderr) or 2 (an :class:`EpochLog` line per epoch instead).
        epochs: the run's epochs, for the bar.
        desc: the bar's label.
        val_steps: validation batches, for the epoch log.

    Returns:
        A list of zero or one callback.

    Example:
        >>> [type(c).__name__ for c in progress_callbacks(2, 10, "Training head")]
        ['EpochLog']
        >>> progress_callbacks(0, 10, "Training head")
        []
    """
    verbose = check_verbose(verbose)
    if verbose == 1:
        from tqdm.keras import TqdmCallback

        return [TqdmCallback(epochs=epochs, verbose=0, desc=desc, file=sys.stderr)]
    return [EpochLog(val_steps=val_steps)] if verbose == 2 else []


class LearningRateLog(keras.callbacks.Callback):
    """Put the learning rate each epoch started with into the epoch's logs (and so the History).

    Keras' schedules change the rate per step and Keras 3 does not log it; this
    records the rate in force at the start of every epoch as
    ``logs["learning_rate"]``. Pass it first in the callbacks list so that later
    callbacks see the value.

    Example:
        >>> model = build_head(4, 2)
        >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        >>> x, y = np.zeros((4, 4), "float32"), np.array([0, 1, 0, 1])
        >>> h = model.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateLog()])
        >>> h.history["learning_rate"]
        [0.009999999776482582]
    """

    def on_epoch_begin(self, epoch, logs=None):
        """Keras hook: read the optimizer's current rate (``model.fit`` in the class example)."""
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        """Keras hook: write the rate into ``logs`` (``model.fit`` in the class example)."""
        logs["learning_rate"] = self._rate


@dataclass
class TrainingHistory:
    """Per-epoch metrics of one training run: a view of Keras' ``History`` plus what early stopping decided.

    Adds to ``History.history`` the best and stopping epochs, JSON round trips
    (saved inside the model file), a pandas ``DataFrame`` (:meth:`to_pandas`)
    and its text / HTML table for notebooks (long runs show the first and last
    epochs and the best one).

    Attributes:
        rows: one dict per epoch with :data:`HISTORY_COLUMNS` keys; ``loss`` and
            ``accuracy`` are averaged over the epoch's mini-batches (as Keras
            and ML.NET report them; ``loss`` includes class weights and any L2
            penalty), ``val_*`` are computed on the whole validation set after
            the epoch (None without one), ``learning_rate`` is the rate used
            during the epoch.
        monitor: the metric early stopping watched (after any fallback).
        best_epoch: epoch with the best ``monitor`` value (by the early-stopping
            rule with ``min_delta`` when early stopping was on, else the plain best).
        stopped_epoch: last epoch run when early stopping (or a callback setting
            ``model.stop_training``) ended training, or None when all epochs ran.
        restored_best: whether the returned model holds the best epoch's weights.
        epochs_requested: the epochs asked for.
        seconds: wall time of the training loop.

    Example:
        >>> h = TrainingHistory(rows=[{"epoch": 0, "loss": 0.5, "accuracy": 0.75, "val_loss": None,
        ...     "val_accuracy": None, "learning_rate": 0.01}], monitor="accuracy", best_epoch=0)
        >>> h.column("accuracy").tolist(), len(h), h.has_validation
        ([0.75], 1, False)
        >>> print(h)
        TrainingHistory: 1 epoch, best epoch 0 (accuracy=0.7500)
        epoch   loss accuracy learning_rate
            0 0.5000   0.7500      0.010000 <- best
    """

    rows: list[dict]
    monitor: str = "val_accuracy"
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    restored_best: bool = False
    epochs_requested: int | None = None
    seconds: float | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_validation(self) -> bool:
        """Whether the rows hold validation scores.

        Returns:
            True when some epoch has a ``val_accuracy``.

        Example:
            >>> TrainingHistory([{"epoch": 0, "val_accuracy": 0.8}]).has_validation
            True
        """
        return any(row.get("val_accuracy") is not None for row in self.rows)

    def column(self, name: str) -> np.ndarray:
        """Return one column as a float array (NaN where a value is missing).

        Args:
            name: one of :data:`HISTORY_COLUMNS`.

        Returns:
            A float array, one value per epoch.

        Example:
            >>> TrainingHistory([{"epoch": 0, "loss": 0.5}]).column("val_loss").tolist()
            [nan]
        """
        check_choice("column", name, HISTORY_COLUMNS)
        return self.to_pandas()[name].to_numpy(dtype=float)

    @property
    def best(self) -> dict | None:
        """The row of :attr:`best_epoch`, or None.

        Returns:
            That epoch's ``{column: value}`` row, or None without a best epoch.

        Example:
            >>> TrainingHistory([{"epoch": 0, "loss": 0.5}], best_epoch=0).best["loss"]
            0.5
        """
        return next((row for row in self.rows if row["epoch"] == self.best_epoch), None)

    def to_dict(self) -> dict:
        """Return plain, JSON-able data: rows plus the summary fields.

        Example:
            >>> TrainingHistory([], best_epoch=None).to_dict()["rows"]
            []
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainingHistory:
        """Rebuild a history from :meth:`to_dict` output (unknown keys are ignored).

        Args:
            values: the dict :meth:`to_dict` made (e.g. read back from a saved model).

        Returns:
            A :class:`TrainingHistory`.

        Example:
            >>> TrainingHistory.from_dict({"rows": [], "monitor": "loss", "extra": 1}).monitor
            'loss'
        """
        return cls(**{k: values[k] for k in values if k in {f.name for f in fields(cls)}})

    @classmethod
    def from_keras(cls, history: keras.callbacks.History, *, monitor: str, early=None,
                   epochs_requested: int | None = None, seconds: float | None = None
                   ) -> TrainingHistory:
        """A view of the ``keras.callbacks.History`` that ``model.fit`` returned.

        Args:
            history: ``model.fit``'s return value.
            monitor: the metric early stopping watched (or that picks the best epoch).
            early: the ``keras.callbacks.EarlyStopping`` used, if any (its
                ``best_epoch`` and restored weights are recorded).
            epochs_requested: the ``epochs`` passed to ``fit``.
            seconds: wall time of ``fit``.

        Returns:
            A :class:`TrainingHistory`.

        Example:
            >>> h = keras.callbacks.History()
            >>> h.epoch, h.history = [0, 1], {"loss": [0.7, 0.5], "accuracy": [0.5, 0.75]}
            >>> TrainingHistory.from_keras(h, monitor="loss").best_epoch
            1
        """
        values = {c: history.history.get(c, ()) for c in HISTORY_COLUMNS[1:]}
        rows = [{"epoch": int(epoch), **{c: float(v[i]) if i < len(v) else None
                                         for c, v in values.items()}}
                for i, epoch in enumerate(history.epoch)]
        scores = pd.Series([row[monitor] for row in rows], [row["epoch"] for row in rows], float)
        best_epoch = None
        if early is not None and early.best is not None:
            best_epoch = int(early.best_epoch)
        elif len(scores) and scores.notna().all():
            best_epoch = int(scores.idxmax() if monitor.endswith("accuracy") else scores.idxmin())
        # a stop signalled on the last requested epoch ended nothing early
        stopped = bool(history.model is not None and history.model.stop_training and rows
                       and (epochs_requested is None or rows[-1]["epoch"] + 1 < epochs_requested))
        return cls(rows=rows, monitor=monitor, best_epoch=best_epoch,
                   stopped_epoch=rows[-1]["epoch"] if stopped else None,
                   restored_best=bool(early is not None and early.restore_best_weights
                                      and early.best_weights is not None),
                   epochs_requested=epochs_requested, seconds=seconds)

    def to_pandas(self) -> pd.DataFrame:
        """Return the rows as a ``pandas.DataFrame``, one row per epoch (NaN where missing).

        Example:
            >>> TrainingHistory([]).to_pandas().shape
            (0, 6)
        """
        return pd.DataFrame(self.rows, columns=list(HISTORY_COLUMNS))

    def _summary(self) -> str:
        best = self.best or {}
        parts = [f"TrainingHistory: {counted(len(self), 'epoch')}"
                 + (f" of {self.epochs_requested}" if self.epochs_requested else ""),
                 best.get(self.monitor) is not None
                 and f"best epoch {self.best_epoch} ({self.monitor}={best[self.monitor]:.4f})",
                 self.stopped_epoch is not None and f"stopped early at epoch {self.stopped_epoch}",
                 self.restored_best and "best weights restored",
                 self.seconds is not None and f"{self.seconds:.1f} s"]
        return ", ".join(part for part in parts if part)

    def _shown(self, limit: int = 12, edge: int = 5) -> pd.DataFrame:
        """The table as text cells: every epoch, or the first, best and last with ``...`` gaps."""
        frame = self.to_pandas()
        if not self.has_validation:
            frame = frame.drop(columns=["val_loss", "val_accuracy"])
        # cells from the rows, not the frame: a missing value is "-", a NaN (training that
        # diverged) stays visible as "nan"
        shown = pd.DataFrame({column: ["-" if row.get(column) is None
                                       else _CELLS.get(column, "{:.4f}").format(row[column])
                                       for row in self.rows] for column in frame.columns})
        shown[""] = np.where(frame["epoch"] == self.best_epoch, "<- best", "")
        if len(shown) > limit:
            gap = pd.DataFrame([["..."] * len(frame.columns) + [""]], columns=shown.columns)
            middle = shown.iloc[edge:-edge]
            best = middle[middle[""] != ""]
            shown = pd.concat([shown.iloc[:edge], gap, *([best, gap] if len(best) else []),
                               shown.iloc[-edge:]])
        return shown

    def __repr__(self) -> str:
        table = self._shown().to_string(index=False).splitlines() if self.rows else []
        return "\n".join([self._summary(), *(line.rstrip() for line in table)])

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self._summary())}</p>" + self._shown().to_html(index=False)


#: How TrainingHistory's table shows a column's values (others: 4 decimals; missing: "-").
_CELLS = {"epoch": "{:.0f}", "learning_rate": "{:.6f}"}


def train_head(x_train, y_train, x_val=None, y_val=None, *, n_classes: int,
               config: HeadConfig | None = None, callbacks: Sequence[keras.callbacks.Callback] = (),
               on_epoch: Callable[[int, dict], None] | None = None, verbose: int = 1
               ) -> tuple[keras.Model, TrainingHistory]:
    """Train a fresh head on cached features with ``model.fit``.

    The features go into a ``tf.data`` pipeline (shuffled every epoch, seeded,
    batched: :func:`feature_dataset`); ``model.fit`` runs one epoch's steps per
    call (``steps_per_execution``). Callbacks, in order: :class:`LearningRateLog`,
    :class:`ValidationScores` (with validation data), the progress callbacks
    (:func:`progress_callbacks`), yours, ``on_epoch``, then
    ``keras.callbacks.EarlyStopping(restore_best_weights=True)``.

    Same data and ``config.seed`` give identical weights and metrics: the
    function calls ``keras.utils.set_random_seed(config.seed)``, which also
    seeds Python's, NumPy's and TensorFlow's global generators.

    Args:
        x_train: ``(N, D)`` features (float, converted to float32).
        y_train: ``(N,)`` integer class indices in ``[0, n_classes)``.
        x_val: optional ``(M, D)`` validation features.
        y_val: optional ``(M,)`` validation class indices.
        n_classes: number of classes (>= 2); classes may be absent from ``y_train``.
        config: hyper-parameters; default ``HeadConfig()``.
        callbacks: extra Keras callbacks, called after the progress display.
        on_epoch: plain function ``on_epoch(epoch, logs)`` called after each
            epoch with a copy of the logs (``loss``, ``accuracy``,
            ``learning_rate`` and, with validation data, ``val_loss``,
            ``val_accuracy``).
        verbose: 0 silent, 1 a progress bar over epochs, 2 ML.NET-style
            :class:`EpochLog` lines every epoch (True is 1, False is 0).

    Returns:
        ``(model, history)``: the trained head (compiled, so ``model.evaluate``
        works) and a :class:`TrainingHistory`.

    Raises:
        ValueError: on badly shaped, non-finite or out-of-range inputs, or an
            invalid config; the message says what was expected and how to fix it.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(40) % 2
        >>> x = rng.normal(size=(40, 8)).astype("float32") + 2.0 * y[:, None]
        >>> model, history = train_head(x, y, x, y, n_classes=2, verbose=0,
        ...                             config=HeadConfig(epochs=30, learning_rate=0.01))
        >>> history.rows[-1]["val_accuracy"] >= 0.9
        True
        >>> model.predict(x[:2], verbose=0).shape
        (2, 2)
    """
    config = (config or HeadConfig()).validate()
    check_int("n_classes", n_classes, minimum=2,
              fix="a classifier needs at least two classes (e.g. cracked and intact)")
    x_train, y_train = _check_xy(x_train, y_train, n_classes, "train")
    if x_val is not None or y_val is not None:
        x_val, y_val = _check_xy(x_val, y_val, n_classes, "val", n_features=x_train.shape[1])
    # without validation data ML.NET also falls back to the training metric
    monitor = config.monitor if x_val is not None else config.monitor.removeprefix("val_")

    validation = [] if x_val is None else [ValidationScores(x_val, y_val, n_classes)]
    val_steps = None if x_val is None else math.ceil(len(x_val) / config.batch_size)
    early = keras.callbacks.EarlyStopping(
        monitor=monitor, mode="max" if monitor.endswith("accuracy") else "min",
        patience=config.patience, min_delta=config.min_delta,
        restore_best_weights=config.restore_best_weights) if config.early_stopping else None
    listed = [LearningRateLog(), *validation,
              *progress_callbacks(verbose, config.epochs, "Training head", val_steps),
              *_user_callbacks(callbacks, on_epoch), *([early] if early else [])]

    keras.utils.set_random_seed(config.seed)
    steps = math.ceil(len(x_train) / config.batch_size)
    model = build_head(x_train.shape[1], n_classes, config)
    model.compile(optimizer=config.make_optimizer(steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=config.jit_compile, steps_per_execution=steps)
    started = time.perf_counter()
    # repeat() + steps_per_epoch: one input iterator for the whole run (each pass is
    # reshuffled); re-creating it every epoch cost more than the epoch's steps here.
    keras_history = model.fit(
        feature_dataset(x_train, y_train, config.batch_size, seed=config.seed).repeat(),
        steps_per_epoch=steps, epochs=config.epochs, callbacks=listed, shuffle=False, verbose=0,
        class_weight=class_weights(y_train, n_classes, config.class_weight))
    return model, TrainingHistory.from_keras(
        keras_history, monitor=monitor, early=early, epochs_requested=config.epochs,
        seconds=time.perf_counter() - started)


def _user_callbacks(callbacks, on_epoch) -> list:
    wrong = [type(c).__name__ for c in callbacks if not isinstance(c, keras.callbacks.Callback)]
    if wrong:
        raise ValueError(problem("callbacks", "keras.callbacks.Callback instances", wrong[0],
                                 "wrap plain functions with on_epoch=..."))
    if on_epoch is None:
        return list(callbacks)
    require(callable(on_epoch), "on_epoch", "a function on_epoch(epoch, logs)", on_epoch,
            "pass a function or None")
    return [*callbacks, keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {})))]


def feature_dataset(x, y, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """The keras.io input pipeline over feature rows: reshuffled every epoch (seeded), batched.

    Args:
        x: ``(N, D)`` float32 features.
        y: ``(N,)`` integer labels.
        batch_size: rows per batch (the last batch may be smaller).
        seed: shuffle seed; with ``keras.utils.set_random_seed(seed)`` before,
            every run gives the same sequence of epochs.

    Returns:
        A dataset of ``(features, labels)`` batches.

    Example:
        >>> ds = feature_dataset(np.zeros((5, 3), "float32"), np.arange(5), batch_size=2)
        >>> [tuple(xb.shape) for xb, _ in ds]
        [(2, 3), (2, 3), (1, 3)]
    """
    return (tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), np.asarray(y, np.int32)))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size))


def class_weights(y, n_classes: int, spec) -> dict | None:
    """Keras' ``class_weight`` dict for a ``class_weight`` spec (head and fine-tuning).

    ``"balanced"`` is sklearn's ``compute_class_weight`` (n / (classes x
    count)) over the classes present; absent classes and classes missing from
    a dict weigh 1.

    Args:
        y: the training labels (class indices).
        n_classes: number of classes.
        spec: None, ``"balanced"`` or ``{class_index: weight}``.

    Returns:
        ``{class_index: weight}`` for every class, or None for ``spec=None``.

    Example:
        >>> class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
        {0: 0.6666666666666666, 1: 2.0}
        >>> class_weights(np.array([0, 1]), 3, {2: 5.0})
        {0: 1.0, 1: 1.0, 2: 5.0}
    """
    if spec is None:
        return None
    if spec == "balanced":
        present = np.unique(y)
        spec = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y)))
    wrong = [key for key in spec if not is_int(key) or not 0 <= key < n_classes]
    if wrong:
        raise ValueError(problem("class_weight keys", f"class indices 0..{n_classes - 1}",
                                 wrong[0], "key the dict by class index, e.g. {0: 3.0}"))
    return dict.fromkeys(range(n_classes), 1.0) | {int(k): float(v) for k, v in spec.items()}


class ValidationScores(keras.callbacks.Callback):
    """Score validation features after every epoch: ``val_loss`` and ``val_accuracy`` in the logs.

    Does what ``model.fit(validation_data=...)`` does for a head on cached
    features, in one model call (``fit``'s own evaluation loop costs more than
    the training steps at the tutorial's size: ``benchmarks/README.md``,
    "Training"). ``val_loss`` is ``sklearn.metrics.log_loss``, the call
    :class:`vitl.evaluation.EvaluationReport` makes, so the history's
    ``val_loss`` equals ``evaluate(validation).log_loss``. Pass it before
    callbacks that read ``val_*`` (early stopping, logs).

    Args:
        x_val: ``(M, D)`` validation features.
        y_val: ``(M,)`` class indices.
        n_classes: number of classes (the head's outputs).

    Example:
        >>> model = build_head(4, 2)
        >>> scores = ValidationScores(np.zeros((2, 4), "float32"), np.array([0, 1]), 2)
        >>> scores.set_model(model)
        >>> logs = {}
        >>> scores.on_epoch_end(0, logs)
        >>> round(logs["val_loss"], 4), logs["val_accuracy"]
        (0.6931, 0.5)
    """

    def __init__(self, x_val, y_val, n_classes: int):
        super().__init__()
        self.x_val = tf.constant(x_val, dtype=tf.float32)
        self.y_val = np.asarray(y_val, dtype=np.int32)
        self.labels = list(range(n_classes))

    def on_epoch_end(self, epoch, logs=None):
        """Keras hook: score the validation features into ``logs`` (the class example calls it)."""
        proba = predict_proba(self.model, self.x_val)
        logs["val_loss"] = float(log_loss(self.y_val, proba, labels=self.labels))
        logs["val_accuracy"] = float(accuracy_score(self.y_val, proba.argmax(axis=1)))


def predict_proba(model: keras.Model, features, batch_size: int = 4096) -> np.ndarray:
    """Return class probabilities for ``(N, D)`` features, in chunks.

    Calls the model directly (no ``model.predict`` set-up per call: this runs
    once per prediction request).

    Args:
        model: a head (features in, probabilities out).
        features: ``(N, D)`` features (array or tensor).
        batch_size: rows per model call.

    Returns:
        ``(N, n_classes)`` float32 probabilities.

    Example:
        >>> head = build_head(4, 2)
        >>> predict_proba(head, np.zeros((3, 4), "float32")).round(3).tolist()
        [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]
        >>> predict_proba(head, np.zeros((0, 4), "float32")).shape
        (0, 2)
    """
    if not tf.is_tensor(features):
        features = np.asarray(features, dtype=np.float32)
    # max(..., 1): an empty input still makes one (empty) chunk, so the shape is (0, n_classes)
    chunks = [np.asarray(model(tf.constant(features[i:i + batch_size]), training=False))
              for i in range(0, max(len(features), 1), batch_size)]
    return np.concatenate(chunks).astype(np.float32)


def _check_xy(x, y, n_classes: int, part: str, n_features: int | None = None):
    """sklearn's ``check_X_y`` (2-D, finite, one label per row), then the labels and the width."""
    x_name, y_name = f"x_{part}", f"y_{part}"
    try:
        x, y = check_X_y(x, y, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(problem(f"{x_name}, {y_name}", "(N, D) finite features, one label per row",
                                 str(err).splitlines()[0], "pass the cached features as an (N, D) "
                                 "array and their class indices as an (N,) array")) from None
    numeric = y.dtype.kind in "iuf"
    if not numeric or np.any(y % 1) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(problem(
            y_name, f"integer class indices in [0, {n_classes - 1}]",
            f"values from {y.min()} to {y.max()}" if numeric else y.dtype,
            "encode labels as 0..n_classes-1 (sklearn.preprocessing.LabelEncoder); check n_classes"))
    require(n_features in (None, x.shape[1]), x_name, f"{n_features} features per row like x_train",
            x.shape[1], "featurize both sets with the same backbone")
    return x, y.astype(np.int32)


__all__ = ["HISTORY_COLUMNS", "EpochLog", "HeadConfig", "LearningRateLog", "TrainingHistory",
           "ValidationScores", "build_head", "changed_fields_repr", "class_weights",
           "feature_dataset", "predict_proba", "progress_callbacks", "train_head"]
