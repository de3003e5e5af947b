"""``vitl train`` splits: hold-out by default, the user's folders, --split; presets; the options
as the API's parameters; argparse errors in one line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from PIL import Image

from vitl.cli import CLIError, build_parser, main
from vitl.cli.common import split_fractions
from vitl.cli.train import (
    HEAD_OPTIONS,
    head_config,
    make_classifier,
    make_split,
    noise_lines,
)
from vitl.finetune import FineTuneConfig
from vitl.training import HeadConfig


def folder(root, counts):
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / name / f"{i:03d}.png")
    return root


def options(**given):
    values = {"split": None, "validation": None, "test": None, "validation_fraction": 0.1,
              "seed": 0, "preset": "default", "verbose": 1, **dict.fromkeys(HEAD_OPTIONS)}
    return argparse.Namespace(**{**values, **given})


def counts(parts):
    return [part.counts() for part in parts]


def run_split(data, **given):
    args = options(**given)
    return make_split(data, args)


def test_verbose_0_shows_no_progress_bar_while_checking_images(tmp_path, capsys):
    data = folder(tmp_path / "d", {"cracked": 5, "intact": 5})
    for split in (None, "tutorial"):
        run_split(data, split=split, verbose=0)
        assert "Checking images" not in capsys.readouterr().err
        run_split(data, split=split, verbose=1)
        assert "Checking images" in capsys.readouterr().err


def test_default_trains_on_everything_but_a_stratified_validation_hold_out(tmp_path):
    data = folder(tmp_path / "d", {"cracked": 50, "intact": 30})
    parts, record = run_split(data)
    assert counts(parts) == [{"cracked": 45, "intact": 27}, {"cracked": 5, "intact": 3},
                             {"cracked": 0, "intact": 0}]
    assert record["kind"] == "all for training, validation 0.1 held out"
    assert record["validation_fraction"] == 0.1
    assert record["counts"]["train"] == {"cracked": 45, "intact": 27}
    parts, record = run_split(data, validation_fraction=0.2)
    assert len(parts.validation) == 16 and len(parts.train) == 64


def test_own_validation_and_test_folders(tmp_path):
    data = folder(tmp_path / "d", {"cracked": 20, "intact": 20})
    val = folder(tmp_path / "v", {"cracked": 4, "intact": 3})
    test = folder(tmp_path / "t", {"cracked": 2, "intact": 5})
    parts, record = run_split(data, validation=str(val), test=str(test))
    assert [len(p) for p in parts] == [40, 7, 7]
    assert record["kind"] == "given folders" and record["validation_fraction"] is None
    assert record["sources"] == {"train": str(data), "validation": str(val), "test": str(test)}
    parts, _ = run_split(data, test=str(test))  # validation still held out from DATA_DIR
    assert [len(p) for p in parts] == [36, 4, 7]


@pytest.mark.parametrize("val_name", ["validation", "val"])
def test_presplit_folder_is_used_as_given(tmp_path, val_name, capsys):
    root = tmp_path / "d"
    folder(root / "train", {"cracked": 12, "intact": 10})
    folder(root / val_name, {"cracked": 3, "intact": 3})
    folder(root / "test", {"cracked": 4, "intact": 1})
    (root / "test" / "intact" / "bad.png").write_bytes(b"not an image")
    parts, record = run_split(root)
    err = capsys.readouterr().err
    test_dir = (root / "test").absolute()
    assert err.count("skipped") == 1, err
    assert f"skipped 1 unreadable files in {test_dir} (`vitl data {test_dir}` lists them)\n" in err
    assert counts(parts) == [{"cracked": 12, "intact": 10}, {"cracked": 3, "intact": 3},
                             {"cracked": 4, "intact": 1}]
    assert record["kind"] == "folders"
    with pytest.raises(CLIError, match="--split: expected no split option"):
        run_split(root, split="tutorial")


def test_presplit_without_validation_holds_it_out_of_train(tmp_path):
    root = tmp_path / "d"
    folder(root / "train", {"cracked": 20, "intact": 20})
    folder(root / "test", {"cracked": 2, "intact": 2})
    parts, record = run_split(root)
    assert [len(p) for p in parts] == [36, 4, 4]
    assert record["kind"] == "folders, validation 0.1 held out"


def test_split_option_tutorial_and_percentages(tmp_path):
    data = folder(tmp_path / "d", {"cracked": 100, "intact": 100})
    parts, record = run_split(data, split="tutorial")
    assert [len(p) for p in parts] == [140, 54, 6] and record["kind"] == "tutorial"
    parts, record = run_split(data, split="60/20/20", seed=3)
    assert counts(parts) == [{"cracked": 60, "intact": 60}, {"cracked": 20, "intact": 20},
                             {"cracked": 20, "intact": 20}]
    assert record["kind"] == "60/20/20" and record["seed"] == 3


@pytest.mark.parametrize("text", ["random", "70/30", "70/20/20", "0/50/50", "a/b/c", "default",
                                  "nan/50/50", "50/50/nan"])
def test_bad_split_values_are_one_line_errors(text, capsys):
    with pytest.raises(argparse.ArgumentTypeError, match="expected 'tutorial' or TRAIN/VAL"):
        split_fractions(text)
    for command in (["data", "d"], ["train", "d", "--out", "m"]):
        assert main([*command, "--split", text]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Fix:" in err, err
        assert f"vitl {command[0]}: error: --split: expected 'tutorial' or TRAIN/VALIDATION/" \
            "TEST" in err


def test_noise_line_for_small_parts(tmp_path):
    data = folder(tmp_path / "d", {"cracked": 40, "intact": 40})
    parts, _ = run_split(data, split="tutorial")  # 56 / 22 / 2
    lines = noise_lines(parts)
    assert lines == [
        ("note: the validation part has 22 images, so one image moves its accuracy by 4.5 "
         "points; read its accuracy as a rough guide"),
        ("note: the test part has 2 images, so one image moves its accuracy by 50.0 points; "
         "read its accuracy as a rough guide")]
    parts, _ = run_split(data, split="50/50/0")
    assert noise_lines(parts) == []


def test_presets_and_overrides():
    assert head_config(options()) == HeadConfig()
    assert head_config(options(preset="mlnet")) == HeadConfig.mlnet()
    assert head_config(options(preset="mlnet", epochs=7, batch_size=4)) == \
        HeadConfig.mlnet(epochs=7, batch_size=4)


def train_args(*extra):
    return build_parser().parse_args(["train", "d", "--out", "m", *extra])


def test_train_options_are_the_classifier_parameters():
    args = train_args("--preset", "mlnet", "--epochs", "7", "--lr-schedule", "cosine",
                      "--no-early-stopping", "--monitor", "val_loss", "--class-weight",
                      "balanced", "--dropout", "0.2", "--hidden-units", "64", "--l2", "1e-4",
                      "--augment", "3", "--fine-tune-blocks", "2", "--fine-tune-epochs", "4",
                      "--fine-tune-learning-rate", "1e-5", "--validation-fraction", "0.2",
                      "--seed", "5", "--no-cache", "--verbose", "2", "--input-size", "64",
                      "--precision", "bfloat16")
    clf = make_classifier(args, "mobilenetv2")
    assert clf.head == HeadConfig.mlnet(epochs=7, lr_schedule="cosine", early_stopping=False,
                                        monitor="val_loss", class_weight="balanced",
                                        dropout=0.2, hidden_units=64, l2=1e-4)
    assert clf.fine_tune == FineTuneConfig(blocks=2, epochs=4, learning_rate=1e-5)
    params = clf.get_params()
    assert (params["backbone"], params["augment"], params["validation_fraction"], params["seed"],
            params["cache"], params["verbose"], params["input_size"], params["precision"]) == \
        ("mobilenetv2", 3, 0.2, 5, None, 2, 64, "bfloat16")
    defaults = make_classifier(train_args(), "mobilenetv2")
    assert defaults.head == HeadConfig() and defaults.fine_tune is None
    assert (defaults.seed, defaults.verbose, defaults.cache, defaults.augment) == \
        (0, 1, "default", 0)
    assert train_args().backbone == "auto"


@pytest.mark.parametrize("argv, needle", [
    (["export", "m", "--format", "onnx"],
     "vitl export: error: --format: expected 'savedmodel' or 'tflite', received 'onnx'. Fix:"),
    (["train", "d", "--out", "m", "--verbose", "3"],
     "vitl train: error: --verbose: expected 0, 1 or 2, received 3. Fix:"),
    (["train", "d", "--out", "m", "--optimizer", "rms"], "--optimizer: expected 'sgd' or 'adam'"),
    (["featurize", "d", "--precision", "int8"], "--precision: expected 'auto', 'float32'"),
    (["predict", "m", "a.png", "--cache", "none"], "Fix: pass --no-cache"),
    (["train", "d", "--out", "m", "--epochs", "x"],
     "--epochs: expected an integer from 1 to 100000, received 'x'"),
    (["data", "d", "--split", "70/20"], "vitl data: error: --split: expected 'tutorial' or"),
    (["train", "d", "--out", "m", "--log-every", "4"], "unrecognized arguments: --log-every"),
    (["train", "d"], "the following arguments are required: --out"),
])
def test_argument_errors_are_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Fix:" in err, err


def test_data_and_train_take_the_same_split_values():
    parser = build_parser()
    for value in ("tutorial", "70/15/15", "60/20/20"):
        assert parser.parse_args(["data", "d", "--split", value]).split == value
        assert parser.parse_args(["train", "d", "--out", "m", "--split", value]).split == value
    assert parser.parse_args(["data", "d", "--no-split"]).split is None
    assert parser.parse_args(["data", "d"]).seed == parser.parse_args(["train", "d", "--out",
                                                                        "m"]).seed == 0


def test_building_the_parser_imports_no_tensorflow():
    code = ("import sys; from vitl.cli import build_parser; build_parser(); "
            "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("given", ["validation", "test", "layout"])
def test_a_part_with_other_classes_is_one_line_before_any_work(tmp_path, given):
    data = folder(tmp_path / "d", {"cracked": 10, "intact": 10})
    other = folder(tmp_path / "o", {"cracked": 3, "broken": 3})
    if given == "layout":
        root = tmp_path / "split"
        folder(root / "train", {"cracked": 10, "intact": 10})
        folder(root / "val", {"cracked": 3, "broken": 3})
        with pytest.raises(CLIError, match=r"^validation folder: expected the class folders of "
                           r".*train \(cracked, intact\), received '.*val with broken, cracked'"):
            run_split(root)
        return
    with pytest.raises(CLIError, match=rf"^--{given}: expected the class folders of .*d "
                       r"\(cracked, intact\), received '.*o with broken, cracked'. Fix: name"):
        run_split(data, **{given: str(other)})


def test_noise_line_for_a_class_missing_from_a_part(tmp_path):
    # 2 cracked photos: the 70/15/15 test part gets none, and scored 1.0000 on intact ones only
    data = folder(tmp_path / "d", {"Negative": 30, "Positive": 2})
    parts, _ = run_split(data, split="70/15/15")
    assert parts.test.counts() == {"Negative": 4, "Positive": 0}
    assert ("note: the test part has no 'Positive' image, so its scores cannot show how well "
            "'Positive' is found") in noise_lines(parts)
    assert not any("has no" in line for line in noise_lines(
        run_split(folder(tmp_path / "e", {"a": 40, "b": 40}), split="tutorial")[0]))
