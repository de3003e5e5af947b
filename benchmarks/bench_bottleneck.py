"""Benchmark the bottleneck phase: featurizing JPEGs through the feature cache.

Prints one table. Everything is measured side by side in one run, so the
ratios hold even when other processes share the CPU (the load is printed).

    .venv/bin/python benchmarks/bench_bottleneck.py            # real numbers (8-15 min, 2 cores)
    .venv/bin/python benchmarks/bench_bottleneck.py --quick    # plumbing check (~2 min)

Rows (ResNet101V2 at 224x224 with random weights: same speed as ImageNet weights):
  0. the backbone call: predict_on_batch (what featurize uses) vs tf.function vs eager
  1. featurize end to end from JPEG files / bare model.predict on decoded images (target >= 0.9)
  2. warm-cache rerun vs cold run on 400 images (target >= 50x)
  3. peak RSS featurizing 1,000 and 5,000 images, each in a fresh process (target <= 2.5 GiB, flat)
  4. bfloat16 vs float32: throughput, max feature difference, downstream accuracy (mobilenetv2-tv)
  5. achieved FLOP/s of featurizing vs a warm 4096x4096 float32 matmul
Competing measurements run interleaved (rotating which goes first), so they share the load.

Images: the 400-image SDNET2018 sample (/work/shared/data or $VITL_SDNET_ZIP), unpacked to a
temp folder; counts above 400 are re-encoded copies with one pixel changed, so every file has
its own content hash (a real cache miss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# $VITL_SDNET_ZIP, else the data mirror ($VITL_DATA_MIRROR, default ../shared/data)
DEFAULT_ZIP = Path(os.environ.get("VITL_SDNET_ZIP") or Path(os.environ.get(
    "VITL_DATA_MIRROR", REPO.parent / "shared" / "data")) / "sdnet2018-decks-sample.zip")
BACKBONE, SIZE = "resnet101v2", 224


# -- images --------------------------------------------------------------------


def unpack_sdnet(zip_path: Path, into: Path) -> tuple[list[Path], np.ndarray]:
    """Unpack the sample; return its 400 JPEG paths (CD then UD, sorted) and labels (CD=1)."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    paths, labels = [], []
    for label, name in [(1, "CD"), (0, "UD")]:
        found = sorted((into / "assets" / name).glob("*.jpg"))
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels)


