"""``ImageClassifier``: folders of photos in, a trained, evaluated, saved classifier out.

The two phases of ML.NET's image classification trainer, in Keras:

1. **Bottleneck phase**: every image goes once through the frozen backbone;
   its pooled features land in the shared feature cache (:mod:`vitl.features`).
2. **Training phase**: a small softmax head learns from the cached features
   (:func:`vitl.training.train_head`), epoch by epoch.

Optional improvements (:mod:`vitl.augment`, :mod:`vitl.finetune`): ``augment=K``
adds K cached, deterministic augmented views of every training image to the
head's training set; ``fine_tune_blocks=N`` then trains the top N backbone
blocks with the head, end to end on images. :meth:`ImageClassifier.continue_training`
resumes the head's training when new images arrive.

The fitted estimator joins backbone and head into one Keras model for
prediction, saving and export.
"""

from __future__ import annotations

import csv
import inspect
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import __version__
from ._errors import NotFittedError, check_fraction, check_int, check_is_fitted, problem
from ._files import atomic_path
from .augment import AugmentPolicy
from .backbones import FeatureExtractor, WeightsSource, build_feature_extractor, get_backbone
from .backbones.registry import PREPROCESSING_VERSION
from .data import ImageCollection, load_image_folder, paths_or_arrays, split
from .evaluation import EvaluationReport
from .features import Featurizer
from .features.pipeline import to_model_image
from .finetune import FineTuneConfig, fine_tune
from .training import HeadConfig, TrainingHistory, predict_proba, train_head

#: Format version of saved models; a model from another version is refused on load.
SAVE_FORMAT = 1
_METADATA = "vitl.json"  # extra member inside the .keras zip


@dataclass(frozen=True)
class Prediction:
    """One image's prediction: the label, its score and every class's score."""

    path: str | None
    label: str
    score: float
    scores: dict

    def __str__(self) -> str:
        return f"{self.path or '<array>'}: {self.label} ({self.score:.3f})"


