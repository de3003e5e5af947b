"""Tests for vitl.training: config, head model, model.fit training, logging and history."""

from __future__ import annotations

import json
import math
import re

import keras
import numpy as np
import pytest

from vitl.training import (
    HISTORY_COLUMNS,
    EpochLog,
    HeadConfig,
    LearningRateLog,
    TrainingHistory,
    build_head,
    class_weights,
    feature_dataset,
    predict_proba,
    train_head,
)


def blobs(n, dim=8, n_classes=2, gap=3.0, seed=0):
    """Separable Gaussian classes: class c is shifted by gap * c along every feature."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = rng.normal(size=(n, dim)).astype(np.float32) + gap * y[:, None]
    return x, y


def epoch_orders(n, config, epochs):
    """The sample order of every epoch of train_head's input pipeline (same seeds)."""
    keras.utils.set_random_seed(config.seed)
    steps = math.ceil(n / config.batch_size)
    batches = feature_dataset(np.zeros((n, 1)), np.arange(n), config.batch_size,
                              seed=config.seed).repeat().take(steps * epochs)
    index = [yb.numpy() for _, yb in batches]
    return [np.concatenate(index[e * steps:(e + 1) * steps]) for e in range(epochs)]


def reference_sgd(x, y, config, epochs, n_classes=2, sample_weight=None):
    """Plain numpy softmax regression with the same init, shuffles and LR schedule."""
    head = build_head(x.shape[1], n_classes, config)
    kernel, bias = [w.astype(np.float64) for w in head.get_layer("scores").get_weights()]
    n, b = len(x), config.batch_size
    steps = math.ceil(n / b)
    decay_steps = max(1, round(config.decay_every_epochs * steps))
    weights = np.ones(n) if sample_weight is None else sample_weight
    step = 0
    for order in epoch_orders(n, config, epochs):
        assert sorted(order) == list(range(n))  # every sample once per epoch
        for start in range(0, n, b):
            batch = order[start:start + b]
            lr = config.learning_rate * config.lr_decay ** (step // decay_steps)
            logits = x[batch] @ kernel + bias
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(batch)), y[batch]] -= 1
            grad = p * weights[batch][:, None] / len(batch)
            kernel -= lr * x[batch].T @ grad
            bias -= lr * grad.sum(axis=0)
            step += 1
    return kernel, bias


# ------------------------------------------------------------------ HeadConfig
def test_mlnet_preset_is_mlnet_defaults():
    c = HeadConfig.mlnet()
    assert (c.epochs, c.batch_size, c.learning_rate, c.lr_decay, c.decay_every_epochs) == (
        200, 10, 0.01, 0.94, 2)
    assert (c.optimizer, c.lr_schedule, c.early_stopping, c.monitor) == (
        "sgd", "exponential", True, "val_accuracy")
    assert (c.patience, c.min_delta, c.restore_best_weights, c.dropout, c.hidden_units) == (
        20, 0.01, True, 0.0, None)


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", 2.5), ("learning_rate", -1), ("lr_schedule", "step"),
    ("lr_decay", 1.5), ("decay_every_epochs", 0), ("optimizer", "rmsprop"),
    ("early_stopping", "yes"), ("monitor", "f1"), ("patience", -1), ("min_delta", -0.1),
    ("dropout", 0.99), ("hidden_units", 0), ("class_weight", "auto"),
    ("class_weight", {0: -1.0}), ("l2", -1e-3), ("seed", -1),
])
def test_config_validate_names_field_expected_and_fix(field, value):
    with pytest.raises(ValueError) as err:
        HeadConfig(**{field: value}).validate()
    message = str(err.value)
    assert message.startswith(field) and "expected" in message and "Fix:" in message


def test_config_dict_round_trip_and_unknown_key():
    config = HeadConfig(epochs=7, class_weight="balanced", hidden_units=32)
    assert HeadConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="epoch"):
        HeadConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("schedule", ["exponential", "constant", "cosine"])
def test_make_optimizer_schedules(schedule):
    config = HeadConfig(lr_schedule=schedule, epochs=10, learning_rate=0.01)
    rate = config.make_optimizer(steps_per_epoch=5).learning_rate
    assert float(rate) == pytest.approx(0.01)


