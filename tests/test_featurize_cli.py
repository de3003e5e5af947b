"""`vitl featurize` (local engine), its option checks, and precision="auto"."""

from __future__ import annotations

import inspect
import json
import os

import pytest
import together
from feature_helpers import write_images

from vitl.backbones import precision as prec
from vitl.cli import main as vitl_main
from vitl.features import FeatureCache, featurize_folder
from vitl.features.folder import DEFAULT_PRECISION, ExtractorRecipe
from vitl.features.pipeline import Featurizer


@pytest.mark.parametrize("args, message", [
    (["--engine", "spark"], "--engine: expected 'local' or 'ray'"),
    (["--workers", "2"], "only with --engine ray"),
    (["--engine", "ray", "--workers", "0"], "--workers: expected an integer >= 1"),
    (["--engine", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker"),
    (["--engine", "ray", "--address", "localhost:6379"], "ray://HOST:PORT"),
    (["--precision", "int8"], "--precision"),
    (["--input-size", "8"], "--input-size: expected an integer from 32 to 1024"),
    (["--cache", "none"], "--cache"),
    (["--no-cache"], "cache: expected a feature cache to fill"),
])
def test_bad_options_fail_in_one_line_before_any_work(args, message, tmp_path, capsys):
    assert vitl_main(["featurize", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Fix:" in err, err


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    assert vitl_main(["featurize", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "expected an existing folder" in err and str(tmp_path / "nope") in err
    assert vitl_main(["featurize", str(tmp_path)]) == 2  # a folder without images
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"received '{tmp_path}: no image files'" in err, err


def test_local_featurize_fills_what_the_training_featurizer_reads(tmp_path):
    paths = write_images(tmp_path / "data" / "a", 5)
    (tmp_path / "data" / "a" / "bad.jpg").write_bytes(b"x")
    os.mkfifo(tmp_path / "data" / "a" / "pipe.jpg")  # never read, but named
    stats = featurize_folder(tmp_path / "data", "mobilenetv2", weights=None, input_size=32,
                             cache=tmp_path / "c", verbose=0)
    assert (stats.images, stats.computed, stats.precision) == (6, 5, "float32")
    assert sorted(p.name for p, _ in stats.bad) == ["bad.jpg", "pipe.jpg"]
    featurizer = Featurizer(ExtractorRecipe("mobilenetv2", None, 32).build(),
                            cache=tmp_path / "c", verbose=0)
    featurizer.featurize(paths)
    assert featurizer.last_stats.computed == 0


def test_featurize_default_precision_is_what_training_uses():
    from vitl import ImageClassifier

    default = inspect.signature(ImageClassifier.__init__).parameters["precision"].default
    assert default == DEFAULT_PRECISION


def test_auto_probes_once_per_machine_and_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("VITL_HOME", str(tmp_path))
    monkeypatch.setattr(prec, "_has_gpu", lambda: False)
    calls = []

    def fake_probe(backbone):
        calls.append(backbone)
        return {"precision": "bfloat16", "images_per_second": {"float32": 10, "bfloat16": 16}}

    monkeypatch.setattr(prec, "probe", fake_probe)
    assert prec.resolve_precision("auto", "mobilenetv2") == "bfloat16"
    assert prec.resolve_precision("auto", "mobilenetv2") == "bfloat16"
    assert prec.resolve_precision("auto", "resnet101v2") == "bfloat16"
    assert calls == ["mobilenetv2", "resnet101v2"]
    stored = json.loads((tmp_path / prec.PROBE_FILE).read_text())
    assert set(stored[prec.machine_id()]) == {"mobilenetv2", "resnet101v2"}
    monkeypatch.setattr(prec, "machine_id", lambda: "another-cpu")
    assert prec.resolve_precision("auto", "mobilenetv2") == "bfloat16"
    assert len(calls) == 3  # another machine: measured again
    assert prec.resolve_precision("auto", "mobilenetv2", gpus=True) == "float16"
    assert prec.resolve_precision("float32", "mobilenetv2") == "float32"
    with pytest.raises(ValueError,
                       match="precision: expected one of 'auto', 'float32'.*received 'int8'.*Fix: "):
        prec.resolve_precision("int8", "mobilenetv2")


_PROBE_AT_ONCE = """
import os, sys, time
from vitl.backbones import precision as prec
backbone, go = sys.argv[1], sys.argv[2]
prec._has_gpu = lambda: False
def fake_probe(backbone):
    print("probed")
    time.sleep(0.5)  # a measurement takes seconds
    return {"precision": "float32"}
prec.probe = fake_probe
print("ready", flush=True)
while not os.path.exists(go):
    pass
print(prec.resolve_precision("auto", backbone))
"""


def test_auto_probes_once_when_runs_start_together(tmp_path):
    # Runs starting together with precision='auto': each one measured (slowing the others'
    # measurements on a shared CPU), and the last write dropped the other backbones' results.
    go = tmp_path / "go"
    backbones = ["mobilenetv2", "mobilenetv2", "resnet101v2", "resnet101v2"]
    workers = together.start(_PROBE_AT_ONCE, [(backbone, go) for backbone in backbones],
                             VITL_HOME=str(tmp_path))
    together.release(workers, go)  # all imported: start together
    outputs = [out.split() for out in together.outputs(workers)]
    assert [out[-1] for out in outputs] == ["float32"] * 4
    assert sum(out.count("probed") for out in outputs) == 2, "one probe per backbone"
    stored = json.loads((tmp_path / prec.PROBE_FILE).read_text())
    assert set(stored[prec.machine_id()]) == {"mobilenetv2", "resnet101v2"}


def test_auto_resolves_before_keys_are_made(tmp_path, monkeypatch):
    monkeypatch.setenv("VITL_HOME", str(tmp_path))
    monkeypatch.setattr(prec, "_has_gpu", lambda: False)
    monkeypatch.setattr(prec, "probe", lambda backbone: {"precision": "bfloat16"})
    write_images(tmp_path / "data", 3)
    stats = featurize_folder(tmp_path / "data", "mobilenetv2", weights=None, input_size=32,
                             precision="auto", cache=tmp_path / "c", verbose=0)
    assert stats.precision == "bfloat16"
    with FeatureCache(tmp_path / "c") as cache:
        assert [s.precision for s in cache.spaces()] == ["bfloat16"]


def test_probe_without_bfloat16_instructions_picks_float32_without_measuring(monkeypatch):
    monkeypatch.setattr(prec, "cpu_description", lambda: ("Some Xeon", {"avx2", "avx512f"}))
    monkeypatch.setattr(prec.platform, "machine", lambda: "x86_64")
    result = prec.probe("resnet101v2")
    assert result["precision"] == "float32" and "no bfloat16" in result["reason"]


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "workers: expected an integer >= 1, received 0"),
    ({"workers": False}, "workers: expected an integer >= 1, received False"),
    ({"cpus_per_worker": 0}, "cpus_per_worker: expected an integer >= 1"),
    ({"gpus_per_worker": -1}, "gpus_per_worker: expected a number"),
    ({"shard_size": 0}, "shard_size: expected an integer >= 1"),
])
def test_featurize_folder_refuses_bad_ray_options_before_any_work(kwargs, message, tmp_path):
    write_images(tmp_path / "data" / "a", 1)
    with pytest.raises(ValueError, match=message) as info:
        featurize_folder(tmp_path / "data", "mobilenetv2", weights=None, input_size=32,
                         cache=tmp_path / "c", verbose=0, **kwargs)
    assert "Fix:" in str(info.value) and not (tmp_path / "c").exists()


@pytest.mark.parametrize("entry", [5, {"mobilenetv2": "bfloat16"}, {"mobilenetv2": [1]}])
def test_auto_with_a_damaged_probe_file_measures_again(entry, tmp_path, monkeypatch):
    monkeypatch.setenv("VITL_HOME", str(tmp_path))
    monkeypatch.setattr(prec, "_has_gpu", lambda: False)
    monkeypatch.setattr(prec, "probe", lambda backbone: {"precision": "float32"})
    (tmp_path / prec.PROBE_FILE).write_text(json.dumps({prec.machine_id(): entry}))
    assert prec.resolve_precision("auto", "mobilenetv2") == "float32"
    stored = json.loads((tmp_path / prec.PROBE_FILE).read_text())
    assert stored[prec.machine_id()]["mobilenetv2"] == {"precision": "float32"}


def test_ray_engine_reads_duplicates_from_their_first_path(tmp_path, monkeypatch):
    from vitl.features import ray_engine

    [first] = write_images(tmp_path / "data" / "a", 1)
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / first.name).write_bytes(first.read_bytes())  # same bytes
    planned = []
    monkeypatch.setattr(ray_engine, "run", lambda tasks, *args, **kwargs: planned.extend(tasks)
                        or iter(()))
    featurize_folder(tmp_path / "data", "mobilenetv2", weights=None, input_size=32,
                     cache=tmp_path / "c", engine="ray", verbose=0)
    [(_, path)] = [item for task in planned for item in task["items"]]
    assert path == str(first.absolute())


def test_a_full_disk_under_the_cache_is_one_line_that_says_so():
    """sqlite's "database or disk is full" says expected / received / fix, and the fix frees space."""
    import sqlite3

    from vitl.cli import error_line

    line = error_line(sqlite3.OperationalError("database or disk is full"))
    assert line.startswith("feature cache: expected ") and "received 'OperationalError: " in line
    assert "free disk space" in line and "\n" not in line


def test_a_cache_another_process_holds_is_one_line_that_says_so():
    """sqlite's "database is locked" (after the busy timeout) names the other process, not the disk."""
    import sqlite3

    from vitl.cli import error_line

    line = error_line(sqlite3.OperationalError("database is locked"))
    assert line.startswith("feature cache: expected a cache no other process holds for over 120 s")
    assert "wait for the other vitl run" in line and "disk" not in line
