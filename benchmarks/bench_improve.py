"""How much do augmentation and fine-tuning improve the tutorial's classifier?

Data: the ML.NET tutorial's 400-image SDNET2018 bridge-deck sample (200 CD =
cracked, 200 UD = uncracked), split once 70/15/15 by ``vitl.data.split(...,
seed=0)`` (the tutorial's own 3% test part would be 12 images: one image
would move accuracy by 8 points). Backbone ``mobilenetv2-tv`` at 224 px
(ImageNet weights available offline). Every configuration runs with several
seeds (head initialisation, shuffling, fine-tuning order and on-the-fly
augmentation); the split and the images stay fixed.

Rows (``--configs`` picks some), all with backbone ``mobilenetv2-tv``:

* ``head-mlnet``: the head alone with ML.NET's settings (``HeadConfig.mlnet()``:
  SGD 0.01, decay 0.94 every 2 epochs, batch 10, early stopping patience 20), 224 px.
* ``head``: the head alone with vitl's defaults (``HeadConfig()``).
* ``aug4`` / ``aug8``: ``head`` + 4 / 8 cached augmented views per
  training image (``AugmentPolicy()`` defaults).
* ``ft2`` / ``ft8``: ``head``, then fine-tuning the top 2 / 8 blocks
  (the defaults: Adam, peak 1e-4, one-epoch warm-up, cosine decay, at most
  10 epochs, patience 5, kept only if validation improves).
* ``head-256`` / ``aug4-256`` / ``ft8-256``: the same at 256 px, the tiles'
  own size (no resampling).
* ``grid``: ``run_grid`` (Adam head) over input size x learning rate x
  augment views, chosen by mean validation accuracy, the winner evaluated on
  test once.

    .venv/bin/python benchmarks/bench_improve.py              # everything (~45 min, 2 cores)
    .venv/bin/python benchmarks/bench_improve.py --configs head aug4 ft8 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_improve.py --quick               # plumbing check

Features (originals and augmented views) come from the feature cache
(``--cache``, default a folder in the temp dir, kept between runs): a
second run of the script computes no features at all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vitl.classifier import ImageClassifier
from vitl.data import load_image_folder, split
from vitl.datasets import sdnet2018_decks
from vitl.experiments import run_grid
from vitl.finetune import FineTuneConfig
from vitl.training import HeadConfig

MLNET = {"head": HeadConfig.mlnet()}
NATIVE = {"input_size": 256}  # the tiles' own size: no resampling
#: name -> (label, ImageClassifier parameters). Rows other than head-mlnet use the
#: head defaults (HeadConfig()); fine-tuning rows the fine-tuning defaults: Adam,
#: peak learning rate 1e-4 with a one-epoch warm-up and cosine decay, patience 5.
CONFIGS = {
    "head-mlnet": ("head only, ML.NET preset (SGD 0.01), 224 px", MLNET),
    "head": ("head only, defaults, 224 px", {}),
    "aug4": ("head + augment K=4, 224 px", {"augment": 4}),
    "aug8": ("head + augment K=8, 224 px", {"augment": 8}),
    "ft2": ("head + fine-tune top 2 blocks, 224 px", {"fine_tune": 2}),
    "ft8": ("head + fine-tune top 8 blocks, 224 px", {"fine_tune": 8}),
    "head-256": ("head only, defaults, 256 px", NATIVE),
    "aug4-256": ("head + augment K=4, 256 px", {**NATIVE, "augment": 4}),
    "ft8-256": ("head + fine-tune top 8 blocks, 256 px", {**NATIVE, "fine_tune": 8}),
}
GRID = {"input_size": [224, 256], "head__learning_rate": [0.01, 0.001], "augment": [0, 4]}


def mean_sd(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def run_config(name, parts, seeds, cache, backbone, quick_size, fine_tune_epochs) -> dict:
    label, params = CONFIGS[name]
    val, test, seconds, notes = [], [], [], []
    params = dict(params)
    if "fine_tune" in params:  # the number of top blocks
        params["fine_tune"] = FineTuneConfig(blocks=params["fine_tune"], epochs=fine_tune_epochs)
    if quick_size:
        params["input_size"] = quick_size
    for seed in seeds:
        clf = ImageClassifier(backbone, seed=seed, cache=cache, verbose=False, **params)
        started = time.perf_counter()
        clf.fit(parts.train, parts.validation)
        seconds.append(time.perf_counter() - started)
        val.append(clf.evaluate(parts.validation).accuracy)
        test.append(clf.evaluate(parts.test).accuracy)
        tuned = clf.fit_info_["fine_tune"]
        if tuned:
            notes.append(f"{'kept' if tuned['kept'] else 'discarded'} "
                         f"({tuned['epochs_run']} ep)")
        print(f"  {name} seed {seed}: val {val[-1]:.3f} test {test[-1]:.3f} "
              f"fit {seconds[-1]:.0f} s {notes[-1] if tuned else ''}", flush=True)
    return {"config": label, "val": mean_sd(val), "test": mean_sd(test),
            "seconds": f"{statistics.mean(seconds):.0f}", "notes": ", ".join(notes) or "-"}


def print_table(rows) -> None:
    columns = [("config", "configuration"), ("val", "val accuracy"), ("test", "test accuracy"),
               ("seconds", "fit s"), ("notes", "fine-tuning")]
    widths = [max(len(title), *(len(r[key]) for r in rows)) for key, title in columns]
    print("| " + " | ".join(t.ljust(w) for (_, t), w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(row[k].ljust(w) for (k, _), w in zip(columns, widths)) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=[*CONFIGS, "grid"],
                        choices=[*CONFIGS, "grid"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "vitl-bench-cache"))
    parser.add_argument("--mirror", default=os.environ.get(
        "VITL_DATA_MIRROR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--backbone", default="mobilenetv2-tv")
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="plumbing check: 96 px, one seed, 2 fine-tuning epochs")
    args = parser.parse_args(argv)
    quick_size = 96 if args.quick else None
    seeds = args.seeds[:1] if args.quick else args.seeds
    epochs = 2 if args.quick else args.fine_tune_epochs

    root = sdnet2018_decks(mirror=args.mirror, verbose=0)
    parts = split(load_image_folder(root, verbose=0), 0.70, 0.15, 0.15, seed=0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SDNET2018 deck sample, {args.backbone}, seeds {seeds}, "
          f"cache {args.cache}, load average {load:.1f}")
    print(parts.summary())

    rows = []
    for name in args.configs:
        if name == "grid":
            continue
        rows.append(run_config(name, parts, seeds, args.cache, args.backbone, quick_size,
                               epochs))
    print()
    print_table(rows)

    if "grid" in args.configs:
        started = time.perf_counter()
        grid = {**GRID, "input_size": [quick_size]} if quick_size else GRID
        results = run_grid(parts.train, parts.validation, parts.test, grid=grid, seeds=seeds,
                           base=ImageClassifier(args.backbone), cache=args.cache, verbose=0)
        best = results.best()
        report = results.evaluate_best_on_test()
        print(f"\nrun_grid: {len(results)} runs in {time.perf_counter() - started:.0f} s; "
              f"features computed: {sum(r['features_computed'] for r in results.rows)}")
        for entry in results.summary()[:5]:
            params = ", ".join(f"{k}={entry[k]}" for k in grid)
            print(f"  {params}: val {entry['val_accuracy_mean']:.3f} ± "
                  f"{entry['val_accuracy_sd']:.3f}")
        print(f"best by validation: {best.params} (seed {best.seed}): "
              f"test accuracy {report.accuracy:.3f}")


if __name__ == "__main__":
    main()