def image_pool(originals: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` JPEG paths: the originals, then re-encoded copies with one pixel changed."""
    paths = list(originals[:count])
    copy = 0
    while len(paths) < count:
        copy += 1
        target = folder / f"copy{copy:03d}"
        target.mkdir(parents=True, exist_ok=True)
        for source in originals[:count - len(paths)]:
            pixels = np.asarray(Image.open(source).convert("RGB")).copy()
            pixels[0, 0] = (copy % 256, copy // 256 % 256, 7)
            out = target / source.name
            Image.fromarray(pixels).save(out, quality=92)
            paths.append(out)
    return paths


def decode_all(paths, size) -> np.ndarray:
    from vitl.data import read_image

    return np.stack([read_image(p, size) for p in paths]).astype(np.float32)


# -- measurements ----------------------------------------------------------------


def build(backbone=BACKBONE, weights=None, size=None, precision="float32"):
    import keras

    from vitl.backbones import build_feature_extractor

    keras.utils.set_random_seed(0)
    return build_feature_extractor(backbone, weights=weights, input_size=size, precision=precision)


def warm_up(model, size, batch_size=32):
    """Trace the model's predict function for full and partial batches (both paths share it)."""
    for n in (batch_size, 3):
        model.predict_on_batch(np.zeros((n, size, size, 3), np.float32))
    model.predict(np.zeros((batch_size + 3, size, size, 3), np.float32), batch_size=batch_size,
                  verbose=0)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def interleaved(rounds) -> dict:
    """Run each round's callables, rotating which goes first; return seconds per name per round.

    Side by side on a shared machine: load changes by other processes hit all
    contenders alike.
    """
    seconds = defaultdict(list)
    for number, runs in enumerate(rounds):
        names = list(runs)
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(runs[name])[1])
    return seconds


def predict_loop(model, pixels, batch_size=32):
    for start in range(0, len(pixels), batch_size):
        model.predict_on_batch(pixels[start:start + batch_size])


def call_styles(model, pixels, rounds=3) -> dict:
    """Best images/s of three ways to run the frozen model on in-memory batches of 32."""
    import tensorflow as tf

    size = pixels.shape[1]
    compiled = tf.function(lambda x: model(x, training=False), input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.float32)])
    batches = [pixels[i:i + 32] for i in range(0, len(pixels), 32)]

    def each(call):
        return lambda: [call(batch) for batch in batches]

    styles = {"predict_on_batch": each(model.predict_on_batch),
              "tf.function": each(lambda b: compiled(tf.constant(b)).numpy()),
              "eager model(x)": each(lambda b: model(b, training=False).numpy())}
    for run in styles.values():
        run()
    seconds = interleaved([styles] * rounds)
    return {name: len(pixels) / min(times) for name, times in seconds.items()}


def matmul(n=4096, dtype="float32"):
    """A callable running one warm n x n matmul (2 n^3 FLOPs) to completion."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)

    def run():
        return tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)).numpy()

    run()
    return run


def count_flops(model) -> int:
    """Forward FLOPs per image (2 x multiply-adds) of the conv and dense layers, from the model."""
    import keras

    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, channels, multiplier = layer.kernel.shape
            h, w = layer.output.shape[1:3]
            total += 2 * h * w * kh * kw * channels * multiplier
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, per_group, out = layer.kernel.shape
            h, w = layer.output.shape[1:3]
            total += 2 * h * w * kh * kw * per_group * out
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return int(total)


def _all_layers(model):
    for layer in model.layers:
        yield from _all_layers(layer) if hasattr(layer, "layers") else [layer]


def rss_child(args) -> None:
    """In a fresh process: featurize ``args.rss_child`` images, print peak RSS as JSON."""
    from vitl.features import Featurizer

    paths = json.loads(Path(args.paths_file).read_text())[:args.rss_child]
    extractor = build(args.rss_backbone, size=None)
    featurizer = Featurizer(extractor, cache=args.cache_dir, verbose=0)
    warm_up(extractor.model, extractor.input_size)
    before = _status_kib("VmRSS")
    featurizer.featurize(paths)
    stats = featurizer.last_stats
    print(json.dumps({"images": len(paths), "rss_before_kib": before,
                      "peak_kib": _status_kib("VmHWM"), "img_per_s": stats.images_per_second,
                      "computed": stats.computed}))


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def run_rss(counts, backbone, pool_file, workdir) -> list[dict]:
    results = []
    for count in counts:
        cache = Path(tempfile.mkdtemp(dir=workdir, prefix=f"rss{count}-"))
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(count), "--paths-file", str(pool_file),
             "--cache-dir", str(cache), "--rss-backbone", backbone],
            capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        shutil.rmtree(cache)
    return results


def downstream_accuracy(features, labels) -> tuple[float, np.ndarray]:
    """Test accuracy and test predictions of a LogisticRegression, fixed stratified 70/30 split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=0.3, stratify=labels,
                                   random_state=0)
    model = LogisticRegression(max_iter=5000).fit(features[train], labels[train])
    predicted = model.predict(features[test])
    return float(np.mean(predicted == labels[test])), predicted


# -- report ----------------------------------------------------------------------


def gib(kib: int) -> str:
    return f"{kib / 2**20:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small counts and mobilenetv2 (a plumbing check, not the real numbers)")
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="SDNET2018 sample zip")
    parser.add_argument("--backbone", default=None,
                        help=f"backbone for rows 0-2, 4, 5 (default {BACKBONE}; --quick: mobilenetv2)")
    parser.add_argument("--rss-counts", type=int, nargs="+", default=None)
    parser.add_argument("--rss-backbone", default=None)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--paths-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args)

    import tensorflow as tf

    from vitl.features import Featurizer, featurize

    e2e_count = 96 if args.quick else 400
    rss_counts = args.rss_counts or ([200, 1000] if args.quick else [1000, 5000])
    backbone = args.backbone or ("mobilenetv2" if args.quick else BACKBONE)
    rss_backbone = args.rss_backbone or backbone
    rows = []  # (row, measurement, value, target)
    load_start = os.getloadavg()
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="vitl-bench-bottleneck-"))
    try:
        originals, labels = unpack_sdnet(args.zip, workdir / "sdnet")
        pool = image_pool(originals, max(rss_counts + [e2e_count]), workdir / "copies")
        pool_file = workdir / "pool.json"
        pool_file.write_text(json.dumps([str(p) for p in pool]))
        e2e_paths = pool[:e2e_count]
        print(f"{len(pool)} JPEGs ready in {workdir}", file=sys.stderr)

        # 0: ways to call the backbone.
        extractor = build(backbone)
        model = extractor.model
        warm_up(model, SIZE)
        pixels = decode_all(e2e_paths, SIZE)
        for name, rate in call_styles(model, pixels[:64]).items():
            rows.append(("0", f"{backbone}@{SIZE} {name}, batches of 32 in memory (best of 3)",
                         f"{rate:.2f} img/s", ""))
        print("row 0 done", file=sys.stderr)

        # 1 + 5: end to end vs bare calls vs a matmul, in interleaved chunks of 80 images;
        # every chunk is new to the cache, so the featurize calls are cold.
        cache_dir = workdir / "cache"
        featurizer = Featurizer(extractor, cache=cache_dir, verbose=0)
        product = matmul()
        chunk = 80
        rounds = [{"predict": partial(model.predict, pixels[i:i + chunk], batch_size=32,
                                      verbose=0),
                   "predict_on_batch": partial(predict_loop, model, pixels[i:i + chunk]),
                   "featurize": partial(featurizer.featurize, e2e_paths[i:i + chunk]),
                   "matmul": product}
                  for i in range(0, e2e_count, chunk)]
        seconds = interleaved(rounds)
        rate = {name: e2e_count / sum(seconds[name])
                for name in ("predict", "predict_on_batch", "featurize")}
        cold_s = sum(seconds["featurize"])
        rows += [
            ("1", f"bare model.predict on {e2e_count} decoded images", f"{rate['predict']:.2f} img/s",
             ""),
            ("1", "bare predict_on_batch loop on the same decoded images",
             f"{rate['predict_on_batch']:.2f} img/s", ""),
            ("1", f"featurize from JPEG files, cold cache ({e2e_count} computed)",
             f"{rate['featurize']:.2f} img/s", ""),
            ("1", "end to end / bare model.predict", f"{rate['featurize'] / rate['predict']:.3f}",
             ">= 0.9"),
            ("1", "end to end / bare predict_on_batch loop (stricter)",
             f"{rate['featurize'] / rate['predict_on_batch']:.3f}", ""),
        ]
        flops = count_flops(model)
        best_chunk = max(len(r["featurize"].args[0]) / t
                         for r, t in zip(rounds, seconds["featurize"]))
        achieved, peak = flops * best_chunk, 2 * 4096**3 / min(seconds["matmul"])
        rows += [
            ("5", (f"{backbone}@{SIZE} forward FLOPs per image (2 x multiply-adds, counted from "
                  "its conv layers)"), f"{flops / 1e9:.2f} GFLOP", ""),
            ("5", "achieved by featurize (best chunk of row 1)", f"{achieved / 1e9:.1f} GFLOP/s", ""),
            ("5", "4096x4096 float32 tf.linalg.matmul, warm (best, between the same chunks)",
             f"{peak / 1e9:.1f} GFLOP/s", ""),
            ("5", "featurize / matmul", f"{achieved / peak:.0%}", ""),
        ]
        print("rows 1 and 5 done", file=sys.stderr)

        # 2: warm rerun, all hits.
        warm, warm_s = timed(lambda: featurizer.featurize(e2e_paths))
        assert featurizer.last_stats.hits == e2e_count
        uncached = Featurizer(extractor, cache=None, verbose=0).featurize(e2e_paths[:40])
        np.testing.assert_allclose(warm[:40], uncached, rtol=1e-5,
                                   atol=1e-6 * float(np.abs(uncached).max()))
        _, fresh_s = timed(lambda: featurize(e2e_paths, extractor, cache=cache_dir,
                                             verbose=0))
        rows += [
            ("2", f"warm rerun, same Featurizer ({e2e_count} hits)",
             (f"{warm_s:.3f} s = {cold_s / warm_s:.0f}x faster than the cold {cold_s:.1f} s "
             "of row 1"), ">= 50x"),
            ("2", "warm rerun via featurize() (hashes the random weights again)",
             f"{fresh_s:.3f} s = {cold_s / fresh_s:.0f}x", ""),
        ]
        del pixels
        print("row 2 done", file=sys.stderr)

        # 4: bfloat16 vs float32 on ResNet101V2 (same random weights), with matmuls ...
        bf16 = build(backbone, precision="bfloat16")
        bf16.model.set_weights(model.get_weights())
        warm_up(bf16.model, SIZE)
        sample = decode_all(e2e_paths[:32], SIZE)
        runs = {"float32": partial(predict_loop, model, sample),
                "bfloat16": partial(predict_loop, bf16.model, sample),
                "matmul float32": product, "matmul bfloat16": matmul(dtype="bfloat16")}
        seconds = interleaved([runs] * 3)
        speed = {name: min(times) for name, times in seconds.items()}
        fp32_rate, bf16_rate = len(sample) / speed["float32"], len(sample) / speed["bfloat16"]
        reference = model.predict_on_batch(sample)
        diff = np.abs(reference - bf16.model.predict_on_batch(sample)).max()
        rows += [
            ("4", f"{backbone}@{SIZE} float32 / bfloat16, batches of 32 in memory (best of 3)",
             f"{fp32_rate:.2f} / {bf16_rate:.2f} img/s = {bf16_rate / fp32_rate:.2f}x", ""),
            ("4", "4096x4096 matmul float32 / bfloat16 (best of 3)",
             (f"{2 * 4096**3 / speed['matmul float32'] / 1e9:.0f} / "
             f"{2 * 4096**3 / speed['matmul bfloat16'] / 1e9:.0f} GFLOP/s"), ""),
            ("4", f"{backbone} max abs feature difference (random weights)",
             f"{diff:.4f} (max |feature| {np.abs(reference).max():.4f})", ""),
        ]
        # ... and downstream accuracy with real ImageNet weights on the tutorial data.
        try:
            tv = {p: build("mobilenetv2-tv", weights="imagenet", precision=p)
                  for p in ("float32", "bfloat16")}
        except Exception as err:  # noqa: BLE001 - the port may be missing on other machines
            rows.append(("4", "mobilenetv2-tv accuracy", f"pending: {err}", ""))
        else:
            for fx in tv.values():
                warm_up(fx.model, fx.input_size)
            rounds = [{name: partial(featurize, originals[i:i + 100], fx, cache=None,
                                     verbose=0) for name, fx in tv.items()}
                      for i in range(0, len(originals), 100)]
            results = {name: [] for name in tv}
            for number, runs in enumerate(rounds):
                names = list(runs)[number % 2:] + list(runs)[:number % 2]
                for name in names:
                    features, took = timed(runs[name])
                    results[name].append((features, took))
            feats = {name: np.concatenate([f for f, _ in parts]) for name, parts in results.items()}
            rates = {name: len(originals) / sum(t for _, t in parts)
                     for name, parts in results.items()}
            acc, predicted = {}, {}
            for name, f in feats.items():
                acc[name], predicted[name] = downstream_accuracy(f, labels)
            changed = int(np.sum(predicted["float32"] != predicted["bfloat16"]))
            gap = np.abs(feats["float32"] - feats["bfloat16"]).max()
            rows += [
                ("4", "mobilenetv2-tv featurize 400 JPEGs float32 / bfloat16 (interleaved)",
                 f"{rates['float32']:.1f} / {rates['bfloat16']:.1f} img/s", ""),
                ("4", "mobilenetv2-tv max abs feature difference",
                 f"{gap:.4f} (max |feature| {np.abs(feats['float32']).max():.2f})", ""),
                ("4", "logistic regression test accuracy, stratified 70/30",
                 (f"float32 {acc['float32']:.3f} / bfloat16 {acc['bfloat16']:.3f} "
                 f"({changed} of {len(predicted['float32'])} test predictions differ)"), ""),
            ]
        print("row 4 done", file=sys.stderr)

        # 3: peak RSS in fresh processes.
        for result in run_rss(rss_counts, rss_backbone, pool_file, workdir):
            label = (f"peak RSS featurizing {result['images']} images with {rss_backbone} "
                     f"(RSS after model build {gib(result['rss_before_kib'])})")
            rows.append(("3", label,
                         f"{gib(result['peak_kib'])} ({result['img_per_s']:.1f} img/s)",
                         "<= 2.5 GiB, flat"))
        print("row 3 done", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                if line.startswith("model name")), platform.processor())
    print(f"\nbottleneck benchmark{' (--quick)' if args.quick else ''}: {cpu}, "
          f"{os.cpu_count()} cores, TensorFlow {tf.__version__}, "
          f"{time.time() - started:.0f} s total")
    print(f"load average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
          "(other processes share the CPU; ratios are measured side by side)\n")
    print("| row | measurement | value | target |")
    print("|---|---|---|---|")
    for row in sorted(rows, key=lambda r: r[0]):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
