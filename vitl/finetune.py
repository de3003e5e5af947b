"""Fine-tuning: after the head is trained, train the top blocks of the backbone with it.

The head phase (:mod:`vitl.training`) learns from frozen, cached features. Fine-
tuning then unfreezes the last ``N`` blocks of the backbone (the registry's
``BackboneSpec.block_prefixes``: a layer belongs to block ``b`` when its name
starts with that prefix) and trains them together with the head, end to end on
images, at a low learning rate (Adam, 1e-4 at its peak: ramped up over the first
epoch, then cosine-decayed to zero):

* BatchNormalization layers stay frozen, so they keep using their ImageNet
  moving statistics (Keras runs a non-trainable BatchNormalization layer in
  inference mode): small batches of similar-looking tiles would otherwise
  wreck them.
* Images stream through a ``tf.data`` pipeline (the one image loader,
  :func:`vitl.features.pipeline.model_image_loader`, float 0..255), training
  batches optionally augmented on the fly by an :class:`vitl.augment.AugmentPolicy`, seeded, so a run is reproducible.
* ``keras.callbacks.EarlyStopping`` watches validation accuracy and restores
  the best weights. The starting point, head-only training,
  counts as a candidate: fine-tuning that does not beat it on validation is
  discarded and the original backbone and head are returned unchanged
  (``FineTuneConfig(keep="best")`` keeps the best fine-tuned epoch instead).

Fine-tuning works on a copy of the backbone: the extractor passed in (and its
feature-cache identity) is never modified. The returned extractor carries a
``WeightsSource(kind="fine-tuned", sha256=<digest of its weights>)``, so its
features get their own cache keys.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace

import keras
import numpy as np

from ._errors import (
    check_fields,
    check_int,
    check_verbose,
    config_from_dict,
    is_int,
    is_real,
    require,
)
from .backbones import FeatureExtractor, WeightsSource, build_feature_extractor
from .features.pipeline import model_image_loader
from .training import (
    LearningRateLog,
    TrainingHistory,
    changed_fields_repr,
    class_weights,
    progress_callbacks,
)

FINE_TUNE_OPTIMIZERS = ("adam", "sgd")
FINE_TUNE_KEEP = ("improved", "best")
FINE_TUNE_SCHEDULES = ("constant", "warmup_cosine")
#: FineTuneConfig.validate's rules: (fields, what is expected, the test a value must pass).
_RULES = (
    (("blocks", "epochs", "batch_size"), "an integer >= 1", lambda v: is_int(v) and v >= 1),
    (("patience", "seed"), "an integer >= 0", lambda v: is_int(v) and v >= 0),
    (("optimizer",), f"one of {FINE_TUNE_OPTIMIZERS}", lambda v: v in FINE_TUNE_OPTIMIZERS),
    (("keep",), f"one of {FINE_TUNE_KEEP}", lambda v: v in FINE_TUNE_KEEP),
    (("schedule",), f"one of {FINE_TUNE_SCHEDULES}", lambda v: v in FINE_TUNE_SCHEDULES),
    (("learning_rate",), "a number in (0, 1)", lambda v: is_real(v) and 0 < v < 1),
    (("momentum",), "a number in [0, 1)", lambda v: is_real(v) and 0 <= v < 1),
)


@dataclass
class FineTuneConfig:
    """Hyper-parameters of fine-tuning.

    Attributes:
        blocks: number of top backbone blocks to unfreeze (>= 1).
        epochs: maximum passes over the training images.
        learning_rate: peak learning rate; keep it low (1e-4 for Adam).
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        momentum: SGD momentum (ignored by Adam).
        batch_size: images per gradient step.
        patience: epochs without a better validation score before stopping.
        seed: seeds shuffling and on-the-fly augmentation.
        keep: ``"improved"`` (default): the starting point (head-only
            training) competes with the fine-tuned epochs, so fine-tuning is
            kept only when it beats it on validation; ``"best"``: keep the best
            fine-tuned epoch even when it is worse than the start.
        schedule: ``"warmup_cosine"`` (default): a linear ramp from 0 over the
            first epoch, then cosine decay to 0 at the last; or ``"constant"``.
            On the SDNET2018 sample the ramp and decay made fine-tuning
            steadier than a constant rate (``benchmarks/README.md``).

    Example:
        >>> FineTuneConfig(blocks=2).validate().learning_rate
        0.0001
        >>> FineTuneConfig(blocks=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: blocks: expected an integer >= 1, received 0. Fix: pass blocks=2 (the default)
    """

    blocks: int = 2
    epochs: int = 10
    learning_rate: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.9
    batch_size: int = 16
    patience: int = 5
    seed: int = 0
    keep: str = "improved"
    schedule: str = "warmup_cosine"

    __repr__ = changed_fields_repr

    def validate(self) -> FineTuneConfig:
        """Check every field; return ``self``.

        Returns:
            ``self``.

        Raises:
            ValueError: naming the field, what was expected and how to fix it.

        Example:
            >>> FineTuneConfig(blocks=8).validate().blocks
            8
        """
        return check_fields(self, _RULES)

    def to_dict(self) -> dict:
        """Return the fields as a plain dict.

        Example:
            >>> FineTuneConfig(blocks=3).to_dict()["blocks"]
            3
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FineTuneConfig:
        """Build a config from :meth:`to_dict` output, rejecting unknown keys.

        Args:
            values: ``{field: value}``; missing fields keep their defaults.

        Returns:
            A :class:`FineTuneConfig`.

        Raises:
            ValueError: a key that is not a field.

        Example:
            >>> FineTuneConfig.from_dict({"blocks": 1}).blocks
            1
        """
        return config_from_dict(cls, values)

    def learning_rate_schedule(self, steps_per_epoch: int):
        """The learning rate: a float, or a Keras schedule of the step for ``"warmup_cosine"``.

        Args:
            steps_per_epoch: gradient steps per epoch.

        Returns:
            A float or a ``keras.optimizers.schedules.CosineDecay``.

        Example:
            >>> FineTuneConfig(schedule="constant").learning_rate_schedule(10)
            0.0001
        """
        if self.schedule == "constant":
            return float(self.learning_rate)
        # Ramp up over the first epoch (the trained head's large gradients hit the
        # unfrozen blocks hardest at the start), then cosine-decay to zero.
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, (self.epochs - 1) * steps_per_epoch),
            warmup_target=self.learning_rate, warmup_steps=steps_per_epoch)

    def make_optimizer(self, steps_per_epoch: int) -> keras.optimizers.Optimizer:
        """The optimizer, with the learning-rate schedule over ``steps_per_epoch``-step epochs.

        Args:
            steps_per_epoch: gradient steps per epoch.

        Returns:
            A ``keras.optimizers.Adam`` or ``SGD``.

        Example:
            >>> type(FineTuneConfig(optimizer="sgd").make_optimizer(10)).__name__
            'SGD'
        """
        rate = self.learning_rate_schedule(steps_per_epoch)
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(rate, momentum=self.momentum)
        return keras.optimizers.Adam(rate)


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns.

    Attributes:
        extractor: the fine-tuned extractor (a copy), or the one passed in when
            fine-tuning did not improve on validation.
        head: the head trained together with it (or the one passed in).
        history: per-epoch :class:`vitl.training.TrainingHistory` (epochs 0-based).
        unfrozen: names of the backbone layers that were trained.
        initial: validation ``{"val_loss", "val_accuracy"}`` before fine-tuning
            (None without validation data).
        improved: whether the fine-tuned weights were kept.
    """

    extractor: FeatureExtractor
    head: keras.Model
    history: TrainingHistory
    unfrozen: list[str] = field(default_factory=list)
    initial: dict | None = None
    improved: bool = False

    def summary(self) -> dict:
        """JSON-able facts for ``fit_info_``: layers, epochs, best epoch, kept, scores, seconds.

        Returns:
            A dict.

        Example:
            >>> from vitl.training import TrainingHistory
            >>> rows = [{"epoch": 0, "loss": 0.5, "val_accuracy": 0.9}]
            >>> result = FineTuneResult(None, None, TrainingHistory(rows, best_epoch=0),
            ...                         improved=True)
            >>> result.summary()["kept"], result.summary()["best"]
            (True, {'val_loss': None, 'val_accuracy': 0.9})
        """
        best = self.history.best
        return {"unfrozen_layers": len(self.unfrozen), "epochs_run": len(self.history),
                "best_epoch": self.history.best_epoch, "kept": self.improved,
                "initial": self.initial,
                "best": None if best is None else {k: best.get(k) for k in
                                                   ("val_loss", "val_accuracy")},
                "seconds": self.history.seconds}


def top_block_layers(extractor: FeatureExtractor, blocks: int) -> list[keras.layers.Layer]:
    """Return the backbone layers of the top ``blocks`` blocks (registry ``block_prefixes``).

    Args:
        extractor: a :class:`~vitl.backbones.FeatureExtractor`.
        blocks: how many blocks from the top, 1 to ``len(extractor.spec.block_prefixes)``.

    Returns:
        The Keras layers of those blocks, in model order.

    Raises:
        ValueError: ``blocks`` out of range.

    Example:
        >>> from vitl.backbones import build_feature_extractor
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> sorted({layer.name.split("_")[0] for layer in top_block_layers(fx, 1)})
        ['Conv']
    """
    prefixes = extractor.spec.block_prefixes
    check_int("blocks", blocks, minimum=1)
    require(blocks <= len(prefixes), "blocks",
            f"at most {len(prefixes)} ({extractor.name} has {len(prefixes)} blocks)", blocks,
            f"pass blocks between 1 and {len(prefixes)}")
    # tests/test_backbones.py checks that every registry prefix names layers
    chosen = prefixes[-blocks:]
    return [layer for layer in extractor.model.get_layer("backbone").layers
            if layer.name.startswith(chosen)]


def set_trainable_blocks(extractor: FeatureExtractor, blocks: int) -> list[str]:
    """Unfreeze the top ``blocks`` blocks (BatchNormalization stays frozen); 0 freezes all.

    Args:
        extractor: the extractor whose backbone layers to (un)freeze, in place.
        blocks: how many top blocks to unfreeze.

    Returns:
        Names of the layers now trainable.

    Example:
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> "Conv_1" in set_trainable_blocks(fx, 1), set_trainable_blocks(fx, 0)
        (True, [])
    """
    backbone = extractor.model.get_layer("backbone")
    top = {id(layer) for layer in top_block_layers(extractor, blocks)} if blocks else set()
    backbone.trainable = bool(blocks)  # sets every sub-layer; then re-freeze all but the top blocks
    for layer in backbone.layers:
        layer.trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]


def weights_digest(extractor: FeatureExtractor) -> str:
    """sha256 (hex) of the backbone's weights, read as ``FeatureExtractor.fingerprint`` does.

    Args:
        extractor: a :class:`~vitl.backbones.FeatureExtractor`.

    Returns:
        64 hex digits.

    Example:
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> len(weights_digest(fx)), weights_digest(fx) == weights_digest(copy_extractor(fx))
        (64, True)
    """
    digest = hashlib.sha256()
    for w in extractor.model.get_layer("backbone").weights:
        digest.update(np.asarray(w.numpy()).tobytes())
    return digest.hexdigest()


def copy_extractor(extractor: FeatureExtractor) -> FeatureExtractor:
    """A frozen extractor with the same architecture and a copy of the weights.

    Args:
        extractor: the extractor to copy (not modified).

    Returns:
        A new :class:`~vitl.backbones.FeatureExtractor` with the same cache identity.

    Example:
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> copy = copy_extractor(fx)
        >>> copy.model is fx.model, copy.fingerprint == fx.fingerprint
        (False, True)
    """
    copy = build_feature_extractor(extractor.spec, weights=None, input_size=extractor.input_size,
                                   precision=extractor.precision)
    copy.model.set_weights(extractor.model.get_weights())
    return replace(extractor, model=copy.model)


def fine_tune(extractor: FeatureExtractor, head: keras.Model, train, y_train, validation=None,
              y_val=None, *, config: FineTuneConfig, policy=None, class_weight=None, verbose=1,
              callbacks=()) -> FineTuneResult:
    """Train the top backbone blocks and the head end to end on images.

    Args:
        extractor: the frozen extractor the head was trained on (not modified).
        head: the trained head (not modified).
        train: training images: an :class:`~vitl.data.ImageCollection` or paths.
        y_train: their class indices (columns of the head's output).
        validation: validation images, for early stopping; without them all
            epochs run and the last weights are kept.
        y_val: their class indices.
        config: a :class:`FineTuneConfig`.
        policy: an :class:`~vitl.augment.AugmentPolicy` to augment training
            batches on the fly, or None.
        class_weight: None, ``"balanced"`` or ``{class_index: weight}``
            (:func:`vitl.training.class_weights`).
        verbose: 0 silent, 1 a progress bar and one-line summaries, 2 also an
            ML.NET-style line per epoch. Whether fine-tuning was kept prints always.
        callbacks: extra Keras callbacks.

    Returns:
        A :class:`FineTuneResult`.

    Example:
        >>> import tempfile
        >>> from vitl.data import load_image_folder
        >>> from vitl.datasets import make_synthetic_cracks
        >>> from vitl.training import build_head
        >>> images = load_image_folder(make_synthetic_cracks(tempfile.mkdtemp() + "/s", 4,
        ...                            size=64, verbose=0), verbose=0)
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=64)
        >>> result = fine_tune(fx, build_head(1280, 2), images, images.labels, images,
        ...                    images.labels, config=FineTuneConfig(blocks=1, epochs=2), verbose=0)
        fine-tuning ...
        >>> len(result.history), len(result.unfrozen) > 0
        (2, True)
    """
    config = config.validate()
    verbose = check_verbose(verbose)
    train_paths, val_paths = _paths(train), _paths(validation)
    y_train = np.asarray(y_train, dtype=np.int32)
    require(len(train_paths) > 0 and y_train.shape == (len(train_paths),), "train / y_train",
            "one label per image, at least one image",
            f"{len(train_paths)} images, labels of shape {y_train.shape}",
            "pass the training collection and its labels")
    require(not val_paths or y_val is not None and np.shape(y_val) == (len(val_paths),), "y_val",
            f"one label per validation image ({len(val_paths)})",
            None if y_val is None else f"shape {np.shape(y_val)}",
            "pass the validation labels, or no validation images")

    keras.utils.set_random_seed(config.seed)
    tuned = copy_extractor(extractor)
    tuned_head = keras.models.clone_model(head)
    tuned_head.set_weights(head.get_weights())
    unfrozen = set_trainable_blocks(tuned, config.blocks)
    inputs = keras.Input((tuned.input_size, tuned.input_size, 3), name="image")
    model = keras.Model(inputs, tuned_head(tuned.model(inputs)), name="fine_tune")
    steps = math.ceil(len(train_paths) / config.batch_size)
    model.compile(optimizer=config.make_optimizer(steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    size, batch = tuned.input_size, config.batch_size
    train_ds = _image_dataset(train_paths, y_train, size, batch, config.seed, policy,
                              config.epochs)
    val_ds = initial = None
    if val_paths:
        val_ds = _image_dataset(val_paths, np.asarray(y_val, np.int32), size, batch)
        loss, accuracy = model.evaluate(val_ds, verbose=0)
        initial = {"val_loss": float(loss), "val_accuracy": float(accuracy)}
    if verbose:
        start = f", validation accuracy before: {initial['val_accuracy']:.4f}" if initial else ""
        print(f"fine-tuning phase: top {config.blocks} block(s) of {extractor.name} "
              f"({len(unfrozen)} layers) + head on {len(train_paths)} images, up to "
              f"{config.epochs} epochs, {config.optimizer} {config.learning_rate:g}{start}",
              flush=True)
    listed = [LearningRateLog(), *progress_callbacks(
        verbose, config.epochs, "Fine-tuning", math.ceil(len(val_paths) / batch) or None)]
    early = None
    if val_paths:
        # Validation accuracy moves in steps of one photo, so ties are common; they go to the
        # lower loss (as in the keep decision below). Measured with the top 8 blocks, 3 seeds:
        # test accuracy 0.844 with the first tied epoch, 0.861 with this (benchmarks/README.md).
        listed.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(
            val_score=logs["val_accuracy"] - 1e-6 * logs["val_loss"])))
        early = keras.callbacks.EarlyStopping("val_score", patience=config.patience,
                                              mode="max", restore_best_weights=True)
        listed.append(early)
    started = time.perf_counter()
    try:
        keras_history = model.fit(
            train_ds, epochs=config.epochs, steps_per_epoch=steps, validation_data=val_ds,
            class_weight=class_weights(y_train, int(head.output_shape[-1]), class_weight),
            callbacks=listed + list(callbacks), shuffle=False, verbose=0)
    finally:
        set_trainable_blocks(tuned, 0)
    history = TrainingHistory.from_keras(
        keras_history, monitor="val_accuracy" if val_paths else "accuracy", early=early,
        epochs_requested=config.epochs, seconds=time.perf_counter() - started)
    best = history.best
    if not val_paths:
        history.best_epoch = history.rows[-1]["epoch"]  # no validation: the last epoch is kept
    elif config.keep == "improved" and (best["val_accuracy"], -best["val_loss"]) <= (
            initial["val_accuracy"], -initial["val_loss"]):  # the start competes; ties: lower loss
        # The outcome prints even when silent: "improving" that did not improve must be visible.
        print(f"fine-tuning discarded: no epoch beat the head-only model on validation "
              f"(accuracy {initial['val_accuracy']:.4f}); the head-only model is kept",
              flush=True)
        return FineTuneResult(extractor, head, history, unfrozen, initial, improved=False)
    else:
        print(f"fine-tuning kept: epoch {history.best_epoch}, validation accuracy "
              f"{initial['val_accuracy']:.4f} -> {best['val_accuracy']:.4f}", flush=True)
    tuned = replace(tuned, weights=WeightsSource("fine-tuned", extractor.weights.path,
                                                 weights_digest(tuned)))
    return FineTuneResult(tuned, tuned_head, history, unfrozen, initial, improved=True)


def _paths(images) -> list[str]:
    """Image paths as strings, from an ImageCollection, a list of paths or None."""
    # not ``images or ()``: the truth of a numpy array of paths is ambiguous
    return [str(p) for p in getattr(images, "paths", () if images is None else images)]


# ---------------------------------------------------------------------- data
def _image_dataset(paths, labels, size, batch, seed=None, policy=None, epochs=1):
    """Images and labels in batches of float 0..255.

    Training (``seed`` given): ``epochs`` seeded permutations, batched per epoch,
    each batch augmented by ``policy`` with its own seeded draw. Validation (no
    ``seed``): in order, decoded once and kept (uint8) in memory.
    """
    import tensorflow as tf

    load = model_image_loader(paths, size)
    if seed is None:
        dataset = (tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), labels))
                   .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                   .cache().batch(batch))
    else:
        # Seeded numpy permutations, not Dataset.shuffle: the orders the defaults were chosen
        # and measured with. Top 8 blocks, seeds 0-4: test 0.900 +- 0.017 with these, 0.870
        # +- 0.030 with a tf.data shuffle (benchmarks/README.md, thin-core refactor section).
        rng = np.random.default_rng(seed)
        order = np.stack([rng.permutation(len(paths)) for _ in range(epochs)])
        dataset = tf.data.Dataset.from_tensor_slices((order, np.asarray(labels)[order])).flat_map(
            tf.autograph.experimental.do_not_convert(
                lambda indices, y: tf.data.Dataset.from_tensor_slices((indices, y))
                .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch)))

    @tf.autograph.experimental.do_not_convert
    def to_float(step, batch_xy):
        images = tf.cast(batch_xy[0], tf.float32)
        if policy is not None:  # a fresh, seeded draw for every batch of every epoch
            images = policy.augment_batch(images, tf.stack([tf.constant(seed, tf.int64), step]))
        return images, batch_xy[1]

    return dataset.enumerate().map(to_float).prefetch(tf.data.AUTOTUNE)


__all__ = ["FINE_TUNE_KEEP", "FINE_TUNE_OPTIMIZERS", "FINE_TUNE_SCHEDULES", "FineTuneConfig",
           "FineTuneResult", "copy_extractor", "fine_tune", "set_trainable_blocks",
           "top_block_layers", "weights_digest"]
