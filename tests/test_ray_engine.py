"""vitl featurize --engine ray on a local 2-worker Ray instance: same keys and bits as local
featurizing, duplicates once, bad files reported, resume by shard, re-import a no-op, both
workers busy; and `vitl train` afterwards computes nothing and gives the same metrics."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from feature_helpers import write_images

from vitl.cli import main as vitl_main
from vitl.features import FeatureCache, featurize_folder
from vitl.features.folder import ExtractorRecipe
from vitl.features.pipeline import Featurizer

ray = pytest.importorskip("ray")
shards = pytest.importorskip("vitl.features.shards")

TINY = {"backbone": "mobilenetv2", "weights": None, "input_size": 32, "seed": 0}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module: 4 logical CPUs (2 actors + Ray Data's tasks).

    Ray's out-of-memory killer is off: it watches the whole machine, whose memory other
    jobs may fill, and would kill these small actors for it.
    """
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    # Ray starts the pool's actors asynchronously: on a loaded machine the first one up could
    # run every shard before the second is built. Waiting for both makes "both did work" sure.
    context = ray.data.DataContext.get_current()
    waited, context.wait_for_min_actors_s = context.wait_for_min_actors_s, 300
    yield
    context.wait_for_min_actors_s = waited
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two class folders of noise JPEGs, one file duplicated under another name, one corrupt."""
    root = tmp_path_factory.mktemp("ray") / "data"
    paths = write_images(root / "cracked", 9) + write_images(root / "intact", 9, start=9)
    shutil.copy(paths[0], root / "intact" / "same_bytes_as_img_000.jpg")
    (root / "intact" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def vectors_of(cache_dir) -> dict:
    """{(space id, content): vector} of every entry in a cache."""
    with FeatureCache(cache_dir) as cache:
        return {(space.id, c): v for space in cache.spaces()
                for contents, vectors in cache.iter_vectors(space)
                for c, v in zip(contents, vectors)}


@pytest.fixture(scope="module")
def first_run(cluster, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    local = featurize_folder(data, cache=tmp / "local", verbose=0, **TINY)
    remote = featurize_folder(data, cache=tmp / "ray", engine="ray", workers=2, shard_size=4,
                              verbose=0, **TINY)
    return tmp, local, remote


def test_same_keys_and_bit_identical_features_as_local(first_run):
    tmp, local, remote = first_run
    assert local.computed == remote.computed == 18  # 20 files: one duplicate, one corrupt
    expected, actual = vectors_of(tmp / "local"), vectors_of(tmp / "ray")
    assert len(expected) == 18 and set(actual) == set(expected)
    for key, vector in expected.items():
        assert np.array_equal(actual[key], vector), key


def test_duplicates_stored_once_and_corrupt_file_reported(first_run, data):
    tmp, local, remote = first_run
    assert len(FeatureCache(tmp / "ray")) == 18
    for stats in (local, remote):
        assert [Path(p).name for p, _ in stats.bad] == ["corrupt.jpg"]
        assert stats.identical == 1  # the printed counts add up to the images
        assert stats.images == stats.hits + stats.computed + stats.identical + len(stats.bad)
    rows = [shards.read_shard(p) for p in shards.shard_files(tmp / "ray" / "shards")]
    assert sum(len(s.contents) for s in rows) == 18  # the duplicate's content once
    assert [Path(e[1]).name for s in rows for e in s.errors] == ["corrupt.jpg"]
    assert "1 unreadable files skipped" in str(remote)
    with FeatureCache(tmp / "ray") as cache:  # `vitl cache info` shows the ray run too
        assert cache.info().last_runs[remote.backbone]["images"] == remote.images == 20


def test_both_workers_did_work(first_run):
    tmp, _, remote = first_run
    assert remote.shards["run"] == 5 and len(remote.workers) == 2
    writers = {shards.read_shard(p, rows=False).meta["writer"]["worker"]
               for p in shards.shard_files(tmp / "ray" / "shards")}
    assert writers == set(remote.workers)


def test_training_featurizer_hits_every_entry_ray_wrote(first_run, data):
    tmp, _, _ = first_run
    featurizer = Featurizer(ExtractorRecipe("mobilenetv2", None, 32).build(),
                            cache=tmp / "ray", verbose=0)
    good = [p for p in sorted(data.rglob("*.jpg")) if p.name != "corrupt.jpg"]
    featurizer.featurize(good)
    assert (featurizer.last_stats.hits, featurizer.last_stats.computed) == (19, 0)


def test_rerun_after_a_killed_run_computes_only_missing_shards(first_run, data, tmp_path):
    tmp, _, _ = first_run
    # A killed driver leaves shard files that were never imported: copy the shards, drop two
    # (the ones not finished yet) and start again with an empty cache.
    folder = tmp_path / "shards"
    shutil.copytree(tmp / "ray" / "shards", folder)
    files = shards.shard_files(folder)
    lost = files[:2]
    lost_rows = sum(len(shards.read_shard(p).contents) for p in lost)
    kept = {p.name: p.stat().st_mtime_ns for p in files[2:]}
    for p in lost:
        p.unlink()
    again = featurize_folder(data, cache=tmp_path / "cache", engine="ray", workers=2,
                             shard_size=4, shard_dir=folder, verbose=0, **TINY)
    assert again.shards == {"total": 5, "skipped": 0, "imported": 3, "run": 2}
    assert again.computed == lost_rows and again.imported == 18
    assert {p.name: p.stat().st_mtime_ns for p in files[2:]} == kept  # not rewritten
    resumed, reference = vectors_of(tmp_path / "cache"), vectors_of(tmp / "ray")
    assert set(resumed) == set(reference)
    assert all(np.array_equal(resumed[k], reference[k]) for k in reference)
    done = featurize_folder(data, cache=tmp_path / "cache", engine="ray", workers=2,
                            shard_size=4, shard_dir=folder, verbose=0, **TINY)
    assert (done.computed, done.imported, done.shards["run"]) == (0, 0, 0)
    with FeatureCache(tmp_path / "cache") as cache:
        assert shards.import_shards(folder, cache).added == 0  # re-import: a no-op
        assert len(cache) == 18


def test_cli_featurize_ray_then_train_computes_nothing_and_matches_local(
        cluster, data, tmp_path, capsys):
    metrics = {}
    for engine in ("ray", "local"):
        cache, out = tmp_path / f"cache-{engine}", tmp_path / f"model-{engine}"
        extra = ["--workers", "2", "--shard-size", "8"] if engine == "ray" else []
        assert vitl_main(["featurize", str(data), "--backbone", "mobilenetv2-tv",
                          "--input-size", "32", "--cache", str(cache), "--engine", engine,
                          *extra]) == 0
        out_text = capsys.readouterr().out
        assert f"(float32, {engine} engine): 0 cached, 18 computed" in out_text
        assert "corrupt.jpg" in out_text
        assert vitl_main(["train", str(data), "--out", str(out), "--cache", str(cache),
                          "--backbone", "mobilenetv2-tv", "--input-size", "32",
                          "--epochs", "5"]) == 0
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("featurized ")]
        assert lines and all(" 0 computed" in line for line in lines), lines
        metrics[engine] = json.loads((out / "metrics.json").read_text())
        assert metrics[engine]["precision"] == "float32"
    for part in ("validation", "test"):
        assert metrics["ray"][part] == metrics["local"][part]


def test_ray_workers_with_other_weights_are_refused(cluster, data, tmp_path):
    from vitl.features import ray_engine
    from vitl.features.cache import FeatureSpace

    recipe = ExtractorRecipe("mobilenetv2", None, 32, seed=0)
    space = FeatureSpace("mobilenetv2", "not-the-fingerprint", 32, 1, "float32")
    tasks = [{"name": "x.parquet", "items": [("0" * 64, str(next(data.rglob("*.jpg"))))]}]
    with pytest.raises(ValueError, match="worker weights: expected fingerprint not-the-fi"):
        list(ray_engine.run(tasks, recipe, space, tmp_path, workers=1))
    assert not list(tmp_path.glob("*.parquet"))


def test_a_really_killed_driver_resumes_with_the_missing_shards_only(cluster, data, tmp_path):
    """SIGKILL a `vitl featurize --engine ray` driver once some shards are written; rerun."""
    shard_dir, cache = tmp_path / "shards", tmp_path / "cache"
    options = ["--backbone", "mobilenetv2-tv", "--input-size", "32", "--engine", "ray",
               "--address", "auto", "--workers", "2", "--shard-size", "1",
               "--shard-dir", str(shard_dir), "--cache", str(cache)]
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    driver = subprocess.Popen([sys.executable, "-m", "vitl", "featurize", str(data), *options],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(shards.shard_files(shard_dir) if shard_dir.is_dir() else []) < 2:
        assert driver.poll() is None and time.time() < deadline, "driver ended before the kill"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(3)  # let an actor caught mid-shard finish its rename or die
    written = shards.shard_files(shard_dir)  # 19 shards of 1: 18 images and the corrupt file
    assert 2 <= len(written) < 19
    done_rows = sum(len(shards.read_shard(p).contents) for p in written)
    before = {p.name: p.stat().st_mtime_ns for p in written}
    again = featurize_folder(data, "mobilenetv2-tv", input_size=32, cache=cache, engine="ray",
                             workers=2, shard_size=1, shard_dir=shard_dir, verbose=0)
    assert again.shards["run"] == 19 - len(written)
    assert again.shards["skipped"] + again.shards["imported"] == len(written)
    assert again.computed == 18 - done_rows  # nothing written before is computed again
    after = shards.shard_files(shard_dir)
    assert len(after) == 19  # one per distinct content
    assert {p.name: p.stat().st_mtime_ns for p in after if p.name in before} == before
    reference = featurize_folder(data, "mobilenetv2-tv", input_size=32, cache=tmp_path / "local",
                                 verbose=0)
    assert reference.computed == 18
    resumed, expected = vectors_of(cache), vectors_of(tmp_path / "local")
    assert set(resumed) == set(expected)
    assert all(np.array_equal(resumed[k], expected[k]) for k in expected)
