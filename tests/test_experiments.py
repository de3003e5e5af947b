"""Grid experiments on cached features, and continuing the training of a saved model."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from vitl.classifier import ImageClassifier
from vitl.data import load_image_folder, split
from vitl.datasets import make_synthetic_cracks
from vitl.experiments import ExperimentResults, run_grid
from vitl.finetune import FineTuneConfig
from vitl.training import HeadConfig

BASE = {"backbone": "mobilenetv2", "weights": None, "input_size": 64, "head": HeadConfig(epochs=2)}


@pytest.fixture(scope="module")
def cracks(tmp_path_factory):
    root = make_synthetic_cracks(tmp_path_factory.mktemp("grid") / "s", 8, size=64,
                                 verbose=0)
    return load_image_folder(root, verbose=0)


@pytest.fixture(scope="module")
def grid_results(cracks, tmp_path_factory):
    parts = split(cracks, 0.5, 0.25, 0.25, seed=0)
    results = run_grid(parts.train, parts.validation, parts.test,
                       grid={"head__learning_rate": [0.01, 0.1], "augment": [0, 1]}, seeds=(0, 1),
                       base=ImageClassifier(**BASE), cache=tmp_path_factory.mktemp("cache"),
                       verbose=0)
    return results, parts


@pytest.mark.slow
def test_one_row_per_combination_and_seed(grid_results):
    results, _ = grid_results
    rows = results.rows
    assert len(results) == len(rows) == len(results.to_pandas()) == 8
    assert [(r["head__learning_rate"], r["augment"], r["seed"]) for r in rows] == [  # ParameterGrid
        (lr, aug, seed) for aug in (0, 1) for lr in (0.01, 0.1) for seed in (0, 1)]
    for row in rows:
        assert 0.0 <= row["val_accuracy"] <= 1.0 and row["val_log_loss"] > 0
        assert row["train_seconds"] > 0 and row["epochs_run"] >= 1
    assert [r["run"] for r in rows] == list(range(8))


@pytest.mark.slow
def test_each_image_and_view_is_featurized_once(grid_results):
    results, parts = grid_results
    computed = results.to_pandas()["features_computed"].tolist()
    n_train, n_val = len(parts.train), len(parts.validation)
    assert computed[0] == n_train + n_val  # the first run featurizes originals
    assert computed[4] == n_train  # the first augment=1 run adds one view per training image
    assert sum(computed) == 2 * n_train + n_val  # every other run reads the cache


def test_best_is_chosen_by_mean_validation_metric():
    rows, clfs = [], []
    values = {0.1: [0.9, 0.7], 0.01: [0.85, 0.8], 1.0: [0.8, 0.8]}  # means 0.8, 0.825, 0.8
    for lr, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"run": len(rows), "learning_rate": lr, "seed": seed,
                         "val_accuracy": acc, "val_log_loss": 1.0 - acc / 2,
                         "train_seconds": 1.0, "epochs_run": 3, "best_epoch": 1,
                         "features_computed": 0})
            clfs.append(f"model-{lr}-{seed}")
    results = ExperimentResults({"learning_rate": list(values)}, (0, 1), rows, clfs)
    best = results.best()
    assert best.params == {"learning_rate": 0.01}
    assert best.seed == 0 and best.classifier == "model-0.01-0"  # its better seed
    assert best.summary["val_accuracy_mean"] == pytest.approx(0.825)
    assert results.best("val_log_loss").params == {"learning_rate": 0.01}
    summary = results.summary()
    assert summary[0]["learning_rate"] == 0.01
    assert summary[0]["val_accuracy_sd"] == pytest.approx(np.std([0.85, 0.8], ddof=1))
    with pytest.raises(ValueError, match="metric"):
        results.best("accuracy")


def test_summary_keeps_a_missing_mean_and_csv_keeps_integers(tmp_path):
    rows = [{"run": i, "input_size": size, "seed": 0, "val_accuracy": 0.5,
             "val_log_loss": math.nan if size is None else 0.7, "train_seconds": 1.0,
             "epochs_run": 3, "best_epoch": 1, "features_computed": 0}
            for i, size in enumerate([None, 32])]
    results = ExperimentResults({"input_size": [None, 32]}, (0,), rows, ["a", "b"])
    summary = {entry["input_size"]: entry for entry in results.summary()}
    assert math.isnan(summary[None]["val_log_loss_mean"])  # not 0.0, the best log-loss
    assert summary[None]["val_log_loss_sd"] == 0.0 and summary[32]["val_log_loss_mean"] == 0.7
    assert results.best("val_log_loss").params == {"input_size": 32}
    with open(results.to_csv(tmp_path / "grid.csv"), newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [row["input_size"] for row in read] == ["", "32"]
    assert ExperimentResults({"input_size": [32]}, (0,), [], []).summary() == []
    shown = repr(results).splitlines()[2:]  # a None is "-" in the table, as a NaN is
    assert [line.split()[:2] for line in shown] == [["0", "-"], ["1", "32"]]
    assert shown[0].split()[4] == "-" and "None" not in results._repr_html_()


@pytest.mark.slow
def test_test_set_is_used_once_by_the_validation_choice(grid_results):
    results, parts = grid_results
    report = results.evaluate_best_on_test()
    assert report.n == len(parts.test)
    assert results.evaluate_best_on_test() is report  # not evaluated again
    with pytest.raises(ValueError, match="already used"):
        results.evaluate_best_on_test("val_log_loss")
    assert "test accuracy" in repr(results)
    no_test = ExperimentResults(results.grid, results.seeds, results.rows, results.classifiers)
    with pytest.raises(ValueError, match="test set"):
        no_test.evaluate_best_on_test()


@pytest.mark.slow
def test_tables_csv_and_plot(grid_results, tmp_path):
    results, _ = grid_results
    text = repr(results)
    assert text.startswith("ExperimentResults: 8 runs (4 configurations x 2 seeds)")
    assert "val_accuracy" in text and len(text.splitlines()) == 2 + 8
    assert "<table" in results._repr_html_() and results._repr_html_().count("<tr") == 9
    path = results.to_csv(tmp_path / "grid.csv")
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == 8 and float(read[3]["val_accuracy"]) == results.rows[3]["val_accuracy"]
    assert not list(tmp_path.glob(".grid.csv.*"))  # written atomically: no temp file left
    fig = results.plot()
    bars = fig.axes[0].patches
    assert len(bars) == 4
    best = results.best()
    assert bars[0].get_width() == pytest.approx(best.summary["val_accuracy_mean"])


@pytest.mark.slow
def test_fine_tuning_runs_leave_the_shared_extractor_alone(cracks, tmp_path):
    parts = split(cracks, 0.5, 0.5, 0.0, seed=0)
    results = run_grid(parts.train, parts.validation,
                       grid={"fine_tune": [FineTuneConfig(blocks=1, epochs=1), None]},
                       base=ImageClassifier(**BASE), cache=tmp_path, verbose=0)
    first, second = results.rows
    assert first["features_computed"] == len(parts.train) + len(parts.validation)
    assert second["features_computed"] == 0  # same frozen weights, same cache keys
    plain = results.classifiers[1]
    assert plain.fit_info_["fingerprint"] == results.classifiers[0].fit_info_["base_fingerprint"]


@pytest.mark.parametrize("grid, word", [
    ({"seed": [0, 1]}, "seeds="), ({"learnin_rate": [0.1]}, "spelling"),
    ({"head__learnin_rate": [0.1]}, "spelling"), ({"epochs": [5]}, "spelling"),
    ({"head__epochs": []}, r"grid: expected .* no list empty, received .*non-empty sequence"),
    ({"head__epochs": 5}, r"grid: expected a dict .*needs to be a list .* Fix: pass e.g. grid="),
    ([{"head__epochs": [5]}], r"grid: expected a dict .*received .Parameter grid is not a dict"),
])
def test_bad_grids_are_refused_with_a_fix(cracks, grid, word):
    with pytest.raises(ValueError, match=word):
        run_grid(cracks, grid=grid, base=ImageClassifier(**BASE), cache=None, verbose=0)


def test_grid_points_are_clones_with_nested_fields_set():
    from vitl.experiments import _grid_point

    base = ImageClassifier(**BASE, augment=2)
    clf = _grid_point(base, {"head__learning_rate": 0.5, "augment__rotation": 0.0,
                             "fine_tune__blocks": 3, "seed": 4})
    assert clf is not base and base.head == HeadConfig(epochs=2)  # the base is untouched
    assert clf.head == HeadConfig(epochs=2, learning_rate=0.5) and clf.seed == 4
    assert clf.augment.views == 2 and clf.augment.rotation == 0.0
    assert clf.fine_tune == FineTuneConfig(blocks=3)


# ---------------------------------------------------------------------- continue_training
def _subset(collection, n_per_class):
    keep = np.concatenate([np.flatnonzero(collection.labels == c)[:n_per_class]
                           for c in range(len(collection.class_names))])
    return collection.subset(np.sort(keep))


@pytest.fixture
def first_model(cracks, tmp_path):
    parts = split(cracks, 0.75, 0.25, 0.0, seed=0)
    clf = ImageClassifier(**BASE, cache=tmp_path / "cache", verbose=0)
    clf.fit(_subset(parts.train, 3), parts.validation)
    return clf, parts


def test_continue_training_starts_from_the_current_head(first_model):
    clf, parts = first_model
    before = [w.copy() for w in clf.head_.get_weights()]
    # a learning rate so small that the weights must stay where they started
    clf.set_params(head=HeadConfig(epochs=2, learning_rate=1e-9))
    clf.continue_training(parts.train, parts.validation, epochs=1)
    for old, new in zip(before, clf.head_.get_weights()):
        np.testing.assert_allclose(new, old, atol=1e-6)
    assert np.abs(before[0]).max() > 0  # the start was a trained head, not zeros


def test_continue_training_with_more_images_changes_the_model(first_model):
    clf, parts = first_model
    before = clf.predict_proba(parts.validation)
    weights = [w.copy() for w in clf.head_.get_weights()]
    clf.set_params(head=HeadConfig(epochs=2, learning_rate=1.0))
    clf.continue_training(parts.train, parts.validation, epochs=3)
    assert list(clf.classes_) == ["cracked", "uncracked"]
    assert any(not np.allclose(a, b) for a, b in zip(weights, clf.head_.get_weights()))
    assert not np.allclose(clf.predict_proba(parts.validation), before)
    run = clf.fit_info_["continued"][-1]
    assert run["counts"]["train"] == parts.train.counts()
    assert run["features"]["train"]["hits"] >= 6  # images seen by fit come from the cache
    assert len(clf.history_) == run["epochs_run"] <= 3


@pytest.mark.slow
def test_continue_training_works_on_a_loaded_model(first_model, tmp_path):
    clf, parts = first_model
    loaded = ImageClassifier.load(clf.save(tmp_path / "m.keras"),
                                  cache=tmp_path / "cache", verbose=0)
    np.testing.assert_allclose(loaded.predict_proba(parts.validation),
                               clf.predict_proba(parts.validation), atol=1e-6)
    weights = [w.copy() for w in loaded.head_.get_weights()]
    loaded.set_params(head=HeadConfig(epochs=2, learning_rate=1.0))
    loaded.continue_training(parts.train, parts.validation, epochs=2)
    assert any(not np.allclose(a, b) for a, b in zip(weights, loaded.head_.get_weights()))
    again = ImageClassifier.load(loaded.save(tmp_path / "m2.keras"), cache=None, verbose=0)
    assert again.head == loaded.head
    assert len(again.fit_info_["continued"]) == 1
    np.testing.assert_allclose(again.predict_proba(parts.validation),
                               loaded.predict_proba(parts.validation), atol=1e-6)


def test_continue_training_refuses_other_classes(first_model, tmp_path):
    clf, _ = first_model
    other = make_synthetic_cracks(tmp_path / "other", 3, size=64, verbose=0,
                                  class_names=("cracked", "spalling"))
    with pytest.raises(ValueError, match=r"classes: expected the model's classes .* Fix:"):
        clf.continue_training(other)
    with pytest.raises(NotFittedError):
        ImageClassifier(**BASE).continue_training(other)


def test_table_shows_small_grid_values_as_given_not_rounded_to_zero():
    rows = [{"run": i, "head__learning_rate": lr, "seed": 0, "val_accuracy": acc,
             "val_log_loss": 1 - acc, "train_seconds": 1.0, "epochs_run": 2,
             "features_computed": 0} for i, (lr, acc) in enumerate([(1e-5, 0.8), (1e-4, 0.9)])]
    text = repr(ExperimentResults({"head__learning_rate": [1e-5, 1e-4]}, (0,), rows, ["a", "b"]))
    lines = text.splitlines()
    assert lines[2].split()[:2] == ["0", "1e-05"] and lines[3].split()[:2] == ["1", "0.0001"], text
    assert lines[3].split()[3] == "0.9000", text  # metrics keep 4 decimals


def test_headline_counts_in_plain_english():
    rows = [{"run": 0, "head__dropout": 0.1, "seed": 0, "val_accuracy": 0.9,
             "val_log_loss": 0.1, "train_seconds": 1.0, "epochs_run": 2, "features_computed": 0}]
    text = repr(ExperimentResults({"head__dropout": [0.1]}, (0,), rows, ["a"]))
    assert text.startswith("ExperimentResults: 1 run (1 configuration x 1 seed);"), text