class ImageClassifier:
    """Transfer-learning image classifier: a frozen ImageNet backbone plus a trained head.

    The backbone defaults to ML.NET's (ResNet101 v2); the head's training
    defaults are :class:`vitl.training.HeadConfig`'s, chosen by measurement
    (Adam 1e-3, batch 32, up to 200 epochs, early stopping on validation loss
    with patience 20, best weights restored). ML.NET's settings are one call
    away: ``ImageClassifier(**HeadConfig.mlnet().to_dict())`` minus the fields
    this class does not take, or ``vitl train --preset mlnet``.

    Args:
        backbone: a name from :func:`vitl.backbones.list_backbones`.
        weights: ``"imagenet"``, a weights file, or None (random: plumbing tests only).
        input_size: square input side; default the backbone's own.
        precision: backbone precision: ``"float32"``, ``"bfloat16"``, ``"float16"``.
        epochs, batch_size, learning_rate, lr_schedule, lr_decay,
        decay_every_epochs, optimizer, early_stopping, monitor, patience,
        min_delta, class_weight, dropout, hidden_units, l2: the head's
            training, see :class:`vitl.training.HeadConfig` (same defaults).
        validation_fraction: when ``fit`` gets no validation set, this share
            of ``train`` is held out for validation (stratified, exact
            per-class counts, seeded by ``seed``); 0 trains on everything and
            early stopping watches the training metric.
        augment: K augmented views per training image added to the head's
            training set (0 = off). Views are deterministic and cached like
            originals; validation and test images are never augmented.
        augment_policy: an :class:`vitl.augment.AugmentPolicy` (or its dict);
            None means ``AugmentPolicy()``.
        fine_tune_blocks: after the head, train the top N backbone blocks with
            it end to end on images (0 = off); see :mod:`vitl.finetune`. Kept
            only when it improves validation accuracy.
        fine_tune_epochs: maximum fine-tuning epochs (early stopping, patience 5).
        fine_tune_learning_rate: peak fine-tuning learning rate (Adam; warm-up
            over the first epoch, cosine decay to 0).
        seed: seeds the validation hold-out, initialisation and shuffling: the
            same data and seed give the same split, weights and metrics.
        cache: feature cache: ``"default"``, a folder, or None to disable.
        verbose: print the per-epoch log (``True``, or an int n: every n-th
            epoch), a progress bar (``"bar"``) or nothing (``False``), for the
            head and for fine-tuning; featurizing shows a progress bar unless False.
        callbacks: extra Keras callbacks for the training phase.
        on_epoch: ``on_epoch(epoch, logs)``, called after every epoch.

    Attributes (after ``fit``):
        classes_: class names, in score-column order.
        history_: :class:`vitl.training.TrainingHistory` of the training phase.
        fine_tune_history_: :class:`~vitl.training.TrainingHistory` of
            fine-tuning, or None.
        extractor_: the frozen :class:`vitl.backbones.FeatureExtractor` (after
            fine-tuning: the fine-tuned one, with its own cache identity).
        head_: the trained head (a Keras model on features).
        model_: backbone and head as one Keras model, images (0..255) in,
            probabilities out.
        fit_info_: what ``fit`` saw: backbone, weights source, split counts,
            feature-cache statistics, augmentation and fine-tuning settings and
            results, and any ``continue_training`` runs.

    Example:
        >>> import tempfile
        >>> from vitl.datasets import make_synthetic_cracks
        >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 6, size=64, verbose=0)
        >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=64, epochs=3,
        ...                       cache=None, verbose=False)
        >>> clf.fit(folder).classes_.tolist()
        ['cracked', 'uncracked']
        >>> clf.predict_proba(folder).shape
        (12, 2)
    """

    def __init__(self, backbone="resnet101v2", *, weights="imagenet", input_size=None,
                 precision="float32", epochs=200, batch_size=32, learning_rate=1e-3,
                 lr_schedule="constant", lr_decay=0.94, decay_every_epochs=2, optimizer="adam",
                 early_stopping=True, monitor="val_loss", patience=20, min_delta=0.0,
                 class_weight=None, dropout=0.0, hidden_units=None, l2=0.0,
                 validation_fraction=0.1, augment=0, augment_policy=None, fine_tune_blocks=0,
                 fine_tune_epochs=10, fine_tune_learning_rate=1e-4, seed=0, cache="default",
                 verbose=True, callbacks=(), on_epoch=None):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.precision = precision
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.decay_every_epochs = decay_every_epochs
        self.optimizer = optimizer
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.class_weight = class_weight
        self.dropout = dropout
        self.hidden_units = hidden_units
        self.l2 = l2
        self.validation_fraction = validation_fraction
        self.augment = augment
        self.augment_policy = augment_policy
        self.fine_tune_blocks = fine_tune_blocks
        self.fine_tune_epochs = fine_tune_epochs
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.seed = seed
        self.cache = cache
        self.verbose = verbose
        self.callbacks = callbacks
        self.on_epoch = on_epoch

    # ------------------------------------------------------------------ params
    _HEAD_PARAMS = ("epochs", "batch_size", "learning_rate", "lr_schedule", "lr_decay",
                    "decay_every_epochs", "optimizer", "early_stopping", "monitor", "patience",
                    "min_delta", "class_weight", "dropout", "hidden_units", "l2", "seed")

    @classmethod
    def mlnet(cls, backbone="resnet101v2", **params) -> ImageClassifier:
        """An ``ImageClassifier`` with ML.NET's head settings (:meth:`HeadConfig.mlnet`).

        What the ML.NET tutorial shows: plain gradient descent at 0.01 decayed by
        0.94 every 2 epochs, batch 10, early stopping on validation accuracy.
        ``vitl train --preset mlnet`` is the same.

        Args:
            backbone: as for the constructor.
            **params: any other constructor argument; head settings given here
                override ML.NET's.

        Returns:
            An unfitted :class:`ImageClassifier`.

        Example:
            >>> clf = ImageClassifier.mlnet("mobilenetv2-tv", epochs=50)
            >>> clf.optimizer, clf.learning_rate, clf.batch_size, clf.epochs
            ('sgd', 0.01, 10, 50)
        """
        preset = HeadConfig.mlnet().to_dict()
        head = {name: preset[name] for name in cls._HEAD_PARAMS if name != "seed"}
        return cls(backbone, **{**head, **params})

    def get_params(self) -> dict:
        """Return the constructor arguments (scikit-learn style)."""
        names = list(inspect.signature(ImageClassifier.__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    def head_config(self) -> HeadConfig:
        """The validated :class:`~vitl.training.HeadConfig` these arguments describe."""
        return HeadConfig(**{name: getattr(self, name) for name in self._HEAD_PARAMS}).validate()

    def augmentation(self) -> AugmentPolicy | None:
        """The :class:`~vitl.augment.AugmentPolicy` used when ``augment > 0``, else None."""
        check_int("augment", self.augment, minimum=0,
                  fix="pass augment=0 (off) or the number of views per image, e.g. 4")
        if not self.augment:
            return None
        policy = self.augment_policy
        if policy is None:
            return AugmentPolicy()
        if isinstance(policy, dict):
            return AugmentPolicy.from_dict(policy)
        if isinstance(policy, AugmentPolicy):
            return policy
        raise ValueError(problem("augment_policy", "None, an AugmentPolicy or its dict",
                                 type(policy).__name__, "pass vitl.augment.AugmentPolicy(...)"))

    def fine_tune_config(self) -> FineTuneConfig | None:
        """The :class:`~vitl.finetune.FineTuneConfig` used when ``fine_tune_blocks > 0``."""
        check_int("fine_tune_blocks", self.fine_tune_blocks, minimum=0,
                  fix="pass fine_tune_blocks=0 (off) or e.g. 2")
        if not self.fine_tune_blocks:
            return None
        blocks = len(get_backbone(self.backbone).block_prefixes)
        if self.fine_tune_blocks > blocks:
            raise ValueError(problem("fine_tune_blocks", f"at most {blocks} (the blocks of "
                                     f"{self.backbone})", self.fine_tune_blocks,
                                     f"pass a number from 1 to {blocks}"))
        return FineTuneConfig(blocks=self.fine_tune_blocks, epochs=self.fine_tune_epochs,
                              learning_rate=self.fine_tune_learning_rate,
                              class_weight=self.class_weight, seed=self.seed).validate()

    def __repr__(self) -> str:
        defaults = ImageClassifier().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if k != "backbone" and v != defaults[k]]
        return f"ImageClassifier({', '.join([repr(self.backbone)] + changed)})"

    # ------------------------------------------------------------------ fit
    def fit(self, train, validation=None) -> ImageClassifier:
        """Featurize (cached) and train the head; optionally augment and fine-tune.

        With ``augment=K`` the head also learns from K augmented views of every
        training image (cached like the originals); with ``fine_tune_blocks=N``
        the top N backbone blocks are then trained with the head on images.

        Args:
            train: an :class:`vitl.data.ImageCollection` or a folder with one
                sub-folder per class.
            validation: the same, for early stopping and the validation log;
                None holds out ``validation_fraction`` of ``train``
                (stratified, by file-name hash seeded by ``seed``).

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: bad arguments or data (the message says how to fix it).
        """
        return self._fit(train, validation)

    def _fit(self, train, validation=None, extractor=None) -> ImageClassifier:
        """``fit``, optionally on a prebuilt frozen ``extractor`` (shared by experiments)."""
        config, policy, tune = self.head_config(), self.augmentation(), self.fine_tune_config()
        validation_given = validation is not None
        train, validation = self._train_and_validation(train, validation)
        classes = list(train.class_names)
        empty = [name for name, n in train.counts().items() if n == 0]
        if empty:
            raise ValueError(problem("training classes", "at least one training image per class",
                                     f"none for {empty} (counts {train.counts()})",
                                     "add images of that class, or drop it from class_names"))
        y_val = _labels_in(validation, classes, "validation")
        if extractor is None:
            extractor = self._build_extractor()
        base = extractor
        head, history, features = self._train_head(extractor, train, train.labels, validation,
                                                   y_val, classes, config, policy)
        fine_tune_history = tune_info = None
        if tune is not None:
            result = fine_tune(extractor, head, train, train.labels, validation, y_val,
                               config=tune, policy=policy, verbose=self.verbose)
            extractor, head, fine_tune_history = result.extractor, result.head, result.history
            tune_info = {**tune.to_dict(), **result.summary()}
        self.classes_ = np.array(classes)
        self.history_ = history
        self.fine_tune_history_ = fine_tune_history
        self.extractor_ = extractor
        self.head_ = head
        self.model_ = _join(extractor, head)
        self.fit_info_ = {
            "backbone": extractor.name,
            "input_size": extractor.input_size,
            "precision": extractor.precision,
            "weights": {"kind": extractor.weights.kind, "path": extractor.weights.path,
                        "sha256": extractor.weights.sha256},
            "fingerprint": extractor.fingerprint,
            "base_fingerprint": base.fingerprint,
            "train_root": str(train.root) if train.root else None,
            "counts": {"train": train.counts(), "validation": validation.counts()},
            "validation_fraction": (None if validation_given
                                    else float(self.validation_fraction)),
            "head": config.to_dict(),
            "features": features,
            "augment": {"views": int(self.augment),
                        "policy": policy.to_dict() if policy else None,
                        "transform_id": policy.transform_id if policy else None},
            "fine_tune": tune_info,
            "continued": [],
            "calibration_paths": [str(p) for p in train.paths[:: max(1, len(train) // 100)]],
        }
        return self

    def continue_training(self, train, validation=None, epochs=None) -> ImageClassifier:
        """Train the head further, starting from its current weights (e.g. when new images arrive).

        Pass the images to learn from, typically the old ones plus the new
        ones; features of images seen before come from the cache. Works on a
        loaded model. The backbone (fine-tuned or not) stays as it is; the
        head is trained with the same settings (``augment`` included), the
        learning-rate schedule starting over, early stopping as in ``fit``.

        Args:
            train: an :class:`~vitl.data.ImageCollection` or a class-folder root,
                with exactly the classes of ``classes_``.
            validation: the same, for early stopping; None holds out
                ``validation_fraction`` of ``train`` as ``fit`` does.
            epochs: maximum epochs for this run; default ``epochs``.

        Returns:
            ``self``, with a new ``head_``, ``model_`` and ``history_``; the
            run is appended to ``fit_info_["continued"]``.

        Raises:
            ValueError: the classes differ from ``classes_``, or bad arguments.
            NotFittedError: the classifier was never fitted nor loaded.
        """
        check_is_fitted(self)
        config, policy = self.head_config(), self.augmentation()
        if epochs is not None:
            config.epochs = check_int("epochs", epochs, minimum=1, fix="pass epochs=20 or None")
        train, validation = self._train_and_validation(train, validation)
        classes = [str(c) for c in self.classes_]
        if set(train.class_names) != set(classes):
            raise ValueError(problem(
                "classes", f"the model's classes {classes}", list(train.class_names),
                "continue training with images of exactly these classes (one folder each); "
                "to add or drop a class train a new model with fit"))
        y_train = _labels_in(train, classes, "train")
        y_val = _labels_in(validation, classes, "validation")
        head, history, features = self._train_head(self.extractor_, train, y_train, validation,
                                                   y_val, classes, config, policy,
                                                   start_from=self.head_.get_weights())
        self.head_ = head
        self.history_ = history
        self.model_ = _join(self.extractor_, head)
        info = dict(self.fit_info_)
        info["continued"] = list(info.get("continued", [])) + [{
            "counts": {"train": train.counts(), "validation": validation.counts()},
            "epochs": config.epochs, "epochs_run": len(history), "features": features}]
        info["calibration_paths"] = [str(p) for p in train.paths[:: max(1, len(train) // 100)]]
        self.fit_info_ = info
        return self

    def _train_and_validation(self, train, validation):
        train = _as_collection(train, "train")
        if validation is None:
            fraction = check_fraction("validation_fraction", self.validation_fraction, 0.0, 0.9)
            parts = split(train, train=1 - fraction, validation=fraction, test=0.0,
                          seed=self.seed)
            return parts.train, parts.validation
        return train, _as_collection(validation, "validation")

    def _train_head(self, extractor, train, y_train, validation, y_val, classes, config, policy,
                    start_from=None):
        """Featurize (train: originals + augmented views; validation: originals), train the head."""
        featurizer = self._featurizer(extractor)
        views = list(range(int(self.augment) + 1)) if policy is not None else [0]
        x_train = featurizer.featurize(train, views=views, transform=policy)
        stats = {"train": _stats(featurizer.last_stats)}
        x_train = x_train.reshape(-1, x_train.shape[-1])
        y_train = np.tile(np.asarray(y_train), len(views))
        x_val = None
        if len(validation):
            x_val = featurizer.featurize(validation)  # view 0 only: never augmented
            stats["validation"] = _stats(featurizer.last_stats)
        callbacks = list(self.callbacks)
        if start_from is not None:
            callbacks.insert(0, _StartFrom(start_from))
        head, history = train_head(
            x_train, y_train, x_val, y_val if x_val is not None else None,
            n_classes=len(classes), config=config, callbacks=callbacks,
            on_epoch=self.on_epoch, verbose=self.verbose,
        )
        stats["train_rows"] = len(x_train)
        return head, history, stats

    # ------------------------------------------------------------------ predict
    def featurize(self, images) -> np.ndarray:
        """Return the backbone features of ``images`` (cached when they are files)."""
        check_is_fitted(self)
        paths, arrays = paths_or_arrays(images)
        if arrays is not None:
            size = self.extractor_.input_size
            batch = np.stack([to_model_image(a, size) for a in arrays]).astype(np.float32)
            return self.extractor_(batch)
        return self._featurizer(self.extractor_).featurize(paths)

    def predict_proba(self, images) -> np.ndarray:
        """Return ``(N, n_classes)`` class probabilities, columns in ``classes_`` order.

        Args:
            images: an image path, a folder (every image below it), a list of
                paths, an :class:`~vitl.data.ImageCollection`, or RGB arrays
                (one ``(H, W, 3)`` image or an ``(N, H, W, 3)`` batch, 0..255).
        """
        check_is_fitted(self)
        return predict_proba(self.head_, self.featurize(images))

    def predict(self, images) -> np.ndarray:
        """Return the predicted class name of each image (see :meth:`predict_proba`)."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(images).argmax(axis=1)]

    def classify(self, images, csv_path=None) -> list[Prediction]:
        """Predict and return one :class:`Prediction` per image; optionally write a CSV.

        The CSV has columns ``path, label, score`` and one ``score_<class>`` per class.
        """
        check_is_fitted(self)
        paths, arrays = paths_or_arrays(images)
        proba = self.predict_proba(images if arrays is not None else paths)
        names = [str(p) for p in paths] if arrays is None else [None] * len(proba)
        predictions = [
            Prediction(name, str(self.classes_[row.argmax()]), float(row.max()),
                       {str(c): float(s) for c, s in zip(self.classes_, row)})
            for name, row in zip(names, proba)
        ]
        if csv_path is not None:
            write_predictions_csv(predictions, csv_path, list(self.classes_))
        return predictions

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, test, positive_class=None) -> EvaluationReport:
        """Score a labelled collection and return an :class:`~vitl.evaluation.EvaluationReport`.

        Args:
            test: an :class:`~vitl.data.ImageCollection` or a class-folder root;
                its class names must be among ``classes_`` (a subset is fine).
            positive_class: the defect class for ROC/PR and thresholds (two
                classes); default the first class (``CD`` in the tutorial).
        """
        check_is_fitted(self)
        test = _as_collection(test, "test")
        y_true = _labels_in(test, list(self.classes_), "test")
        proba = self.predict_proba(test)
        return EvaluationReport.from_predictions(y_true, proba, list(self.classes_),
                                                 paths=[str(p) for p in test.paths],
                                                 positive_class=positive_class)

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> Path:
        """Save backbone, head, labels and preprocessing in one ``.keras`` file.

        The file is a normal Keras archive (``keras.saving.load_model`` opens
        it) with vitl's metadata (labels, backbone, weights fingerprint,
        history) as an extra ``vitl.json`` member. Written atomically.

        Returns:
            The path written.
        """
        check_is_fitted(self)
        path = Path(path)
        if path.suffix != ".keras":
            raise ValueError(problem("path", "a file name ending in .keras", str(path),
                                     f"use {path.with_suffix('.keras').name}"))
        metadata = {
            "format": SAVE_FORMAT, "vitl_version": __version__,
            "preprocessing_version": PREPROCESSING_VERSION,
            "classes": [str(c) for c in self.classes_],
            "params": self._saved_params(),
            "fit_info": self.fit_info_,
            "history": self.history_.to_dict(),
            "fine_tune_history": (self.fine_tune_history_.to_dict()
                                  if getattr(self, "fine_tune_history_", None) else None),
        }
        with atomic_path(path, suffix=".keras") as tmp:  # Keras wants the .keras suffix
            self.model_.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(_METADATA, json.dumps(metadata, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path, *, cache="default", verbose=True) -> ImageClassifier:
        """Load a classifier saved with :meth:`save`; it predicts exactly as before.

        Raises:
            ValueError: the file is not a vitl model or comes from another format version.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "model.keras"
        if not path.is_file():
            raise FileNotFoundError(problem("model file", "a .keras file saved by vitl",
                                            str(path), "train one with `vitl train` or "
                                            "ImageClassifier.fit(...).save(path)"))
        metadata = read_metadata(path)
        _check_archive(path)
        try:
            model = keras.saving.load_model(path, compile=False)
        except (zipfile.BadZipFile, KeyError, EOFError, OSError) as err:
            raise ValueError(problem("model file", "a .keras file saved by vitl",
                                     f"{path} (unreadable: {type(err).__name__}: {err})",
                                     "retrain, or restore the file from a backup")) from None
        outputs = model.output_shape[-1] if hasattr(model, "output_shape") else None
        if outputs != len(metadata["classes"]):
            raise ValueError(problem("model file", f"vitl.json classes matching the model's "
                                     f"{outputs} outputs", f"{len(metadata['classes'])} classes "
                                     f"{metadata['classes']} in {path}",
                                     "retrain; the file was edited or mixed from two models"))
        known = set(inspect.signature(cls.__init__).parameters)
        params = {k: v for k, v in metadata["params"].items() if k in known}
        if isinstance(params.get("augment_policy"), dict):
            params["augment_policy"] = AugmentPolicy.from_dict(params["augment_policy"])
        clf = cls(**dict(params, cache=cache, verbose=verbose))
        info = metadata["fit_info"]
        spec = get_backbone(info["backbone"])
        extractor_model = next(layer for layer in model.layers if layer.name.endswith("_features"))
        weights = WeightsSource(kind="saved-model", path=str(path),
                                sha256=info["weights"]["sha256"])
        clf.extractor_ = FeatureExtractor(spec, extractor_model, info["input_size"], weights,
                                          info["precision"])
        clf.head_ = model.get_layer("head")
        clf.model_ = model
        clf.classes_ = np.array(metadata["classes"])
        clf.history_ = TrainingHistory.from_dict(metadata["history"])
        tuned = metadata.get("fine_tune_history")
        clf.fine_tune_history_ = TrainingHistory.from_dict(tuned) if tuned else None
        clf.fit_info_ = info
        return clf

    # ------------------------------------------------------------------ export
    def export(self, directory, format="savedmodel", quantize=None, representative=None) -> Path:
        """Export for serving or the edge: a SavedModel or a TFLite file, plus ``labels.txt``.

        Args:
            directory: output folder (created).
            format: ``"savedmodel"`` (the counterpart of ML.NET's ``.pb``) or ``"tflite"``.
            quantize: TFLite only: None (float32), ``"float16"`` or ``"int8"``.
            representative: int8 only: images to calibrate with (paths, a folder
                or a collection); default a sample of the training images.

        Returns:
            The exported SavedModel folder or ``.tflite`` file.
        """
        from .export import export_model

        check_is_fitted(self)
        if representative is None:
            representative = [p for p in self.fit_info_.get("calibration_paths", [])
                              if Path(p).is_file()]
        else:
            representative, arrays = paths_or_arrays(representative)
            if arrays is not None:
                raise ValueError(problem("representative", "image paths, a folder or a collection",
                                         "pixel arrays", "save the images and pass their paths"))
        return export_model(self.model_, list(self.classes_), directory, format=format,
                            quantize=quantize, representative=representative)

    # ------------------------------------------------------------------ helpers
    def _build_extractor(self) -> FeatureExtractor:
        if self.weights is None:  # random weights: seeded, so runs repeat (and hit the cache)
            keras.utils.set_random_seed(self.seed)
        return build_feature_extractor(self.backbone, weights=self.weights,
                                       input_size=self.input_size, precision=self.precision)

    def _saved_params(self) -> dict:
        params = {k: v for k, v in self.get_params().items() if k not in ("callbacks", "on_epoch")}
        if isinstance(params.get("augment_policy"), AugmentPolicy):
            params["augment_policy"] = params["augment_policy"].to_dict()
        return params

    def _featurizer(self, extractor) -> Featurizer:
        return Featurizer(extractor, cache=self.cache,
                          progress=bool(self.verbose))


class _StartFrom(keras.callbacks.Callback):
    """Set the freshly built head to given weights before its first epoch (warm start)."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def on_train_begin(self, logs=None):
        self.model.set_weights(self.weights)


def _stats(stats) -> dict:
    return {"rows": stats.images, "hits": stats.hits, "computed": stats.computed}


def read_metadata(path) -> dict:
    """Return the ``vitl.json`` metadata of a saved ``.keras`` model.

    Raises:
        ValueError: not a vitl model, or saved by an incompatible format version.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read(_METADATA))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error) as err:
        raise ValueError(problem("model file", "a .keras file saved by vitl (with vitl.json)",
                                 f"{path} ({err})", "retrain with this vitl version")) from None
    if not isinstance(metadata, dict):
        raise ValueError(problem("model file's vitl.json", "a JSON object",  # noqa: TRY004
                                 f"a JSON {type(metadata).__name__} in {path}",
                                 "retrain; the file was edited or damaged"))
    if metadata.get("format") != SAVE_FORMAT:
        raise ValueError(problem("model format", f"version {SAVE_FORMAT}",
                                 f"version {metadata.get('format')} "
                                 f"(vitl {metadata.get('vitl_version')})",
                                 "retrain the model with this vitl version, or install the "
                                 "vitl version that saved it"))
    _check_metadata(metadata, path)
    return metadata


#: vitl.json keys ``load`` needs, with their JSON types.
_REQUIRED = {"classes": list, "params": dict, "fit_info": dict, "history": dict}
_REQUIRED_FIT_INFO = {"backbone": str, "input_size": int, "precision": str, "weights": dict}


def _check_metadata(metadata: dict, path) -> None:
    """Raise a one-line ValueError unless ``metadata`` has what :meth:`ImageClassifier.load` reads."""
    wrong = [k for k, kind in _REQUIRED.items() if not isinstance(metadata.get(k), kind)]
    info = metadata.get("fit_info")
    if isinstance(info, dict):
        wrong += [f"fit_info.{k}" for k, kind in _REQUIRED_FIT_INFO.items()
                  if not isinstance(info.get(k), kind)]
    classes = metadata.get("classes")
    if isinstance(classes, list) and (len(classes) < 2 or len(set(map(str, classes))) != len(classes)
                                      or not all(isinstance(c, str) and c for c in classes)):
        wrong.append("classes (two or more distinct names)")
    if wrong:
        raise ValueError(problem("model file's vitl.json", "the keys a vitl model is saved with",
                                 f"missing or wrong: {', '.join(wrong)} in {path}",
                                 "retrain; the file was edited or damaged"))


def _check_archive(path) -> None:
    """Raise a one-line ValueError when a member of the ``.keras`` zip fails its CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        bad = f"({type(err).__name__}: {err})"
    if bad:
        raise ValueError(problem("model file", "an intact .keras zip",
                                 f"{path} with a damaged member {bad}",
                                 "restore the file from a backup, or retrain"))


def write_predictions_csv(predictions, csv_path, classes) -> Path:
    """Write predictions as CSV: ``path, label, score, score_<class>...``."""
    csv_path = Path(csv_path)
    # surrogateescape: a file name that is not UTF-8 is written as its own bytes.
    with atomic_path(csv_path, suffix=".csv") as tmp, \
            open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "score"] + [f"score_{c}" for c in classes])
        for p in predictions:
            writer.writerow([p.path, p.label, f"{p.score:.6f}"]
                            + [f"{p.scores[c]:.6f}" for c in classes])
    return csv_path


def _join(extractor: FeatureExtractor, head: keras.Model) -> keras.Model:
    """One model: image (0..255) -> preprocessing -> backbone -> pool -> head -> probabilities."""
    inputs = keras.Input((extractor.input_size, extractor.input_size, 3), name="image")
    outputs = head(extractor.model(inputs))
    return keras.Model(inputs, outputs, name="vitl_classifier")


def _as_collection(images, name: str) -> ImageCollection:
    if isinstance(images, ImageCollection):
        if len(images) == 0:
            raise ValueError(problem(name, "at least one image", "an empty collection",
                                     "check the split fractions or the folder"))
        return images
    if isinstance(images, (str, Path)):
        return load_image_folder(images, verbose=0)
    raise ValueError(problem(name, "an ImageCollection or a folder with one sub-folder per class",
                             type(images).__name__, "use vitl.load_image_folder(path)"))


def _labels_in(collection: ImageCollection, classes: list[str], name: str) -> np.ndarray:
    """The collection's labels as indices into ``classes`` (matched by name)."""
    unknown = sorted(set(collection.class_names) - set(classes))
    if unknown:
        raise ValueError(problem(f"{name} classes", f"names among {classes}", unknown,
                                 "use folders named like the training classes"))
    index = np.array([classes.index(c) for c in collection.class_names])
    return index[collection.labels]


__all__ = ["ImageClassifier", "NotFittedError", "Prediction", "read_metadata",
           "write_predictions_csv"]
