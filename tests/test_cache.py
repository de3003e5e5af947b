"""FeatureCache: storage, damage detection, info/clear, CLI, kill-and-resume, concurrent writers."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import together
from feature_helpers import assert_features_close, build_extractor, direct_features, write_images

from vitl._hashing import sha256_file
from vitl.cli import main as vitl_main
from vitl.features import FeatureCache, FeatureKey, FeatureSpace, FeatureStats, Featurizer
from vitl.features import cache as cache_module

WORKER = Path(__file__).with_name("featurize_worker.py")
REPO = Path(__file__).resolve().parent.parent
SPACE = FeatureSpace("mobilenetv2", "fp", 32, 1, "float32")


@pytest.fixture(scope="module")
def extractor():
    return build_extractor(seed=0, size=32)


def key(i: int, space: FeatureSpace = SPACE) -> FeatureKey:
    return FeatureKey(f"{i:064x}", space)


def test_put_get_round_trip_is_exact_and_keyed_by_space(tmp_path):
    cache = FeatureCache(tmp_path)
    vectors = np.random.RandomState(0).standard_normal((5, 7)).astype(np.float32)
    cache.put_many((key(i), vectors[i]) for i in range(5))
    other = FeatureSpace("mobilenetv2", "fp", 32, 1, "float32", view=1, transform_id="t")
    got = cache.lookup([key(i) for i in range(7)] + [key(0, other)]).found
    assert set(got) == {key(i) for i in range(5)}  # absent keys are absent
    for i in range(5):
        assert got[key(i)].dtype == np.float32 and np.array_equal(got[key(i)], vectors[i])
    reopened = FeatureCache(tmp_path)  # persistent: another instance (or process) sees them
    assert len(reopened) == 5 and np.array_equal(reopened.lookup([key(3)]).found[key(3)], vectors[3])
    cache.put_many([(key(3), np.zeros(7))])  # replaces
    assert not reopened.lookup([key(3)]).found[key(3)].any()


def test_database_is_wal_with_busy_timeout(tmp_path):
    cache = FeatureCache(tmp_path)
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # sqlite waits this long in silence; vitl then warns and retries up to BUSY_TIMEOUT_S
    # (test_a_locked_cache_warns_that_it_waits_then_writes).
    assert cache._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5_000
    assert cache_module.BUSY_TIMEOUT_S >= 30


def test_space_ids_differ_in_every_field():
    variants = [SPACE, FeatureSpace("resnet101v2", "fp", 32, 1, "float32"),
                FeatureSpace("mobilenetv2", "fp2", 32, 1, "float32"),
                FeatureSpace("mobilenetv2", "fp", 64, 1, "float32"),
                FeatureSpace("mobilenetv2", "fp", 32, 2, "float32"),
                FeatureSpace("mobilenetv2", "fp", 32, 1, "bfloat16"),
                FeatureSpace("mobilenetv2", "fp", 32, 1, "float32", view=1),
                FeatureSpace("mobilenetv2", "fp", 32, 1, "float32", view=1, transform_id="x")]
    assert len({v.id for v in variants}) == len(variants)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_entry_is_detected_recomputed_and_repaired(damage, extractor, tmp_path):
    paths = write_images(tmp_path / "images", 6)
    featurizer = Featurizer(extractor, cache=tmp_path / "cache", verbose=0)
    reference = featurizer.featurize(paths)
    victim = sha256_file(paths[2])
    with sqlite3.connect(tmp_path / "cache" / "features.sqlite") as db:
        (blob,) = db.execute("SELECT vector FROM features WHERE content = ?", (victim,)).fetchone()
        bad = bytes([blob[0] ^ 0xFF]) + blob[1:] if damage == "flip" else blob[:-4]
        db.execute("UPDATE features SET vector = ? WHERE content = ?", (bad, victim))
    space_key = FeatureKey(victim, featurizer.space())
    assert featurizer.cache.lookup([space_key]).damaged == [space_key]

    again = featurizer.featurize(paths)
    stats = featurizer.last_stats
    assert (stats.hits, stats.computed, stats.repaired) == (5, 1, 1)
    assert np.array_equal(again, reference)
    repaired = featurizer.cache.lookup([space_key])
    assert repaired.damaged == [] and np.array_equal(repaired.found[space_key], reference[2])
    assert "1 damaged cache entries recomputed" in str(stats)


def test_info_and_clear_per_backbone(tmp_path):
    cache = FeatureCache(tmp_path)
    resnet = FeatureSpace("resnet101v2", "w", 224, 1, "float32")
    cache.put_many([(key(i), np.ones(4)) for i in range(3)] + [(key(9, resnet), np.ones(4))])
    cache.record_run(FeatureStats("mobilenetv2", images=4, hits=1, computed=3, repaired=0,
                                  seconds=2.0))
    info = cache.info()
    assert info.entries == 4 and info.entries_per_backbone == {"mobilenetv2": 3, "resnet101v2": 1}
    assert info.last_runs["mobilenetv2"]["hit_rate"] == 0.25 and info.size_bytes > 0
    text = str(info)
    assert "mobilenetv2" in text and "hit rate 25%" in text and str(info.path) in text
    assert "entries=4" in repr(cache)

    assert cache.clear("resnet101v2") == 1
    assert cache.info().entries_per_backbone == {"mobilenetv2": 3}
    assert cache.clear() == 3 and cache.info().entries == 0 and cache.info().last_runs == {}


def test_unreadable_database_is_set_aside_and_rebuilt(tmp_path):
    (tmp_path / "features.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.warns(UserWarning, match="is damaged .*set it aside as .*damaged-"):
        cache = FeatureCache(tmp_path)
    assert len(cache) == 0
    [aside] = cache.damaged_copies()
    assert aside.read_bytes() == b"this is not sqlite" * 100
    with pytest.raises(ValueError, match=r"expected a folder .*features.sqlite \(a file, not a "
                                         r"folder\)"):
        FeatureCache(tmp_path / "features.sqlite")


def test_damaged_database_is_set_aside_with_a_planted_shared_memory_fifo(tmp_path):
    (tmp_path / "features.sqlite").write_bytes(b"this is not sqlite" * 100)
    os.mkfifo(tmp_path / "features.sqlite-shm")  # not a file: sqlite cannot use it
    with pytest.warns(UserWarning, match="is damaged"):
        cache = FeatureCache(tmp_path)
    cache.put_many([(key(1), np.ones(3))])
    assert len(cache) == 1 and (tmp_path / "features.sqlite").is_file()
    assert cache.damaged_copies() and cache.clear() == 1 and not cache.damaged_copies()


def test_database_that_is_not_a_file_is_refused_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "features.sqlite")
    with pytest.raises(ValueError, match="a FIFO .*Fix: choose another cache folder"):
        FeatureCache(tmp_path)


def test_cli_info_and_clear(tmp_path, capsys, monkeypatch):
    assert vitl_main(["cache", "info", "--cache", str(tmp_path / "none")]) == 0
    assert "no feature cache at" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()  # info does not create a cache

    cache = FeatureCache(tmp_path / "c")
    cache.put_many([(key(i), np.ones(4)) for i in range(3)])
    cache.record_run(FeatureStats("mobilenetv2", images=3, hits=0, computed=3, repaired=0,
                                  seconds=1.0))
    assert vitl_main(["cache", "info", "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "entries:       3" in out and "mobilenetv2" in out and "hit rate 0%" in out

    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal: refuse without --yes
    assert vitl_main(["cache", "clear", "--cache", str(tmp_path / "c")]) == 2
    assert "--yes" in capsys.readouterr().err and len(cache) == 3
    assert vitl_main(["cache", "clear", "--cache", str(tmp_path / "c"), "--backbone", "vgg",
                      "--yes"]) == 0
    assert "no cached features for backbone 'vgg'" in capsys.readouterr().out
    assert vitl_main(["cache", "clear", "--cache", str(tmp_path / "c"), "--yes"]) == 0
    assert "deleted 3 cached feature vectors" in capsys.readouterr().out and len(cache) == 0


# -- several processes ---------------------------------------------------------


def _start_worker(paths, cache, tmp_path, name, delay=0.0, go_file=None):
    listing = tmp_path / f"{name}.json"
    listing.write_text(json.dumps([str(p) for p in paths]))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(listing), str(cache), "--delay", str(delay),
         ] + (["--go-file", str(go_file)] if go_file else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _count(db_path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _integrity(db_path) -> str:
    with sqlite3.connect(db_path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def test_killed_run_resumes_and_matches_an_uninterrupted_run(extractor, tmp_path):
    paths = write_images(tmp_path / "images", 60)
    cache = tmp_path / "cache"
    worker = _start_worker(paths, cache, tmp_path, "kill", delay=0.1)
    deadline = time.time() + 180
    while _count(cache / "features.sqlite") < 6:
        assert worker.poll() is None, worker.communicate()
        assert time.time() < deadline, "the worker never wrote to the cache"
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL
    done = _count(cache / "features.sqlite")
    assert 6 <= done < 60, f"kill was not mid-run: {done} of 60 cached"
    assert _integrity(cache / "features.sqlite") == "ok"

    featurizer = Featurizer(extractor, cache=cache, verbose=0)
    resumed = featurizer.featurize(paths)
    assert (featurizer.last_stats.hits, featurizer.last_stats.computed) == (done, 60 - done)
    uninterrupted = Featurizer(extractor, cache=None, verbose=0).featurize(paths)
    np.testing.assert_array_equal(resumed, uninterrupted)  # fixed backbone batches: same bits
    assert_features_close(resumed, direct_features(extractor, paths))


def test_a_locked_cache_warns_that_it_waits_then_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "WAIT_NOTE_AFTER_S", 0.2)
    cache = FeatureCache(tmp_path)  # its connection's busy timeout is the patched one
    holder = sqlite3.connect(tmp_path / "features.sqlite", isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    with pytest.warns(UserWarning, match=r"is locked by another process .*waiting up to 120 s"):
        cache.put_many([(key(1), np.ones(3))])
    release.join()
    assert len(cache) == 1


def test_a_cache_locked_for_too_long_is_an_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "WAIT_NOTE_AFTER_S", 0.1)
    monkeypatch.setattr(cache_module, "BUSY_TIMEOUT_S", 0.5)
    cache = FeatureCache(tmp_path)
    holder = sqlite3.connect(tmp_path / "features.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    start = time.monotonic()
    with pytest.warns(UserWarning), pytest.raises(sqlite3.OperationalError, match="locked"):
        cache.put_many([(key(1), np.ones(3))])
    assert time.monotonic() - start < 5
    holder.rollback()


_OPEN_AT_ONCE = """
import sys, time
from vitl.features import FeatureCache
while time.time() < float(sys.argv[2]):  # spin: sleeping would spread the starts too far apart
    pass
