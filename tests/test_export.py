"""Exports (SavedModel, TFLite float32 / float16 / int8) and save/load, each read back in a
fresh process and compared with the Keras model on the same images.

Tolerances (max abs difference of probabilities) are ``vitl.export.TOLERANCES``:
savedmodel 1e-5, tflite 1e-4, tflite-float16 2e-2, tflite-int8 0.15, a few times
the measured differences (see the report printed with ``pytest -s``). int8 must
also predict the Keras model's class on at least 80% of the images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import together

from vitl.classifier import ImageClassifier
from vitl.data import list_images, read_image
from vitl.datasets import make_synthetic_cracks
from vitl.export import TOLERANCES, export_model, model_fingerprint, read_labels
from vitl.training import HeadConfig

WORKER = Path(__file__).with_name("export_worker.py")
SIZE = 64
ARTIFACTS = {"savedmodel": ("savedmodel", None), "model.tflite": ("tflite", None),
             "model_float16.tflite": ("tflite", "float16"),
             "model_int8.tflite": ("tflite", "int8")}
TOLERANCE_KEY = {"savedmodel": "savedmodel", "model.tflite": "tflite",
                 "model_float16.tflite": "tflite-float16", "model_int8.tflite": "tflite-int8"}

pytestmark = pytest.mark.slow


def run_worker(*args):
    done = subprocess.run([sys.executable, str(WORKER), *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small classifier with real ImageNet weights (mobilenetv2-tv, offline) at 64 px."""
    root = tmp_path_factory.mktemp("export")
    train = make_synthetic_cracks(root / "train", 10, size=SIZE, verbose=0)
    unseen = make_synthetic_cracks(root / "unseen", 10, size=SIZE, seed=7, verbose=0)
    clf = ImageClassifier("mobilenetv2-tv", input_size=SIZE,
                          head=HeadConfig(epochs=60), cache=None,
                          verbose=0).fit(train)
    paths = list_images(train) + list_images(unseen)
    images = np.stack([read_image(p, SIZE) for p in paths]).astype(np.float32)
    return clf, root, paths, images


@pytest.fixture(scope="module")
def exported(trained):
    """Every export format, read back in one fresh process: {artifact name: probabilities}."""
    clf, root, _, images = trained
    out = root / "out"
    written = {name: clf.export(out, format=fmt, quantize=q)
               for name, (fmt, q) in ARTIFACTS.items()}
    np.save(root / "images.npy", images)
    run_worker(root / "images.npy", root / "proba.npz", *written.values())
    with np.load(root / "proba.npz") as proba:
        return out, written, {name: proba[name] for name in ARTIFACTS}


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_export_predicts_like_keras_in_fresh_process(trained, exported, name):
    clf, _, _, images = trained
    _, written, proba = exported
    expected = clf.model_.predict(images, verbose=0)
    got = proba[name]
    diff = float(np.abs(got - expected).max())
    agree = float((got.argmax(1) == expected.argmax(1)).mean())
    size = (written[name].stat().st_size if written[name].is_file()
            else sum(p.stat().st_size for p in written[name].rglob("*") if p.is_file()))
    print(f"\n{name}: {size} bytes, max abs diff {diff:.2e}, argmax agreement {agree:.3f}")
    assert got.shape == expected.shape == (len(images), 2)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-2)
    assert diff <= TOLERANCES[TOLERANCE_KEY[name]]
    assert agree >= (0.8 if name == "model_int8.tflite" else 1.0)
    # The classifier learned something, so the comparison is not between constants.
    assert expected[:, 0].std() > 0.01


