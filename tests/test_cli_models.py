"""``vitl train / evaluate / predict / export``: files written, stable outputs, clean errors.

Runs the CLI in-process (``vitl.cli.main``) and, for the stdout contract and the
error format, in a fresh process (``python -m vitl``). Uses the offline
``mobilenetv2-tv`` weights at 64 px on a tiny synthetic crack set.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from vitl.cli import main
from vitl.datasets import make_synthetic_cracks

pytestmark = pytest.mark.slow
CLASSES = ["cracked", "uncracked"]
# TensorFlow's C++ start-up lines (absl / oneDNN) that no Python setting silences.
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d|To enable the "
                      r"following instructions|INFO: Created TensorFlow Lite)")


def message_lines(stderr: str) -> list[str]:
    """stderr lines without TensorFlow's start-up noise and tqdm progress bars."""
    return [line for line in stderr.splitlines() if line.strip() and not TF_NOISE.match(line)
            and not re.search(r"(it|img)/s\]$", line.strip())]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_synthetic_cracks(root / "data", 10, size=64, verbose=0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(data), "--backbone", "mobilenetv2-tv", "--input-size", "64",
                     "--epochs", "12", "--verbose", "2", "--cache", str(root / "cache"),
                     "--out", str(root / "model")])
    assert code == 0
    return root, data, root / "model", out.getvalue()


