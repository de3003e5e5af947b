"""Offline bundles: made on a 'connected' machine, verified and imported on an offline one."""

import json
import os
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from vitl._hashing import sha256_file
from vitl.backbones import build_feature_extractor, resolve_weights, weights_file_name
from vitl.backbones import weights as weights_module
from vitl.backbones.bundle import import_bundle, make_bundle, read_manifest
from vitl.datasets import SDNET2018_SHA256 as SDNET_ZIP_SHA256
from vitl.datasets import SDNET2018_ZIP_NAMES as SDNET_ZIP_NAMES
from vitl.datasets import data_mirror_dir

MOBILENET = weights_file_name("mobilenetv2")
SHARED_DATA = Path("/work/shared/data")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Switch between a 'connected' and an 'offline' machine: separate VITL_HOME and KERAS_HOME."""

    def use(name):
        monkeypatch.setenv("VITL_HOME", str(tmp_path / name / "vitl"))
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / name / "keras"))
        return tmp_path / name

    def offline_download(spec):
        raise OSError("no network in tests")

    monkeypatch.setattr(weights_module, "_download", offline_download)
    monkeypatch.delenv("VITL_DATA_MIRROR", raising=False)
    return use


@pytest.fixture(scope="module")
def reference_model():
    return keras.applications.MobileNetV2(include_top=False, weights=None,
                                          input_shape=(224, 224, 3))


@pytest.fixture
def bundle(machine, reference_model, tmp_path):
    """A bundle holding real-architecture MobileNetV2 weights found in the Keras cache."""
    home = machine("connected")
    cached = home / "keras" / "models" / MOBILENET
    cached.parent.mkdir(parents=True)
    # Keras' own file names end in .h5 (not .weights.h5): the legacy h5 format loads them.
    reference_model.save(cached)
    return make_bundle(tmp_path / "out" / "bundle.zip", ["mobilenetv2"]), sha256_file(cached)


def test_bundle_layout_and_manifest(bundle):
    path, sha = bundle
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(["manifest.json", f"weights/{MOBILENET}"])
    manifest = read_manifest(path)
    assert manifest["vitl_version"]
    [entry] = manifest["files"]
    assert entry["path"] == f"weights/{MOBILENET}"
    assert entry["sha256"] == sha and entry["backbone"] == "mobilenetv2"
    assert entry["size"] == zipfile.ZipFile(path).getinfo(entry["path"]).file_size


def test_import_then_resolve_offline(bundle, machine, reference_model):
    path, sha = bundle
    home = machine("offline")
    installed = import_bundle(path)
    assert installed == [home / "vitl" / "weights" / MOBILENET]
    source = resolve_weights("mobilenetv2")
    assert (source.kind, source.path, source.sha256) == ("vitl-home", str(installed[0]), sha)
    fx = build_feature_extractor("mobilenetv2", input_size=64)
    np.testing.assert_array_equal(
        fx.model.get_layer("backbone").get_layer("block_5_project").kernel.numpy(),
        reference_model.get_layer("block_5_project").kernel.numpy())
    assert fx.fingerprint == sha[:16]
    assert not list((home / "vitl" / "weights").glob(".tmp-*"))


def test_unpacked_bundle_works_as_vitl_home(bundle, machine, tmp_path, monkeypatch):
    path, sha = bundle
    machine("offline")
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(path).extractall(unpacked)
    monkeypatch.setenv("VITL_HOME", str(unpacked))
    source = resolve_weights("mobilenetv2")
    assert (source.kind, source.sha256) == ("vitl-home", sha)
    monkeypatch.setenv("VITL_HOME", str(tmp_path / "other-home"))
    assert import_bundle(unpacked)[0].parent == tmp_path / "other-home" / "weights"


def test_tampered_bundle_is_refused_and_installs_nothing(bundle, machine, tmp_path):
    path, _ = bundle
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            content = bytearray(src.read(name))
            if name.startswith("weights/"):
                content[len(content) // 2] ^= 0xFF
            dst.writestr(name, bytes(content))
    home = machine("offline")
    with pytest.raises(ValueError, match="sha256 .* Fix: the bundle is corrupted"):
        import_bundle(tampered)
    weights = home / "vitl" / "weights"
    assert not weights.exists() or not any(weights.iterdir())


def test_manifest_paths_cannot_escape(tmp_path, machine):
    machine("offline")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "vitl-bundle/1", "files": [
            {"path": "weights/../../escape.h5", "sha256": "0" * 64, "size": 1}]}))
    with pytest.raises(ValueError, match="bundle .*evil.zip: expected .*weights/<file> or "
                                         "data-mirror/<file>.*escape.h5"):
        import_bundle(evil)
    not_a_bundle = tmp_path / "plain.zip"
    zipfile.ZipFile(not_a_bundle, "w").writestr("x.txt", "x")
    with pytest.raises(ValueError, match="vitl weights bundle"):
        import_bundle(not_a_bundle)


def test_offline_backbone_travels_as_its_pinned_pth(machine, tmp_path):
    from vitl.backbones.offline.mobilenetv2_tv import PTH_NAME, PTH_SHA256

    machine("connected")
    path = make_bundle(tmp_path / "tv.zip", ["mobilenetv2-tv"])
    assert [entry["sha256"] for entry in read_manifest(path)["files"]] == [PTH_SHA256]
    home = machine("offline")
    [installed] = import_bundle(path)
    assert installed == home / "vitl" / "weights" / PTH_NAME
    again = resolve_weights("mobilenetv2-tv")  # the bundle's copy comes before the package's
    assert (again.kind, again.path, again.sha256) == ("vitl-home", str(installed), PTH_SHA256)


@pytest.mark.skipif(not (SHARED_DATA / SDNET_ZIP_NAMES[0]).is_file(),
                    reason="the SDNET2018 sample zip is not on this machine")
def test_with_data_carries_the_dataset_zip(bundle, machine, monkeypatch, tmp_path):
    monkeypatch.setenv("VITL_DATA_MIRROR", str(SHARED_DATA))  # still the connected machine
    path = make_bundle(tmp_path / "data.zip", ["mobilenetv2"], with_data=True)
    assert f"data-mirror/{SDNET_ZIP_NAMES[0]}" in [f["path"] for f in read_manifest(path)["files"]]
    monkeypatch.delenv("VITL_DATA_MIRROR")
    machine("offline")
    installed = import_bundle(path)
    data_zip = data_mirror_dir() / SDNET_ZIP_NAMES[0]
    assert data_zip in installed and sha256_file(data_zip) == SDNET_ZIP_SHA256


def test_a_corrupt_data_zip_is_refused_before_the_bundle_is_written(machine, monkeypatch,
                                                                    tmp_path):
    machine("connected")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / SDNET_ZIP_NAMES[0]).write_bytes(b"PK not the published zip")
    monkeypatch.setenv("VITL_DATA_MIRROR", str(mirror))
    with pytest.raises(ValueError, match=f"sha256 of .*{SDNET_ZIP_NAMES[0]}: expected "
                                         f"{SDNET_ZIP_SHA256}.*Fix: replace the zip"):
        make_bundle(tmp_path / "b.zip", ["mobilenetv2-tv"], with_data=True)
    assert not (tmp_path / "b.zip").exists()


def test_unreadable_bundle_says_why_in_full(tmp_path, machine):
    machine("offline")
    with pytest.raises(ValueError) as missing:
        read_manifest(tmp_path / "nope.zip")
    (tmp_path / "truncated.zip").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError) as truncated:
        read_manifest(tmp_path / "truncated.zip")
    assert "No such file or directory" in str(missing.value)
    assert "File is not a zip file" in str(truncated.value)


def test_a_fifo_as_bundle_is_refused_not_read(tmp_path, machine):
    machine("offline")
    fifo = tmp_path / "planted.zip"
    os.mkfifo(fifo)
    outcome = []

    def call():
        try:
            import_bundle(fifo)
        except ValueError as err:
            outcome.append(str(err))

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # blocked reading the FIFO: open its other end to let it go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
    assert len(outcome) == 1 and f"bundle {fifo}: expected a zip or folder" in outcome[0]
    assert "not a regular file" in outcome[0] or "Invalid argument" in outcome[0], outcome[0]