def test_export_folder_describes_its_artifacts(trained, exported):
    clf, _, _, _ = trained
    out, written, _ = exported
    assert read_labels(out) == list(clf.classes_) == ["cracked", "uncracked"]
    meta = json.loads((out / "export.json").read_text())
    assert meta["labels"] == ["cracked", "uncracked"]
    assert meta["input"]["shape"] == [None, SIZE, SIZE, 3] and meta["input"]["range"] == [0, 255]
    assert meta["signature"] == "serving_default" and meta["output"]["name"] == "probabilities"
    assert set(meta["artifacts"]) == set(ARTIFACTS)
    for name, info in meta["artifacts"].items():
        assert info["bytes"] > 0 and info["model_fingerprint"] == model_fingerprint(clf.model_)
        assert info["quantization"] == ARTIFACTS[name][1]
    assert meta["artifacts"]["model_int8.tflite"]["calibration_images"] == 18  # 90% of 20
    sizes = [written[n].stat().st_size for n in
             ("model.tflite", "model_float16.tflite", "model_int8.tflite")]
    assert sizes[0] > 1.8 * sizes[1] and sizes[1] > 1.4 * sizes[2]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_save_then_load_in_fresh_process_predicts_identically(trained, tmp_path):
    clf, _, paths, images = trained
    model_file = clf.save(tmp_path / "model.keras")
    (tmp_path / "paths.txt").write_text("\n".join(map(str, paths)), encoding="utf-8")
    run_worker("--vitl-load", model_file, tmp_path / "paths.txt", tmp_path / "proba.npy")
    again = np.load(tmp_path / "proba.npy")
    expected = clf.predict_proba(paths)
    print(f"\nsave/load: max abs diff {np.abs(again - expected).max():.2e}")
    np.testing.assert_allclose(again, expected, rtol=0, atol=1e-6)
    # Plain Keras reads the same file (the vitl metadata is an extra zip member).
    np.save(tmp_path / "images.npy", images)
    run_worker(tmp_path / "images.npy", tmp_path / "keras.npz", model_file)
    with np.load(tmp_path / "keras.npz") as plain:
        np.testing.assert_allclose(plain["model.keras"], clf.model_.predict(images, verbose=0),
                                   rtol=0, atol=1e-6)


# ---------------------------------------------------------------- arguments
@pytest.fixture(scope="module")
def tiny():
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "onnx"}, "format: expected one of 'savedmodel', 'tflite', received 'onnx'"),
    ({"quantize": "int8"}, "quantize: expected None for format='savedmodel'"),
    ({"format": "tflite", "quantize": "int4"}, "quantize: expected one of None, 'float16'"),
    ({"format": "tflite", "quantize": "int8"},
     "representative: expected image files to calibrate int8 quantization with (a few hundred "
     + "training images), received 'no images'"),
    ({"format": "tflite", "quantize": "int8", "representative": ["/nope/a.png"]},
     "received 'none readable, e.g. /nope/a.png: file not found"),
    ({"class_names": ["a"]}, "class_names: expected 2 distinct, non-empty names"),
    ({"class_names": ["a", "a"]}, "class_names: expected 2 distinct"),
])
def test_bad_arguments_say_expected_received_fix(tiny, tmp_path, kwargs, message):
    kwargs = {"class_names": ["a", "b"], **kwargs}
    with pytest.raises(ValueError, match="Fix: ") as err, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(tiny, directory=tmp_path / "out", **kwargs)
    assert message in str(err.value)
    # A calibration image that cannot be read is named in a warning (skipped, not trusted).
    assert [str(w.message) for w in caught if "calibration" in str(w.message)] == (
        ["int8 calibration: skipped /nope/a.png: file not found (or a broken symlink)"]
        if kwargs.get("representative") else [])
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_model_must_take_square_rgb_images(tmp_path):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ValueError, match=r"model: expected a Keras model taking \(None, size"):
        export_model(model, ["a", "b"], tmp_path)


def test_exporting_another_model_replaces_the_stale_artifacts(tiny, tmp_path):
    export_model(tiny, ["a", "b"], tmp_path, format="savedmodel")
    export_model(tiny, ["a", "b"], tmp_path, format="savedmodel")  # same model: kept, replaced
    assert json.loads((tmp_path / "export.json").read_text())["artifacts"].keys() == {"savedmodel"}
    other = keras.models.clone_model(tiny)
    other.get_layer("out").set_weights([np.ones((4, 2)), np.zeros(2)])
    with pytest.warns(UserWarning, match="holds another model's export"):
        export_model(other, ["c", "d"], tmp_path, format="savedmodel")
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["labels"] == ["c", "d"] and read_labels(tmp_path) == ["c", "d"]
    assert meta["artifacts"]["savedmodel"]["model_fingerprint"] == model_fingerprint(other)


def test_tflite_reuses_the_folders_savedmodel_and_converts(tiny, tmp_path):
    import tensorflow as tf

    export_model(tiny, ["a", "b"], tmp_path, format="savedmodel")
    path = export_model(tiny, ["a", "b"], tmp_path, format="tflite")
    runner = tf.lite.Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(runner(image=x)["probabilities"], tiny.predict(x, verbose=0),
                               atol=1e-5)