@pytest.mark.parametrize("steps", [0, -1, "5", 2.0])
def test_make_optimizer_refuses_bad_steps_in_one_line(steps):
    with pytest.raises(ValueError, match="steps_per_epoch: expected an integer >= 1.*Fix: "):
        HeadConfig(lr_schedule="cosine").make_optimizer(steps)


# ------------------------------------------------------------------ build_head
@pytest.mark.parametrize("n_classes", [2, 5])
def test_build_head_shapes_names_and_mlnet_init(n_classes):
    head = build_head(64, n_classes)
    assert head.name == "head"
    assert [layer.name for layer in head.layers] == ["features", "scores"]
    assert head.output_shape == (None, n_classes)
    kernel, bias = head.get_layer("scores").get_weights()
    assert kernel.shape == (64, n_classes)
    assert np.all(bias == 0)
    assert 0.0005 < kernel.std() < 0.0015 and np.abs(kernel).max() <= 0.002  # truncated at 2 sd
    proba = head.predict(np.ones((3, 64), "float32"), verbose=0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_build_head_optional_layers_and_seeded_init():
    config = HeadConfig(dropout=0.3, hidden_units=16, l2=1e-3)
    head = build_head(8, 3, config)
    assert [layer.name for layer in head.layers] == ["features", "dropout", "hidden", "scores"]
    assert head.get_layer("dropout").rate == 0.3
    assert len(head.losses) == 2  # L2 on both kernels
    again = build_head(8, 3, config)
    for a, b in zip(head.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_build_head_rejects_one_class():
    with pytest.raises(ValueError, match="n_classes: expected an integer >= 2"):
        build_head(8, 1)


# ------------------------------------------------------------------ train_head
def test_train_head_matches_reference_numpy_sgd_including_partial_batch():
    x, y = blobs(23, dim=6, gap=1.0)  # 23 = 2 full batches + a batch of 3
    config = HeadConfig.mlnet(epochs=5, learning_rate=0.05, decay_every_epochs=1, lr_decay=0.5,
                              early_stopping=False)
    model, history = train_head(x, y, n_classes=2, config=config, verbose=False)
    kernel, bias = reference_sgd(x, y, config, epochs=5)
    got_kernel, got_bias = model.get_layer("scores").get_weights()
    np.testing.assert_allclose(got_kernel, kernel, atol=2e-6)
    np.testing.assert_allclose(got_bias, bias, atol=2e-6)
    assert len(history) == 5 and history.stopped_epoch is None


def test_balanced_class_weight_matches_reference():
    x, y = blobs(30, dim=5, gap=1.0)
    y = (np.arange(30) < 6).astype(int)  # 6 of class 1, 24 of class 0
    config = HeadConfig.mlnet(epochs=3, learning_rate=0.05, early_stopping=False,
                              class_weight="balanced")
    model, _ = train_head(x, y, n_classes=2, config=config, verbose=False)
    weights = np.where(y == 1, 30 / (2 * 6), 30 / (2 * 24))
    kernel, bias = reference_sgd(x, y, config, epochs=3, sample_weight=weights)
    np.testing.assert_allclose(model.get_layer("scores").get_weights()[0], kernel, atol=2e-6)
    np.testing.assert_allclose(model.get_layer("scores").get_weights()[1], bias, atol=2e-6)


def test_train_head_is_deterministic_and_seed_matters():
    x, y = blobs(60, dim=8, gap=0.8)
    xv, yv = blobs(20, dim=8, gap=0.8, seed=1)
    config = HeadConfig(epochs=12, dropout=0.2, hidden_units=6, early_stopping=False)
    runs = [train_head(x, y, xv, yv, n_classes=2, config=config, verbose=False)
            for _ in range(2)]
    assert runs[0][1].rows == runs[1][1].rows
    for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights()):
        np.testing.assert_array_equal(a, b)
    other, _ = train_head(x, y, xv, yv, n_classes=2, verbose=False,
                          config=HeadConfig(epochs=12, dropout=0.2, hidden_units=6,
                                            early_stopping=False, seed=1))
    assert not np.array_equal(other.get_weights()[0], runs[0][0].get_weights()[0])


def test_xla_and_plain_graph_agree():
    x, y = blobs(40, dim=8, gap=1.0)
    fast, h_fast = train_head(x, y, n_classes=2, verbose=False,
                              config=HeadConfig(epochs=4, early_stopping=False, jit_compile=True))
    slow, h_slow = train_head(x, y, n_classes=2, verbose=False,
                              config=HeadConfig(epochs=4, early_stopping=False, jit_compile=False))
    np.testing.assert_allclose(fast.get_weights()[0], slow.get_weights()[0], atol=1e-6)
    np.testing.assert_allclose(h_fast.column("loss"), h_slow.column("loss"), atol=1e-5)


def test_learns_and_logs_staircase_learning_rate():
    x, y = blobs(100, dim=8)
    xv, yv = blobs(40, dim=8, seed=1)
    model, history = train_head(x, y, xv, yv, n_classes=2, verbose=False,
                                config=HeadConfig.mlnet(epochs=9, early_stopping=False))
    expected = [0.01 * 0.94 ** (e // 2) for e in range(9)]
    np.testing.assert_allclose(history.column("learning_rate"), expected, rtol=1e-6)
    assert history.rows[-1]["val_accuracy"] >= 0.95
    proba = predict_proba(model, xv)
    assert proba.shape == (40, 2)
    val_loss = -np.mean(np.log(proba[np.arange(40), yv]))
    assert history.rows[-1]["val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert history.best_epoch == int(np.argmax(history.column("val_accuracy")))


def test_cosine_and_constant_schedules_logged():
    x, y = blobs(20, dim=4)
    _, cosine = train_head(x, y, n_classes=2, verbose=False,
                           config=HeadConfig(epochs=4, lr_schedule="cosine", early_stopping=False,
                                             learning_rate=0.01, batch_size=10))
    steps = 2
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * e * steps / (4 * steps))) for e in range(4)]
    np.testing.assert_allclose(cosine.column("learning_rate"), expected, rtol=1e-5)
    _, constant = train_head(x, y, n_classes=2, verbose=False,
                             config=HeadConfig(epochs=3, lr_schedule="constant", optimizer="adam",
                                               early_stopping=False, learning_rate=0.01))
    np.testing.assert_allclose(constant.column("learning_rate"), [0.01] * 3)


def test_early_stopping_stops_and_restores_best_weights():
    x, y = blobs(60, dim=8, gap=4.0)
    xv, yv = blobs(20, dim=8, gap=4.0, seed=1)
    config = HeadConfig.mlnet(epochs=50, patience=3, learning_rate=0.1)
    model, history = train_head(x, y, xv, yv, n_classes=2, config=config, verbose=False)
    # validation accuracy saturates, so training stops `patience` epochs after the best one
    assert len(history) < 50
    assert history.stopped_epoch == history.best_epoch + 3 == history.rows[-1]["epoch"]
    assert history.restored_best
    best = history.best
    loss, accuracy = model.evaluate(xv, yv, verbose=0)
    assert loss == pytest.approx(best["val_loss"], rel=1e-4)
    assert accuracy == pytest.approx(best["val_accuracy"])


def test_without_validation_monitor_falls_back_to_training_metric():
    x, y = blobs(30, dim=4)
    _, history = train_head(x, y, n_classes=2, verbose=False,
                            config=HeadConfig(epochs=5, patience=2))
    assert history.monitor == "loss"
    _, history = train_head(x, y, n_classes=2, verbose=False,
                            config=HeadConfig.mlnet(epochs=5, patience=2))
    assert history.monitor == "accuracy"
    assert all(row["val_accuracy"] is None for row in history.rows)
    assert not history.has_validation


def test_multiclass_with_adam_and_hidden_layer_learns():
    x, y = blobs(90, dim=6, n_classes=3, gap=3.0)
    config = HeadConfig(epochs=30, learning_rate=0.05, hidden_units=8, early_stopping=False)
    model, history = train_head(x, y, x, y, n_classes=3, config=config, verbose=False)
    assert model.output_shape == (None, 3)
    assert history.rows[-1]["val_accuracy"] >= 0.95


def test_epoch_log_lines_mirror_mlnet(capsys):
    x, y = blobs(25, dim=4)
    train_head(x, y, x[:7], y[:7], n_classes=2, verbose=2,
               config=HeadConfig.mlnet(epochs=3, early_stopping=False))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    train = re.compile(r"Phase: Training, Dataset used:      Train, Batch Processed Count:   3, "
                       r"Epoch:   (\d), Accuracy: \d\.\d{4}, Cross-Entropy: \d\.\d{4}, "
                       r"Learning Rate: (0\.\d{6})$")
    val = re.compile(r"Phase: Training, Dataset used: Validation, Batch Processed Count:   1, "
                     r"Epoch:   (\d), Accuracy: \d\.\d{4}, Cross-Entropy: \d\.\d{4}$")
    assert [train.match(line).group(1) for line in lines[0::2]] == ["0", "1", "2"]
    assert [train.match(line).group(2) for line in lines[0::2]] == [
        "0.010000", "0.010000", "0.009400"]
    assert [val.match(line).group(1) for line in lines[1::2]] == ["0", "1", "2"]


def test_epoch_log_works_with_model_fit():
    import io

    x, y = blobs(20, dim=4)
    model = build_head(4, 2)
    model.compile(optimizer=HeadConfig.mlnet().make_optimizer(steps_per_epoch=2),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out = io.StringIO()
    model.fit(x, y, batch_size=10, epochs=5, verbose=0,
              callbacks=[LearningRateLog(), EpochLog(stream=out)])
    lines = out.getvalue().splitlines()
    assert [re.search(r"Epoch: +(\d+)", line).group(1) for line in lines] == list("01234")
    # 2 steps per epoch, decay every 2 epochs = 4 steps: epoch 2 starts at step 4, epoch 4 at 8
    assert "Learning Rate: 0.010000" in lines[0]
    assert "Learning Rate: 0.009400" in lines[2]
    assert "Learning Rate: 0.008836" in lines[4]
    assert "Batch Processed Count:   2" in lines[0]


def test_on_epoch_hook_and_keras_callbacks_run_each_epoch():
    x, y = blobs(20, dim=4)
    seen = []

    class StopAtTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.logs = logs
            if epoch == 2:
                self.model.stop_training = True

    stopper = StopAtTwo()
    _, history = train_head(x, y, x, y, n_classes=2, verbose=False, callbacks=[stopper],
                            on_epoch=lambda epoch, logs: seen.append((epoch, sorted(logs))),
                            config=HeadConfig(epochs=10, early_stopping=False))
    keys = sorted(["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"])
    assert seen == [(0, keys), (1, keys), (2, keys)]
    assert len(history) == 3 and history.stopped_epoch == 2
    assert stopper.logs["accuracy"] == history.rows[-1]["accuracy"]


def test_progress_bar_mode(capsys):
    x, y = blobs(20, dim=4)
    _, history = train_head(x, y, n_classes=2, verbose=1,
                            config=HeadConfig(epochs=3, early_stopping=False))
    captured = capsys.readouterr()
    assert "Training head" in captured.err and "Phase: Training" not in captured.out
    assert len(history) == 3
    train_head(x, y, n_classes=2, verbose=0, config=HeadConfig(epochs=2))
    assert capsys.readouterr() == ("", "")


XY = "x_train, y_train: expected (N, D) finite features, one label per row, received '"


@pytest.mark.parametrize("kwargs, message", [
    ({"y_train": np.array([0, 1, 2, 0])},
     "y_train: expected integer class indices in [0, 1], received 'values from 0 to 2'"),
    ({"y_train": np.array([0.0, 1.5, 0.0, 1.0])},
     "y_train: expected integer class indices in [0, 1], received 'values from 0.0 to 1.5'"),
    ({"y_train": np.array([0, 1, 0])}, XY + "Found input variables with inconsistent numbers of samples"),
    ({"y_train": np.array(["a", "b", "a", "b"])},
     "y_train: expected integer class indices in [0, 1], received dtype('<U1')"),
    ({"x_train": np.full((4, 3), np.nan)},
     XY + "Input X contains NaN"),
    ({"x_train": np.zeros(4)},
     XY + "Expected 2D array, got 1D array"),
    ({"x_train": np.zeros((0, 3)), "y_train": np.zeros(0, int)},
     XY + "Found array with 0 sample(s)"),
    ({"x_val": np.zeros((2, 3))}, XY.replace("train", "val") + "estimator requires y to be passed"),
    ({"y_val": np.zeros(2)}, XY.replace("train", "val") + "Expected 2D array, got scalar array"),
    ({"x_val": np.zeros((2, 5)), "y_val": np.array([0, 1])}, "x_val: expected 3 features"),
    ({"n_classes": 1}, "n_classes: expected an integer >= 2"),
    ({"callbacks": [print]}, "callbacks: expected keras.callbacks.Callback"),
    ({"verbose": "loud"}, "verbose: expected 0 (silent), 1 (progress bars) or 2"),
    ({"verbose": 4}, "verbose: expected 0 (silent), 1 (progress bars) or 2"),
])
def test_train_head_input_errors(kwargs, message):
    args = {"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 0, 1]), "n_classes": 2,
                "config": HeadConfig(epochs=1), "verbose": False}
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        train_head(args.pop("x_train"), args.pop("y_train"), **args)
    assert str(err.value).startswith(message) and "Fix:" in str(err.value)


def test_class_weights_are_sklearns_balanced_weights():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weights = class_weights(y, 4, "balanced")
    assert weights == pytest.approx({0: 9 / 18, 1: 9 / 6, 2: 9 / 3, 3: 1.0})
    assert class_weights(y, 3, None) is None
    with pytest.raises(ValueError, match="class_weight keys"):
        class_weights(y, 3, {5: 2.0})


def test_keras_history_view_records_early_stopping():
    x, y = blobs(30, dim=40, gap=0.4)  # few samples, many features: validation loss turns up
    xv, yv = blobs(30, dim=40, gap=0.4, seed=1)
    model, history = train_head(x, y, xv, yv, n_classes=2, verbose=False,
                                config=HeadConfig(epochs=300, patience=5, learning_rate=0.05))
    losses = history.column("val_loss")
    assert history.monitor == "val_loss" and history.stopped_epoch == len(history) - 1
    assert history.best_epoch == int(np.argmin(losses)) < len(history) - 5
    proba = predict_proba(model, xv)  # the restored best epoch's weights
    assert float(np.mean(keras.losses.sparse_categorical_crossentropy(yv, proba))) == \
        pytest.approx(losses[history.best_epoch], rel=1e-5)


def test_history_val_loss_is_what_evaluation_reports():
    from vitl.evaluation import EvaluationReport

    x, y = blobs(30, dim=8, gap=0.5)
    xv, yv = blobs(20, dim=8, gap=0.5, seed=1)
    model, history = train_head(x, y, xv, yv, n_classes=2, verbose=0,
                                config=HeadConfig(epochs=5, early_stopping=False))
    report = EvaluationReport.from_predictions(yv, predict_proba(model, xv), ["a", "b"])
    assert history.rows[-1]["val_loss"] == pytest.approx(report.log_loss, rel=1e-6)
    assert history.rows[-1]["val_accuracy"] == pytest.approx(report.accuracy)


# ------------------------------------------------------------- TrainingHistory
def make_history(n_epochs, validation=True, best=3):
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "accuracy": 0.5 + e / (2 * n_epochs),
             "val_loss": 1.1 / (e + 1) if validation else None,
             "val_accuracy": 0.45 + e / (2 * n_epochs) if validation else None,
             "learning_rate": 0.01 * 0.94 ** (e // 2)} for e in range(n_epochs)]
    return TrainingHistory(rows, monitor="val_accuracy" if validation else "accuracy",
                           best_epoch=best, stopped_epoch=None, epochs_requested=200,
                           seconds=1.25)


def test_history_repr_short_shows_all_rows_and_marks_best():
    text = repr(make_history(5))
    lines = text.splitlines()
    assert lines[0].startswith("TrainingHistory: 5 epochs of 200, best epoch 3 (val_accuracy=")
    assert lines[1].split() == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                                "learning_rate"]
    assert len(lines) == 2 + 5
    assert lines[2 + 3].endswith("<- best")
    assert lines[2].split()[:2] == ["0", "1.0000"]


def test_history_repr_long_shows_head_and_tail_and_hides_empty_validation():
    text = repr(make_history(40, validation=False, best=39))
    lines = text.splitlines()
    assert "val_loss" not in lines[1]
    assert len(lines) == 2 + 5 + 1 + 5
    assert lines[7].split()[0] == "..."
    assert lines[-1].split()[0] == "39" and lines[-1].endswith("<- best")


def test_history_repr_long_keeps_best_row_from_the_middle():
    lines = repr(make_history(40, best=20)).splitlines()
    assert [line.split()[0] for line in lines[2:]] == [
        "0", "1", "2", "3", "4", "...", "20", "...", "35", "36", "37", "38", "39"]
    assert lines[8].endswith("<- best")
    assert make_history(40, best=20)._repr_html_().count("<td>...</td>") == 2 * 6


def test_history_repr_shows_a_diverged_loss_as_nan_and_a_missing_value_as_dash():
    rows = [{"epoch": 0, "loss": float("nan"), "accuracy": 0.5, "learning_rate": None}]
    lines = repr(TrainingHistory(rows, monitor="accuracy", best_epoch=0)).splitlines()
    assert lines[2].split() == ["0", "nan", "0.5000", "-", "<-", "best"]


def test_history_html_dict_and_pandas():
    history = make_history(5)
    html = history._repr_html_()
    assert html.count("<tr") == 1 + 5
    marked = [row for row in html.split("</tr>") if "&lt;- best" in row]
    assert len(marked) == 1 and "<td>3</td>" in marked[0]
    data = json.loads(json.dumps(history.to_dict()))
    assert TrainingHistory.from_dict(data).rows == history.rows
    assert data["best_epoch"] == 3 and len(data["rows"]) == 5
    frame = history.to_pandas()
    assert list(frame["epoch"]) == [0, 1, 2, 3, 4] and list(frame.columns) == list(HISTORY_COLUMNS)
    assert frame["val_accuracy"].tolist() == [row["val_accuracy"] for row in history.rows]


def test_history_column_rejects_unknown_name():
    with pytest.raises(ValueError, match="column: expected one of"):
        make_history(2).column("f1")


# ------------------------------------------------------- defaults vs a baseline
def crack_like_features(n, dim=64, seed=0):
    """Non-negative, correlated features (like pooled ReLU activations), two overlapping classes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    signal = np.zeros(dim)
    signal[:8] = 0.9
    latent = rng.normal(size=(n, dim)) + np.outer(y, signal)
    return np.maximum(latent @ mixing + 0.5, 0).astype(np.float32), y


def test_default_head_matches_logistic_regression_on_the_same_features():
    from sklearn.linear_model import LogisticRegression

    def accuracies(seed):
        x, y = crack_like_features(400, seed=seed)
        train, val, test = slice(0, 252), slice(252, 280), slice(280, 400)  # 70% (10% val) / 30%
        lr = LogisticRegression(max_iter=5000).fit(x[:280], y[:280]).score(x[test], y[test])
        heads = []
        for config in (HeadConfig(seed=seed), HeadConfig(epochs=1, seed=seed)):
            model, _ = train_head(x[train], y[train], x[val], y[val], n_classes=2,
                                  config=config, verbose=False)
            heads.append(float(np.mean(predict_proba(model, x[test]).argmax(1) == y[test])))
        return lr, *heads

    lr, default, one_epoch = np.mean([accuracies(seed) for seed in (0, 1, 2)], axis=0)
    one_image = 1 / 120
    assert default >= lr - one_image
    assert one_epoch < lr - 3 * one_image  # the comparison can fail: an under-fit head loses


def test_image_classifier_mlnet_carries_every_mlnet_head_setting():
    from vitl import HeadConfig, ImageClassifier

    clf = ImageClassifier.mlnet("mobilenetv2", seed=3)
    params = clf.get_params()
    assert params["head"] == HeadConfig.mlnet() and params["seed"] == 3
    assert params["backbone"] == "mobilenetv2" and ImageClassifier().head is None
    tuned = ImageClassifier.mlnet("mobilenetv2", head=HeadConfig.mlnet(learning_rate=0.05))
    assert tuned.head.learning_rate == 0.05 and tuned.head.optimizer == "sgd"


def test_a_stop_on_the_last_requested_epoch_is_not_an_early_stop():
    # early stopping's patience can run out on the very epoch that was the last anyway
    # (best epoch 19, patience 20, 40 epochs): all epochs ran, so no "stopped early"
    x, y = blobs(20, dim=4)

    class StopAtLast(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True

    _, history = train_head(x, y, x, y, n_classes=2, verbose=False, callbacks=[StopAtLast()],
                            config=HeadConfig(epochs=3, early_stopping=False))
    assert len(history) == 3 and history.stopped_epoch is None
    assert "stopped early" not in str(history)
