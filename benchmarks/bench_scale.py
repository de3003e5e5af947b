"""Benchmark the bottleneck phase at scale: Ray engine overhead, shard import, precision.

Prints tables (copied into benchmarks/README.md). Parts, each runnable alone:

    .venv/bin/python benchmarks/bench_scale.py ray        # local 2-worker Ray vs one process
    .venv/bin/python benchmarks/bench_scale.py import     # shard write / import rows/s
    .venv/bin/python benchmarks/bench_scale.py precision  # probe img/s, accuracy per precision
    .venv/bin/python benchmarks/bench_scale.py decode     # per-image CPU figures for the estimate
    .venv/bin/python benchmarks/bench_scale.py            # every part, one after another
    .venv/bin/python benchmarks/bench_scale.py --quick    # plumbing check of every part (~2 min)

``--quick`` (with or without a part): ray on 8 JPEGs with mobilenetv2, shards of 4 (2 shards),
one round, skipped with a line when Ray is not installed; import 2,000 rows in 2 files;
precision probes mobilenetv2-tv only, then one seed on 100 images at 96 px; decode 40 images.

Images: the 400-image SDNET2018 sample ($VITL_DATA_MIRROR, default ../shared/data), unpacked
to a temp folder. Every run uses fresh caches in a temp folder; VITL_HOME is a temp folder too,
so the precision probe really runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray kills workers when the *machine* is short of memory; other jobs share this one.
os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("VITL_DATA_MIRROR", str(REPO.parent / "shared" / "data"))

import numpy as np

PARTS = ["ray", "import", "precision", "decode"]

def sdnet(tmp: Path) -> Path:
    from vitl.datasets import sdnet2018_decks

    return Path(sdnet2018_decks(data_dir=tmp / "data", verbose=0))


def machine() -> str:
    from vitl.backbones.precision import cpu_description

    return f"{cpu_description()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def part_ray(tmp: Path, backbone: str, rounds: int, count: int, shard_size: int = 50) -> None:
    """One process vs a local 2-worker Ray instance on the same ``count`` JPEGs, fresh caches."""
    import shutil

    if importlib.util.find_spec("ray") is None:
        print("ray part skipped: Ray is not installed in this venv (pip install 'vitl[ray]')")
        return
    from vitl.features.folder import featurize_folder

    data = tmp / "subset"
    for i, path in enumerate(sorted(sdnet(tmp).rglob("*.jpg"))[:count]):
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / path.parent.name / f"{i:04d}.jpg")
    rows = {"local": [], "ray": []}
    worker_seconds = []
    for r in range(rounds):
        order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
        for engine in order:
            cache = tmp / f"cache-{engine}-{r}"
            extra = {"workers": 2, "shard_size": shard_size} if engine == "ray" else {}
            start = time.perf_counter()
            stats = featurize_folder(data, backbone, weights=None, cache=cache, engine=engine,
                                     verbose=0, **extra)
            rows[engine].append(time.perf_counter() - start)
            assert stats.computed == count, stats
            if engine == "ray":
                from vitl.features.shards import read_shard, shard_files

                worker_seconds.append(sum(read_shard(p, rows=False).meta["writer"]["seconds"]
                                          for p in shard_files(cache / "shards")))
            print(f"  round {r} {engine}: {rows[engine][-1]:.1f} s  {stats}", flush=True)
    local, ray = min(rows["local"]), min(rows["ray"])
    print(f"\n{machine()}; {backbone}@224 random weights, {count} SDNET JPEGs, best of {rounds}")
    print("| engine | wall s | img/s | ratio to local |")
    print("|---|---:|---:|---:|")
    print(f"| local, 1 process (2 TF threads) | {local:.1f} | {count / local:.1f} | 1.00 |")
    print(f"| ray, local instance, 2 actors x 1 CPU, shards of {shard_size} | {ray:.1f} "
          f"| {count / ray:.1f} "
          f"| {ray / local:.2f} |")
    busy = min(worker_seconds)
    print(f"actor busy time (sum over shards) {busy:.1f} s = {busy / 2:.1f} s per actor; the rest of "
          f"the Ray wall time ({ray - busy / 2:.1f} s) is start-up (Ray, 2 TensorFlow actors, "
          "backbone builds), hashing and import")


def part_import(tmp: Path, rows: int, dim: int, per_file: int = 10_000) -> None:
    """Rows/s of writing shards, importing them into a fresh cache, and re-importing (no-op)."""
    from vitl.features.cache import FeatureCache, FeatureSpace
    from vitl.features.shards import import_shards, write_shard

    space = FeatureSpace("resnet101v2", "bench", 224, 1, "float32")
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for part in range(0, rows, per_file):
        n = min(per_file, rows - part)
        contents = [f"{i:064x}" for i in range(part, part + n)]
        write_shard(tmp / "shards" / f"s{part:08d}.parquet", space, dim, contents,
                    rng.standard_normal((n, dim), dtype=np.float32))
    write = time.perf_counter() - start
    cache = FeatureCache(tmp / "import-cache")
    start = time.perf_counter()
    first = import_shards(tmp / "shards", cache)
    imported = time.perf_counter() - start
    start = time.perf_counter()
    again = import_shards(tmp / "shards", cache)
    reimport = time.perf_counter() - start
    assert first.added == rows and again.added == 0
    print(f"\n{machine()}; {rows} rows x {dim} float32 in files of {per_file}")
    print("| step | seconds | rows/s |")
    print("|---|---:|---:|")
    for name, seconds in (("write shards (Parquet, atomic rename)", write),
                          ("import into an empty sqlite cache", imported),
                          ("re-import (all present: lookup only, no writes)", reimport)):
        print(f"| {name} | {seconds:.1f} | {rows / seconds:,.0f} |")


def part_precision(tmp: Path, seeds, backbones=("resnet101v2", "mobilenetv2-tv"),
                   per_class=None, input_size=224) -> None:
    """The probe's img/s, and accuracy of mobilenetv2-tv features in float32 vs bfloat16.

    ``per_class`` keeps the first so many images of each class (default all).
    """
    os.environ["VITL_HOME"] = str(tmp / "home")
    from vitl import ImageClassifier, load_image_folder
    from vitl.backbones.precision import probe
    from vitl.data import split

    print(f"\n{machine()}")
    print("| backbone | float32 img/s | bfloat16 img/s | ratio | auto picks |")
    print("|---|---:|---:|---:|---|")
    for backbone in backbones:
        start = time.perf_counter()
        result = probe(backbone)
        speed = result["images_per_second"]
        ratio = speed["bfloat16"] / speed["float32"] if speed else float("nan")
        print(f"| {backbone} | {speed.get('float32', 0):.1f} | {speed.get('bfloat16', 0):.1f} "
              f"| {ratio:.2f} | {result['precision']} (probe {time.perf_counter() - start:.0f} s)"
              " |", flush=True)

    images = load_image_folder(sdnet(tmp), verbose=0)
    if per_class:
        images = images.subset(np.concatenate([np.flatnonzero(images.labels == label)[:per_class]
                                               for label in range(len(images.class_names))]))
    parts = split(images, 0.70, 0.15, 0.15, seed=0)
    results, predictions = {}, {}
    for precision in ("float32", "bfloat16"):
        for seed in seeds:
            clf = ImageClassifier("mobilenetv2-tv", precision=precision, seed=seed,
                                  input_size=input_size, cache=tmp / "acc-cache", verbose=False)
            clf.fit(parts.train, parts.validation)
            val = clf.evaluate(parts.validation).accuracy
            test = clf.evaluate(parts.test)
            results.setdefault(precision, []).append((val, test.accuracy))
            predictions[(precision, seed)] = clf.predict(parts.test)
            print(f"  {precision} seed {seed}: val {val:.3f} test {test.accuracy:.3f}", flush=True)
    print(f"\nmobilenetv2-tv@{input_size}, SDNET sample split 70/15/15 seed 0 ({len(parts.train)} / "
          f"{len(parts.validation)} / {len(parts.test)}), head seeds {list(seeds)}, mean ± sd")
    print("| precision | val accuracy | test accuracy |")
    print("|---|---|---|")
    for precision, runs in results.items():
        val, test = zip(*runs)
        sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
        print(f"| {precision} | {np.mean(val):.3f} ± {sd(val):.3f} "
              f"| {np.mean(test):.3f} ± {sd(test):.3f} |")
    differ = [int(np.sum(predictions[("float32", s)] != predictions[("bfloat16", s)]))
              for s in seeds]
    print(f"test predictions that differ between precisions, per seed: {differ} "
          f"of {len(parts.test)}")


def part_decode(tmp: Path, count=None) -> None:
    """Per-image CPU costs on this machine: sha256, decode+resize to 224, shard import."""
    from vitl._hashing import sha256_file
    from vitl.data import read_image

    paths = sorted(sdnet(tmp).rglob("*.jpg"))[:count]
    for name, fn in (("sha256 of the file", sha256_file),
                     ("decode + resize to 224 (read_image)",
                      lambda p: read_image(p, 224))):
        start = time.perf_counter()
        for p in paths:
            fn(p)
        ms = (time.perf_counter() - start) / len(paths) * 1000
        print(f"| {name} | {ms:.2f} ms per image, 1 thread |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=PARTS, default=None,
                        help="one part (default: every part in turn)")
    parser.add_argument("--backbone", default=None,
                        help="ray part (default resnet101v2; --quick: mobilenetv2)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=400, help="ray part: SDNET JPEGs used")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true",
                        help="plumbing check: tiny inputs for each part (see above)")
    args = parser.parse_args()
    quick = args.quick
    print(f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}"
          f"{'; --quick (plumbing check, not the real numbers)' if quick else ''}")
    for part in [args.part] if args.part else PARTS:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            if part == "ray":
                part_ray(tmp, args.backbone or ("mobilenetv2" if quick else "resnet101v2"),
                         1 if quick else args.rounds, 8 if quick else args.images,
                         4 if quick else 50)
            elif part == "import":
                if quick:  # 2 files; the dimension stays: shards are checked against it
                    part_import(tmp, 2_000, args.dim, per_file=1_000)
                else:
                    part_import(tmp, args.rows, args.dim)
            elif part == "precision":
                if quick:
                    part_precision(tmp, args.seeds[:1], ("mobilenetv2-tv",), 50, 96)
                else:
                    part_precision(tmp, args.seeds)
            else:
                part_decode(tmp, 40 if quick else None)


if __name__ == "__main__":
    main()
