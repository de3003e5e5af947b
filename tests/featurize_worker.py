"""Featurize a list of images into a feature cache in a child process (used by tests/test_cache.py).

Usage: python tests/featurize_worker.py LIST.json CACHE_DIR [--size 32]
       [--seed 0] [--delay SECONDS] [--go-file PATH]

Prints one JSON line: the extractor's fingerprint, the run's stats and its start/end times.
``--delay`` sleeps in every image read so a test can kill the process mid-run.
``--go-file``: print "ready" once the model is built, then wait for PATH to exist before
featurizing, so a test can start several workers at the same moment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image_list")
    parser.add_argument("cache")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--go-file", default=None)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    from vitl.backbones import build_feature_extractor
    from vitl.features import featurize, pipeline

    if args.delay:
        read = pipeline.read_image

        def slow_read(path, size=None):
            time.sleep(args.delay)
            return read(path, size)

        pipeline.read_image = slow_read

    with open(args.image_list) as handle:
        paths = json.load(handle)
    keras.utils.set_random_seed(args.seed)
    extractor = build_feature_extractor("mobilenetv2", weights=None, input_size=args.size)
    fingerprint = extractor.fingerprint
    if args.go_file:
        print("ready", flush=True)
        while not os.path.exists(args.go_file):
            time.sleep(0.01)
    start = time.time()
    _, stats = featurize(paths, extractor, cache=args.cache,
                         verbose=0, return_stats=True)
    print(json.dumps({"fingerprint": fingerprint, "start": start, "end": time.time(),
                      "hits": stats.hits, "computed": stats.computed}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