def run_vitl(*args):
    """``python -m vitl ARGS`` in a fresh process: (exit code, stdout, stderr without TF noise)."""
    done = subprocess.run([sys.executable, "-m", "vitl", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, message_lines(done.stderr)


def test_train_writes_model_labels_and_metrics(work):
    _, data, model, printed = work
    assert sorted(p.name for p in model.iterdir()) == ["labels.txt", "metrics.json", "model.keras"]
    assert (model / "labels.txt").read_text().splitlines() == CLASSES
    metrics = json.loads((model / "metrics.json").read_text())
    for key in ("validation", "test", "backbone", "weights", "data_source", "split",
                "epochs_run", "best_epoch", "vitl_version", "seconds"):
        assert key in metrics, key
    assert metrics["backbone"] == "mobilenetv2-tv" and metrics["input_size"] == 64
    assert metrics["weights"]["kind"] == "offline-package"
    assert metrics["data_source"] == str(data)
    split = metrics["split"]  # no split option: all trains but a 10% validation hold-out
    assert split["kind"] == "all for training, validation 0.1 held out"
    assert split["counts"] == {"train": {"cracked": 9, "uncracked": 9},
                               "validation": {"cracked": 1, "uncracked": 1},
                               "test": {"cracked": 0, "uncracked": 0}}
    assert metrics["test"] is None and metrics["validation"]["n"] == 2
    assert metrics["preset"] == "default" and metrics["head"]["optimizer"] == "adam"
    assert "note: the validation part has 2 images, so one image moves its accuracy by 50.0" \
        in printed
    # The data summary's warnings that need no file read, about the part that trains:
    assert "warning: class 'cracked' has only 9 images; aim for 50+ per class" in printed
    assert 1 <= metrics["epochs_run"] <= 12 and 0 <= metrics["best_epoch"] < metrics["epochs_run"]
    assert set(metrics["seconds"]) == {"fit", "bottleneck", "training"}
    # --verbose 2: the ML.NET-style log, one line per epoch, then the summary line.
    epochs = [int(m) for m in re.findall(r"Dataset used:      Train.*Epoch:\s+(\d+)", printed)]
    assert epochs == list(range(metrics["epochs_run"]))
    assert "Dataset used: Validation" in printed and "TrainingHistory:" in printed
    # accuracy alone hides a class never found (e.g. 9 intact + 1 missed crack = 0.9): the
    # last line also gives the macro accuracy, the mean of the per-class recalls
    validation = metrics["validation"]
    assert (f"validation accuracy {validation['accuracy']:.4f} (macro accuracy "
            f"{validation['macro_accuracy']:.4f})") in printed


def test_evaluate_json_is_one_object_on_stdout(work, capsys):
    _, data, model, _ = work
    assert main(["evaluate", str(model), str(data), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)  # fails on any extra text
    assert out.count("\n") == 1
    for key in ("accuracy", "macro_accuracy", "log_loss", "confusion_matrix", "labels",
                "per_class"):
        assert key in report, key
    assert report["labels"] == CLASSES and report["n"] == 20
    assert sum(map(sum, report["confusion_matrix"])) == 20
    assert 0 <= report["accuracy"] <= 1


def test_evaluate_prints_a_readable_report(work, capsys):
    _, data, model, _ = work
    assert main(["evaluate", str(model), str(data)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "Confusion matrix" in out and "threshold for 95% recall" in out


def test_predict_prints_one_csv_row_per_image(work, capsys, tmp_path):
    _, data, model, _ = work
    single = data / "cracked" / "cracked_0000.png"
    assert main(["predict", str(model), str(single), str(data / "uncracked"),
                 "--csv", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "label", "score"]
    assert len(rows) == 1 + 1 + 10
    assert rows[1][0] == str(single)
    assert all(r[1] in CLASSES and 0.5 <= float(r[2]) <= 1 for r in rows[1:])
    with open(tmp_path / "p.csv", encoding="utf-8") as handle:
        full = list(csv.DictReader(handle))
    assert len(full) == 11 and set(full[0]) == {"path", "label", "score", "score_cracked",
                                                "score_uncracked"}
    assert abs(float(full[0]["score_cracked"]) + float(full[0]["score_uncracked"]) - 1) < 1e-5


def test_evaluate_json_in_a_fresh_process_keeps_stdout_clean(work):
    _, data, model, _ = work
    code, out, err = run_vitl("evaluate", model, data, "--json", "--no-cache")
    assert code == 0 and json.loads(out)["labels"] == CLASSES
    assert any(line.startswith("featurized 20 images") for line in err)  # progress: stderr


def test_export_both_formats(work, capsys):
    _, _, model, _ = work
    assert main(["export", str(model), "--format", "savedmodel"]) == 0
    assert main(["export", str(model), "--format", "tflite", "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    export = model / "export"
    assert (export / "savedmodel" / "saved_model.pb").is_file()
    assert (export / "model_int8.tflite").stat().st_size > 100_000
    assert (export / "labels.txt").read_text().splitlines() == CLASSES
    assert set(json.loads((export / "export.json").read_text())["artifacts"]) == {
        "savedmodel", "model_int8.tflite"}
    assert f"exported savedmodel: {export / 'savedmodel'}" in out
    assert f"exported tflite (int8): {export / 'model_int8.tflite'}" in out


def test_int8_export_without_representative_images_asks_for_them(work, tmp_path, capsys):
    root, data, model, _ = work
    copy = tmp_path / "model"
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("export"))
    shutil.move(str(data), str(root / "data-moved"))  # the training images recorded are gone
    try:
        assert main(["export", str(copy), "--format", "tflite", "--quantize", "int8"]) == 2
        assert "--representative DIR" in capsys.readouterr().err
    finally:
        shutil.move(str(root / "data-moved"), str(data))


def _other_version(model, tmp_path):
    folder = tmp_path / "old-model"
    folder.mkdir()
    with zipfile.ZipFile(model / "model.keras") as src, \
            zipfile.ZipFile(folder / "model.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "vitl.json":
                meta = json.loads(data)
                meta["format"] = 99
                data = json.dumps(meta)
            dst.writestr(item, data)
    return folder


ERRORS = {
    "missing data folder": lambda r, d, m, t: ["train", t / "nope", "--out", t / "m",
                                               "--backbone", "mobilenetv2-tv"],
    "unknown backbone": lambda r, d, m, t: ["train", d, "--out", t / "m", "--backbone", "vgg99"],
    "model from another version": lambda r, d, m, t: ["evaluate", _other_version(m, t), d],
    "folder without model.keras": lambda r, d, m, t: ["predict", d, d / "cracked"],
    "missing model folder": lambda r, d, m, t: ["evaluate", t / "nope", d],
    "missing image": lambda r, d, m, t: ["predict", m, t / "nope.png"],
    "unknown export format": lambda r, d, m, t: ["export", m, "--format", "onnx"],
    "quantized savedmodel": lambda r, d, m, t: ["export", m, "--format", "savedmodel",
                                                "--quantize", "int8"],
    "unknown split": lambda r, d, m, t: ["train", d, "--out", t / "m", "--split", "random",
                                         "--backbone", "mobilenetv2-tv"],
    "zero epochs": lambda r, d, m, t: ["train", d, "--out", t / "m", "--epochs", "0"],
    "unknown optimizer": lambda r, d, m, t: ["train", d, "--out", t / "m", "--optimizer", "rms"],
    "verbose out of range": lambda r, d, m, t: ["train", d, "--out", t / "m", "--verbose", "3"],
    "cache none": lambda r, d, m, t: ["predict", m, d / "cracked", "--cache", "none"],
    "unknown option": lambda r, d, m, t: ["evaluate", m, d, "--log-every", "4"],
    "bad dropout": lambda r, d, m, t: ["train", d, "--out", t / "m", "--dropout", "2"],
    "classes the model does not know": lambda r, d, m, t: ["evaluate", m, _renamed(d, t)],
}


def _renamed(data, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(data / "cracked", folder / "broken")
    return folder


@pytest.mark.parametrize("case", list(ERRORS))
def test_unusable_input_is_one_line_and_exit_2(work, tmp_path, capsys, case):
    root, data, model, _ = work
    args = [str(a) for a in ERRORS[case](root, data, model, tmp_path)]
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = message_lines(captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"vitl {args[0]}: error: ") and "Fix:" in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_errors_in_a_fresh_process_have_no_traceback(work, tmp_path):
    _, data, model, _ = work
    code, out, err = run_vitl("evaluate", _other_version(model, tmp_path), data, "--json")
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("vitl evaluate: error: model format: expected "
                                               "version 1, received 'version 99")


def test_demo_runs_end_to_end_and_says_what_it_used(work, tmp_path, capsys, monkeypatch):
    root, data, _, _ = work
    monkeypatch.setattr("vitl.cli.demo.tutorial_data",
                        lambda: (data, f"synthetic cracks (test stand-in) in {data}"))
    out = tmp_path / "demo-model"
    assert main(["demo", "--backbone", "mobilenetv2-tv", "--input-size", "64", "--epochs", "5",
                 "--cache", str(root / "cache"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"data: synthetic cracks (test stand-in) in {data}")
    assert "backbone: mobilenetv2-tv (chosen with --backbone)" in printed
    assert "\nsplit (ML.NET tutorial: 70% train, the rest 90/10 into validation/test):\n" in printed
    assert "Phase: Training, Dataset used:      Train" in printed
    assert "== validation (" in printed and "== test (" in printed
    assert "threshold for 95% recall of 'cracked', chosen on validation: score >= " in printed
    assert re.search(r"  on test: recall [\d.]+, precision [\d.]+, tp=\d+ fp=\d+", printed)
    assert "nan" not in printed and "ThresholdChoice(" not in printed
    assert f"saved the model to {out}" in printed
    assert len(re.findall(r"predicted (cracked|uncracked) \(0\.\d{3}\), true", printed)) == 2
    assert "with backbone mobilenetv2-tv on synthetic data" in printed
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "metrics.json", "model.keras"]
    assert json.loads((out / "metrics.json").read_text())["threshold"]["target_recall"] == 0.95


def test_auto_backbone_falls_back_offline_and_says_why(monkeypatch):
    from vitl.backbones import WeightsUnavailableError
    from vitl.cli import common

    def unavailable(spec, *args, **kwargs):
        raise WeightsUnavailableError("no weights here")

    monkeypatch.delenv("VITL_BACKBONE", raising=False)
    monkeypatch.setattr("vitl.backbones.weights.resolve_weights", unavailable)
    name, reason = common.choose_backbone("auto")
    assert name == "mobilenetv2-tv"
    assert "resnet101v2's ImageNet weights are not available" in reason


def test_train_augment_and_fine_tune_are_recorded(work):
    root, data, _, _ = work
    out = root / "model-improved"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", str(data), "--backbone", "mobilenetv2-tv", "--input-size", "64",
                     "--epochs", "3", "--augment", "2", "--fine-tune-blocks", "1",
                     "--split", "60/20/20", "--preset", "mlnet",
                     "--fine-tune-epochs", "1", "--cache", str(root / "cache"), "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["augment"]["views"] == 2 and metrics["augment"]["transform_id"]
    assert metrics["fine_tune"]["blocks"] == 1
    assert metrics["fine_tune"]["unfrozen_layers"] > 0 and "kept" in metrics["fine_tune"]
    assert metrics["split"]["kind"] == "60/20/20" and metrics["test"]["n"] == 4
    assert metrics["split"]["counts"]["validation"] == {"cracked": 2, "uncracked": 2}
    assert metrics["preset"] == "mlnet" and metrics["head"]["batch_size"] == 10
    assert metrics["head"]["optimizer"] == "sgd" and metrics["epochs_requested"] == 3


def test_negative_augment_is_refused(work, capsys):
    _, data, _, _ = work
    assert main(["train", str(data), "--augment", "-1", "--out", "x"]) == 2
    assert "--augment: expected an integer from 0 to 100" in capsys.readouterr().err


def test_evaluate_on_the_training_folder_warns_that_scores_are_optimistic(work, capsys, tmp_path):
    _, data, model, _ = work
    assert main(["evaluate", str(model), str(data), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one JSON object
    assert ("warning: DATA_DIR is the folder this model was trained on (18 of its 20 images "
            "trained it)") in captured.err
    copy = tmp_path / "elsewhere"  # only the training folder itself is recognised
    shutil.copytree(data, copy)
    assert main(["evaluate", str(model), str(copy)]) == 0
    assert "trained on" not in capsys.readouterr().err


def test_positive_class_with_three_classes_is_refused_before_any_work(work, tmp_path, capsys):
    root, data, _, _ = work
    three = tmp_path / "three"
    shutil.copytree(data, three)
    shutil.copytree(data / "cracked", three / "spalled")
    assert main(["train", str(three), "--backbone", "mobilenetv2-tv", "--input-size", "64",
                 "--epochs", "2", "--verbose", "0", "--cache", str(root / "cache"),
                 "--out", str(tmp_path / "model3")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "model3"), str(three), "--positive-class",
                 "cracked"]) == 2
    err = capsys.readouterr().err
    assert message_lines(err) == [(
        "vitl evaluate: error: --positive-class: expected a model with two classes (defect / no "
        "defect), not 3 (cracked, spalled, uncracked), received 'cracked'. "
        "Fix: leave --positive-class out; with more classes read the per-class recall and the "
        "confusion matrix")]
    assert "featurized" not in err and "Checking images" not in err


def test_evaluate_a_folder_of_one_class(work, tmp_path, capsys):
    # an inspector's question: of these cracked photos, how many does the model find?
    _, data, model, _ = work
    shutil.copytree(data / "cracked", tmp_path / "new" / "cracked")
    assert main(["evaluate", str(model), str(tmp_path / "new"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10 and report["labels"] == CLASSES
    assert report["per_class"]["cracked"]["support"] == 10
    assert report["threshold_for_95_recall"]["positive_class"] == "cracked"