print(len(FeatureCache(sys.argv[1])))
"""


def test_processes_opening_a_new_cache_at_once_all_open_it(tmp_path):
    # sqlite's busy timeout does not cover a new file's switch to WAL: without a retry,
    # about half of these rounds had one process fail with "database is locked".
    for round_ in range(8):
        cache, start = tmp_path / f"cache{round_}", time.time() + 1.5  # after the imports
        workers = together.start(_OPEN_AT_ONCE, [(cache, start)] * 4)
        assert [out.strip() for out in together.outputs(workers)] == ["0"] * 4


_WRITE_AT_ONCE = """
import sys, time, warnings
import numpy as np
from vitl.features import FeatureCache, FeatureKey, FeatureSpace
warnings.simplefilter("ignore")  # the damaged file's warning
while time.time() < float(sys.argv[2]):
    pass
with FeatureCache(sys.argv[1]) as cache:
    cache.put_many([(FeatureKey(sys.argv[3] * 64, FeatureSpace("m", "f", 32, 1, "float32")),
                     np.ones(4))])
print("ok")
"""


def test_processes_opening_a_damaged_cache_at_once_set_it_aside_once(tmp_path):
    # Before: each process set "the" damaged file aside, one after the other: the later ones
    # crashed (FileNotFoundError) or moved the earlier one's new, good cache aside with its entries.
    for round_ in range(6):
        cache, start = tmp_path / f"cache{round_}", time.time() + 1.5  # after the imports
        cache.mkdir()
        (cache / "features.sqlite").write_bytes(b"not a database" * 1000)
        workers = together.start(_WRITE_AT_ONCE, [(cache, start, tag) for tag in "abcd"])
        assert [out.strip() for out in together.outputs(workers)] == ["ok"] * 4
        with FeatureCache(cache) as opened:
            assert len(opened) == 4, "entries were moved aside with a good cache"
            assert len(opened.damaged_copies()) == 1


def test_two_concurrent_writers_leave_a_sound_cache(extractor, tmp_path):
    paths = write_images(tmp_path / "images", 60)
    cache = tmp_path / "cache"
    go = tmp_path / "go"
    workers = [_start_worker(paths[:40], cache, tmp_path, "a", delay=0.05, go_file=go),
               _start_worker(paths[20:], cache, tmp_path, "b", delay=0.05, go_file=go)]
    together.release(workers, go)  # both models built: start featurizing together
    results = [json.loads(out.strip().splitlines()[-1])
               for out in together.outputs(workers, timeout=300)]
    # Both processes built the same random weights (same seed), so they share entries.
    assert results[0]["fingerprint"] == results[1]["fingerprint"] == extractor.fingerprint
    a, b = results
    assert a["start"] < b["end"] and b["start"] < a["end"], "the writers did not overlap in time"
    assert a["computed"] + a["hits"] == 40 and b["computed"] + b["hits"] == 40

    assert _integrity(cache / "features.sqlite") == "ok"
    featurizer = Featurizer(extractor, cache=cache, verbose=0)
    found = featurizer.cache.lookup([FeatureKey(sha256_file(p), featurizer.space())
                                     for p in paths])
    assert len(found.found) == 60 and found.damaged == []
    cached = featurizer.featurize(paths)
    assert featurizer.last_stats.hits == 60
    np.testing.assert_array_equal(cached, Featurizer(extractor, cache=None, verbose=0)
                                  .featurize(paths))
    assert_features_close(cached, direct_features(extractor, paths))


def test_queries_run_on_the_oldest_supported_sqlite(tmp_path, monkeypatch):
    # Python 3.10 on Ubuntu 22.04 links SQLite 3.37: no ->> (3.38) and, below 3.32, no IIF.
    newer = {"->", "->>", "iif", "unixepoch", "octet_length", "concat", "concat_ws"}
    connect = sqlite3.connect

    def old_sqlite(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_authorizer(lambda action, _a, name, *_: sqlite3.SQLITE_DENY if
                          action == sqlite3.SQLITE_FUNCTION and name.lower() in newer
                          else sqlite3.SQLITE_OK)
        return db

    monkeypatch.setattr(sqlite3, "connect", old_sqlite)
    cache = FeatureCache(tmp_path)
    cache.put_many([(key(1), np.ones(3)), (key(2), np.zeros(3))])
    cache.record_run(FeatureStats("mobilenetv2", 2, 1, 1, 0, 1.0))
    assert set(cache.lookup([key(1), key(2), key(3)]).found) == {key(1), key(2)}
    assert cache.info().last_runs["mobilenetv2"]["hit_rate"] == 0.5
    assert [len(c) for c, _ in cache.iter_vectors(SPACE)] == [2] and cache.clear() == 2