def test_tflite_beside_a_savedmodel_that_is_no_folder_writes_its_own(tiny, tmp_path):
    export_model(tiny, ["a", "b"], tmp_path, format="savedmodel")
    shutil.rmtree(tmp_path / "savedmodel")
    (tmp_path / "savedmodel").write_text("replaced")  # listed in export.json, but not a SavedModel
    path = export_model(tiny, ["a", "b"], tmp_path, format="tflite")
    assert path.name == "model.tflite" and path.stat().st_size > 0


def test_export_interrupted_in_a_new_folder_can_be_rerun(tiny, tmp_path, monkeypatch):
    import vitl.export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the SavedModel is written

    with monkeypatch.context() as patch:
        patch.setattr(vitl.export, "_write_savedmodel", interrupted)
        with pytest.raises(KeyboardInterrupt):
            export_model(tiny, ["a", "b"], tmp_path / "out")
    assert not (tmp_path / "out" / "savedmodel").exists()
    path = export_model(tiny, ["a", "b"], tmp_path / "out")  # not refused as a foreign folder
    assert path.is_dir() and read_labels(tmp_path / "out") == ["a", "b"]
    assert json.loads((tmp_path / "out" / "export.json").read_text())["artifacts"].keys() == {
        "savedmodel"}


def test_a_planted_or_stale_export_json_cannot_make_vitl_replace_or_delete_files(tiny, tmp_path):
    (tmp_path / "savedmodel").mkdir()
    (tmp_path / "savedmodel" / "mine.txt").write_text("keep")
    (tmp_path / "model_int8.tflite").write_bytes(b"mine")
    listed = {"model_fingerprint": "0" * 16, "sha256": "0" * 64}
    (tmp_path / "export.json").write_text(json.dumps(
        {"labels": ["x", "y"], "artifacts": {"savedmodel": listed, "model_int8.tflite": listed}}))
    with pytest.raises(ValueError, match="holding savedmodel that vitl did not write"):
        export_model(tiny, ["a", "b"], tmp_path, format="savedmodel")
    export_model(tiny, ["a", "b"], tmp_path, format="tflite")  # another artifact: written
    assert (tmp_path / "savedmodel" / "mine.txt").read_text() == "keep"  # neither deleted
    assert (tmp_path / "model_int8.tflite").read_bytes() == b"mine"  # nor replaced
    meta = json.loads((tmp_path / "export.json").read_text())
    assert set(meta["artifacts"]) == {"model.tflite"}
    # An artifact vitl wrote and someone changed since is no longer vitl's to replace.
    (tmp_path / "model.tflite").write_bytes(b"edited")
    with pytest.raises(ValueError, match="holding model.tflite that vitl did not write"):
        export_model(tiny, ["a", "b"], tmp_path, format="tflite")


def test_a_folder_name_that_is_not_utf8_is_one_line_before_any_work(tiny, tmp_path):
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    with pytest.raises(ValueError, match=r"export folder: expected a path in UTF-8 .* Fix: "):
        export_model(tiny, ["a", "b"], folder / "export")
    assert not folder.exists()


_EXPORT_AT_ONCE = """
import os, sys
import keras
from vitl.export import export_model
out, format, go = sys.argv[1:4]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(2, activation="softmax")])
print("ready", flush=True)
while not os.path.exists(go):
    pass
export_model(model, ["a", "b"], out, format=format, verbose=0)
"""


def test_exports_into_one_folder_at_once_are_all_listed(tmp_path):
    # A savedmodel and a tflite export started together: each rewrote export.json from what it
    # read at its start, so the later one dropped the other's artifact (which the next export
    # then refused to replace, as not written by vitl).
    out, go = tmp_path / "export", tmp_path / "go"
    workers = together.start(_EXPORT_AT_ONCE, [(out, format, go)
                                               for format in ("savedmodel", "tflite")],
                             TF_CPP_MIN_LOG_LEVEL="2")
    together.release(workers, go)  # both imported and built: start together
    together.outputs(workers, timeout=300)
    listed = json.loads((out / "export.json").read_text())["artifacts"]
    assert sorted(listed) == ["model.tflite", "savedmodel"]
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "labels.txt", "model.tflite",
                                                     "savedmodel"]
