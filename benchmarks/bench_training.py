"""How fast is the head-training phase? train_head's fused epoch loop vs Keras model.fit.

Task: ML.NET's defaults on a large cached-feature set - 10,000 samples x 2048
features (two Gaussian classes, learnable), batch 10 (1,000 SGD steps per
epoch), staircase exponential LR decay, 200 epochs, early stopping off, no
validation set.

Approaches:

* ``fused-xla``: :func:`vitl.training.train_head` (one ``tf.function`` per epoch,
  ``tf.while_loop`` over mini-batches, XLA-compiled) - the default.
* ``fused``: the same without XLA (``HeadConfig(jit_compile=False)``).
* ``fit-spe-xla`` / ``fit-spe``: ``model.fit`` with ``steps_per_execution`` = one
  epoch of steps, with / without ``jit_compile``.
* ``fit``: plain ``model.fit`` (one Python round trip per step).

Slow approaches run ``--slow-epochs`` epochs and the 200-epoch time is
extrapolated (first epoch, which includes compilation, + mean of the others);
the table marks them ``*``.

    python benchmarks/bench_training.py                 # all approaches
    python benchmarks/bench_training.py --approaches fused-xla fused --epochs 50
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from vitl.training import HeadConfig, build_head, train_head

APPROACHES = ("fused-xla", "fused", "fit-spe-xla", "fit-spe", "fit")
SLOW = ("fit-spe-xla", "fit-spe", "fit")


def make_features(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian classes whose means differ slightly in every feature."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    shift = rng.normal(size=(2, dim)).astype(np.float32) * 0.05
    return rng.normal(size=(n, dim)).astype(np.float32) + shift[y], y


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start, self.ends, self.last = time.perf_counter(), [], {}

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())
        self.last = dict(logs or {})


def run(approach: str, x, y, epochs: int, batch_size: int) -> dict:
    config = HeadConfig(epochs=epochs, batch_size=batch_size, early_stopping=False,
                        jit_compile=approach == "fused-xla")
    timer = EpochTimes()
    started = time.perf_counter()
    if approach.startswith("fused"):
        train_head(x, y, n_classes=2, config=config, callbacks=[timer], verbose=False)
    else:
        keras.utils.set_random_seed(0)
        steps = math.ceil(len(x) / batch_size)
        model = build_head(x.shape[1], 2, config)
        model.compile(optimizer=config.make_optimizer(steps),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=1 if approach == "fit" else steps,
                      jit_compile=approach.endswith("xla"))
        model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                  callbacks=[timer])
    total = time.perf_counter() - started
    return {"approach": approach, "epochs_run": len(timer.ends), "total": total,
            "first": timer.ends[0] - started, "ends": timer.ends,
            "accuracy": timer.last.get("accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approaches", nargs="+", choices=APPROACHES, default=list(APPROACHES))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--slow-epochs", type=int, default=4,
                        help="epochs actually run for the model.fit approaches (then extrapolated)")
    args = parser.parse_args()

    x, y = make_features(args.n, args.dim)
    steps = math.ceil(args.n / args.batch_size)
    print(f"{args.n} x {args.dim} features, batch {args.batch_size} ({steps} steps/epoch), "
          f"{args.epochs} epochs, early stopping off, {os.cpu_count()} CPUs\n")
    seconds_title = f"seconds ({args.epochs} ep)"
    header = (f"{'approach':<12} {'epochs run':>10} {seconds_title:>17} {'first epoch s':>14}"
              f" {'epochs/s':>9} {'steps/s':>9} {'train acc':>9}")
    print(header)
    print("-" * len(header))
    for approach in args.approaches:
        epochs = min(args.slow_epochs, args.epochs) if approach in SLOW else args.epochs
        result = run(approach, x, y, epochs, args.batch_size)
        ends = result["ends"]
        later = np.diff(ends).mean() if len(ends) > 1 else result["first"]
        estimated = result["first"] + later * (args.epochs - 1)
        extrapolated = result["epochs_run"] < args.epochs
        total = estimated if extrapolated else result["total"]
        seconds = f"{total:.1f}{'*' if extrapolated else ' '}"
        acc = result["accuracy"]
        print(f"{approach:<12} {result['epochs_run']:>10} {seconds:>17} {result['first']:>14.2f}"
              f" {args.epochs / total:>9.2f} {args.epochs * steps / total:>9.0f}"
              f" {acc if acc is None else f'{acc:.4f}':>9}", flush=True)
    print("\n* extrapolated: first epoch + mean later epoch x (epochs - 1)")


if __name__ == "__main__":
    main()
