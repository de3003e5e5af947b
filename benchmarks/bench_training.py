"""How fast is the head-training phase? Keras ``model.fit`` (vitl's engine) vs a fused epoch loop.

vitl trains the head with ``model.fit`` on a ``tf.data`` pipeline from the
cached feature tensors (:func:`vitl.training.train_head`). Before that, vitl
had its own engine: one ``tf.function`` per epoch running a ``tf.while_loop``
over mini-batches of features already in a tensor (``fused``, reproduced
below). The fused loop was kept only if it were more than 2x faster at the
tutorial's size with the new defaults; this script measures that.

Task: two Gaussian classes whose means differ slightly in every feature, the
head defaults (``HeadConfig()``: Adam 1e-3, batch 32), early stopping off (a
fixed number of epochs, so every approach does the same work), validation
scored after every epoch when the size has a validation part.

Sizes:

* ``tutorial``: 252 train + 28 validation x 1280 (the SDNET sample's 280
  training images minus vitl's 10% hold-out, MobileNetV2 features), 100 epochs.
* ``tutorial-2048``: the same at 2048 features (ResNet101V2), 100 epochs.
* ``large``: 10,000 x 2048, no validation, 20 epochs (313 steps each).

Approaches:

* ``fit-xla``: ``train_head`` as shipped if ``jit_compile=True`` (tf.data from
  tensors, ``steps_per_execution`` = one epoch, XLA).
* ``fit``: the same without XLA (``HeadConfig(jit_compile=False)``).
* ``fit-spe1``: ``model.fit`` one step per execution, no XLA.
* ``fused-xla`` / ``fused``: the former engine, with / without XLA.

Every row runs ``--repeats`` times, interleaved (so load from other processes
hits all alike); the table shows the median seconds, compilation included.

    .venv/bin/python benchmarks/bench_training.py
    .venv/bin/python benchmarks/bench_training.py --sizes tutorial --repeats 5
    .venv/bin/python benchmarks/bench_training.py --quick     # plumbing check (~1 min)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np
import tensorflow as tf

from vitl.training import HeadConfig, build_head, train_head

APPROACHES = ("fit-xla", "fit", "fit-spe1", "fused-xla", "fused")
SIZES = {"tutorial": (252, 28, 1280, 100), "tutorial-2048": (252, 28, 2048, 100),
         "large": (10_000, 0, 2048, 20)}  # name -> (train, validation, dim, epochs)
QUICK_ROWS, QUICK_EPOCHS = 256, 3  # --quick: at most this many training rows, epochs per size


def make_features(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian classes whose means differ slightly in every feature."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    shift = rng.normal(size=(2, dim)).astype(np.float32) * 0.05
    return rng.normal(size=(n, dim)).astype(np.float32) + shift[y], y


def run_fit(x, y, xv, yv, config, steps_per_execution=None) -> dict:
    if steps_per_execution is None:
        _, history = train_head(x, y, xv, yv, n_classes=2, config=config, verbose=False)
        return {"epochs": len(history), "accuracy": history.rows[-1]["accuracy"]}
    keras.utils.set_random_seed(config.seed)
    model = build_head(x.shape[1], 2, config)
    model.compile(optimizer=config.make_optimizer(math.ceil(len(x) / config.batch_size)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=config.jit_compile, steps_per_execution=steps_per_execution)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(
        config.batch_size)
    val = None if xv is None else tf.data.Dataset.from_tensor_slices((xv, yv)).batch(4096)
    history = model.fit(data, epochs=config.epochs, validation_data=val, verbose=0)
    return {"epochs": len(history.epoch), "accuracy": history.history["accuracy"][-1]}


class FusedEpoch:
    """The former engine: one epoch of mini-batch steps in one tf.function (tf.while_loop)."""

    def __init__(self, model, x, y, batch_size, jit_compile):
        self.model, self.batch_size, self.n = model, batch_size, len(x)
        self.x, self.y = tf.constant(x), tf.constant(y)
        model.optimizer.build(model.trainable_variables)
        self.epoch = tf.function(self._run, jit_compile=jit_compile)
        self.predict = tf.function(lambda v: model(v, training=False), jit_compile=jit_compile)

    def __call__(self, order):
        steps = math.ceil(self.n / self.batch_size)
        index = np.zeros(steps * self.batch_size, np.int32)
        index[: self.n] = order
        mask = np.zeros(steps * self.batch_size, np.float32)
        mask[: self.n] = 1
        loss, correct = self.epoch(tf.constant(index.reshape(steps, -1)),
                                   tf.constant(mask.reshape(steps, -1)))
        return float(loss) / self.n, float(correct) / self.n

    def _run(self, index, mask):
        variables = self.model.trainable_variables

        def step(i, loss_sum, correct):
            batch, keep = index[i], mask[i]
            x, y = tf.gather(self.x, batch), tf.gather(self.y, batch)
            with tf.GradientTape() as tape:
                proba = self.model(x, training=True)
                ce = keras.losses.sparse_categorical_crossentropy(y, proba) * keep
                loss = tf.reduce_sum(ce) / tf.reduce_sum(keep)
            grads = tape.gradient(loss, variables)
            self.model.optimizer.apply_gradients(zip(grads, variables))
            hits = tf.cast(tf.equal(tf.argmax(proba, -1, output_type=tf.int32), y), tf.float32)
            return i + 1, loss_sum + tf.reduce_sum(ce), correct + tf.reduce_sum(hits * keep)

        _, loss_sum, correct = tf.while_loop(lambda i, *_: i < tf.shape(index)[0], step,
                                             (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
        return loss_sum, correct


def run_fused(x, y, xv, yv, config) -> dict:
    keras.utils.set_random_seed(config.seed)
    model = build_head(x.shape[1], 2, config)
    model.compile(optimizer=config.make_optimizer(math.ceil(len(x) / config.batch_size)))
    epoch = FusedEpoch(model, x, y, config.batch_size, config.jit_compile)
    rng = np.random.default_rng(config.seed)
    for _ in range(config.epochs):
        _, accuracy = epoch(rng.permutation(len(x)))
        if xv is not None:
            np.mean(np.asarray(epoch.predict(tf.constant(xv))).argmax(1) == yv)
    return {"epochs": config.epochs, "accuracy": accuracy}


def run(approach, x, y, xv, yv, epochs) -> dict:
    config = HeadConfig(epochs=epochs, early_stopping=False,
                        jit_compile=approach.endswith("xla"))
    start = time.perf_counter()
    if approach.startswith("fused"):
        result = run_fused(x, y, xv, yv, config)
    else:
        result = run_fit(x, y, xv, yv, config, 1 if approach == "fit-spe1" else None)
    return {**result, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approaches", nargs="+", choices=APPROACHES, default=list(APPROACHES))
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help=f"plumbing check: 1 repeat, {QUICK_EPOCHS} epochs, at most "
                             f"{QUICK_ROWS} training rows per size")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    print(f"{'--quick (plumbing check, not the real numbers); ' if args.quick else ''}"
          f"head defaults {HeadConfig()}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start\n")
    reference = "fit" if "fit" in args.approaches else args.approaches[0]
    print(f"| size | approach | seconds (median) | ms / epoch | train acc | speed vs {reference} |")
    print("|---|---|---:|---:|---:|---:|")
    for size in args.sizes:
        n, n_val, dim, epochs = SIZES[size]
        if args.quick:
            n, epochs = min(n, QUICK_ROWS), QUICK_EPOCHS
        x, y = make_features(n + n_val, dim)
        xv, yv = (x[n:], y[n:]) if n_val else (None, None)
        x, y = x[:n], y[:n]
        times = {a: [] for a in args.approaches}
        last = {}
        for _ in range(repeats):
            for approach in args.approaches:
                last[approach] = run(approach, x, y, xv, yv, epochs)
                times[approach].append(last[approach]["seconds"])
        base = statistics.median(times[reference])
        label = f"{size} ({n}{f' + {n_val}' if n_val else ''} x {dim}, {epochs} ep)"
        for approach in args.approaches:
            median = statistics.median(times[approach])
            print(f"| {label} | {approach} | {median:.2f} | {1000 * median / epochs:.0f} | "
                  f"{last[approach]['accuracy']:.3f} | {base / median:.2f}x |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
