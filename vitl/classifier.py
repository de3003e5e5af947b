"""``ImageClassifier``: folders of photos in, a trained, evaluated, saved classifier out.

The two phases of ML.NET's image classification trainer, in Keras:

1. **Bottleneck phase**: every image goes once through the frozen backbone;
   its pooled features land in the shared feature cache (:mod:`vitl.features`).
2. **Training phase**: a small softmax head learns from the cached features
   (:func:`vitl.training.train_head`), epoch by epoch.

Optional improvements (:mod:`vitl.augment`, :mod:`vitl.finetune`): ``augment=K``
adds K cached, deterministic augmented views of every training image to the
head's training set; ``fine_tune=FineTuneConfig(blocks=N)`` then trains the top N
backbone blocks with the head, end to end on images. :meth:`ImageClassifier.continue_training`
resumes the head's training when new images arrive.

The fitted estimator joins backbone and head into one Keras model for
prediction, saving and export.
"""

from __future__ import annotations

import csv
import json
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from . import __version__
from ._errors import check_fraction, check_int, check_verbose, problem
from ._files import atomic_path
from .augment import AugmentPolicy
from .backbones import (
    FeatureExtractor,
    WeightsSource,
    build_feature_extractor,
    choose_backbone,
    get_backbone,
)
from .backbones.registry import PREPROCESSING_VERSION
from .data import ImageCollection, load_image_folder, paths_or_arrays, split
from .evaluation import EvaluationReport
from .features import Featurizer
from .features.pipeline import to_model_image
from .finetune import FineTuneConfig, fine_tune, top_block_layers
from .training import HeadConfig, TrainingHistory, predict_proba, train_head

#: Format version of saved models; a model from another version is refused on load.
SAVE_FORMAT = 1
_METADATA = "vitl.json"  # extra member inside the .keras zip


@dataclass(frozen=True)
class Prediction:
    """One image's prediction: the label, its score and every class's score.

    Example:
        >>> print(Prediction("a.jpg", "cracked", 0.91, {"cracked": 0.91, "intact": 0.09}))
        a.jpg: cracked (0.910)
    """

    path: str | None
    label: str
    score: float
    scores: dict

    def __str__(self) -> str:
        return f"{self.path or '<array>'}: {self.label} ({self.score:.3f})"


class ImageClassifier(BaseEstimator):
    """Transfer-learning image classifier: a frozen ImageNet backbone plus a trained head.

    A scikit-learn estimator: ``__init__`` only stores its arguments, so
    ``sklearn.base.clone``, ``get_params`` and ``set_params`` work. The head's
    training defaults are :class:`vitl.training.HeadConfig`'s, chosen by
    measurement; ML.NET's settings are :meth:`mlnet` (``head=HeadConfig.mlnet()``).

    Args:
        backbone: ``"auto"`` (:func:`vitl.backbones.choose_backbone` at ``fit``:
            ``$VITL_BACKBONE``, else ResNet101 v2 when its ImageNet weights can
            be had, else the offline ``mobilenetv2-tv``), a name from
            :func:`vitl.backbones.list_backbones`, or a built
            :class:`~vitl.backbones.FeatureExtractor` (then ``weights``,
            ``input_size`` and ``precision`` are its own).
        weights: ``"imagenet"``, a weights file, or None (random: plumbing tests only).
        input_size: square input side; default the backbone's own.
        precision: backbone precision: ``"float32"``, ``"bfloat16"``, ``"float16"``.
        head: a :class:`~vitl.training.HeadConfig` (None: ``HeadConfig()``);
            its ``seed`` is replaced by ``seed``.
        augment: K augmented views per training image added to the head's
            training set (0 = off), or an :class:`~vitl.augment.AugmentPolicy`
            (its ``views``). Views are deterministic and cached like originals;
            validation and test images are never augmented.
        fine_tune: None, or a :class:`~vitl.finetune.FineTuneConfig`: after the
            head, train its top ``blocks`` backbone blocks with the head end to
            end on images (kept only when it improves validation); its ``seed``
            is replaced by ``seed``, its class weights are the head's.
        validation_fraction: when ``fit`` gets no validation set, this share
            of ``train`` is held out (stratified, seeded by ``seed``); 0 trains
            on everything and early stopping watches the training metric.
        seed: seeds the hold-out, initialisation, shuffling and fine-tuning:
            the same data and seed give the same split, weights and metrics.
        cache: feature cache: ``"default"``, a folder, or None to disable.
        verbose: 0 silent, 1 progress bars and one-line summaries, 2 also an
            ML.NET-style log line per epoch (True is 1, False is 0).
        callbacks: extra Keras callbacks for the head's training.
        on_epoch: ``on_epoch(epoch, logs)``, called after every head epoch.

    Attributes (after ``fit``):
        classes_: class names, in score-column order.
        history_: :class:`~vitl.training.TrainingHistory` of the head's training.
        fine_tune_history_: :class:`~vitl.training.TrainingHistory` of
            fine-tuning, or None.
        extractor_: the frozen :class:`~vitl.backbones.FeatureExtractor` (after
            fine-tuning: the fine-tuned one, with its own cache identity).
        head_: the trained head (a Keras model on features).
        model_: backbone and head as one Keras model, images (0..255) in,
            probabilities out.
        fit_info_: what ``fit`` saw: backbone (the real name), weights source,
            split counts, feature-cache statistics, augmentation and fine-tuning
            settings and results, and any ``continue_training`` runs.

    Example:
        >>> import tempfile
        >>> from sklearn.base import clone
        >>> from vitl.datasets import make_synthetic_cracks
        >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 6, size=64, verbose=0)
        >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=64,
        ...                       head=HeadConfig(epochs=3), cache=None, verbose=0)
        >>> clf.fit(folder).classes_.tolist()
        ['cracked', 'uncracked']
        >>> clf.predict_proba(folder).shape
        (12, 2)
        >>> clone(clf).set_params(seed=1).get_params()["seed"]
        1
    """

    def __init__(self, backbone="auto", *, weights="imagenet", input_size=None,
                 precision="float32", head=None, augment=0, fine_tune=None,
                 validation_fraction=0.1, seed=0, cache="default", verbose=1, callbacks=(),
                 on_epoch=None):
        # scikit-learn's contract: store every argument as given, nothing more
        for name, value in locals().items():
            if name != "self":
                setattr(self, name, value)

    @classmethod
    def mlnet(cls, backbone="auto", **params) -> ImageClassifier:
        """An ``ImageClassifier`` with ML.NET's head settings: ``head=HeadConfig.mlnet()``.

        What the ML.NET tutorial shows: plain gradient descent at 0.01 decayed by
        0.94 every 2 epochs, batch 10, early stopping on validation accuracy.
        ``vitl train --preset mlnet`` is the same.

        Args:
            backbone: as for the constructor.
            **params: any other constructor argument (a ``head`` given here wins).

        Returns:
            An unfitted :class:`ImageClassifier`.

        Example:
            >>> clf = ImageClassifier.mlnet("mobilenetv2-tv")
            >>> clf.head.optimizer, clf.head.learning_rate, clf.head.batch_size
            ('sgd', 0.01, 10)
        """
        return cls(backbone, **{"head": HeadConfig.mlnet(), **params})

    def build_extractor(self) -> FeatureExtractor:
        """Build the frozen feature extractor ``backbone``, ``weights``, ``input_size`` describe.

        ``"auto"`` is resolved here (its reason printed when ``verbose``); an
        extractor passed as ``backbone`` is returned as is, so several
        classifiers can share one (``clf.set_params(backbone=extractor)``).

        Returns:
            A :class:`~vitl.backbones.FeatureExtractor`.

        Example:
            >>> fx = ImageClassifier("mobilenetv2", weights=None, input_size=32).build_extractor()
            >>> fx.name, fx.input_size
            ('mobilenetv2', 32)
        """
        if isinstance(self.backbone, FeatureExtractor):
            return self.backbone
        backbone = self.backbone
        if backbone == "auto":
            choice = choose_backbone()
            if check_verbose(self.verbose):
                print(choice.reason, flush=True)
            backbone = choice.name
        if self.weights is None:  # random weights: seeded, so runs repeat (and hit the cache)
            keras.utils.set_random_seed(self.seed)
        return build_feature_extractor(backbone, weights=self.weights,
                                       input_size=self.input_size, precision=self.precision)

    def set_params(self, **params) -> ImageClassifier:
        """Set parameters, as scikit-learn's ``set_params``; a setting is replaced whole.

        Args:
            **params: parameter names and values, e.g. ``head=HeadConfig(epochs=5)``.

        Returns:
            ``self``.

        Raises:
            ValueError: an unknown name, or a nested one such as ``head__epochs``: the
                settings are plain configs, not estimators.

        Example:
            >>> ImageClassifier().set_params(head=HeadConfig(epochs=5)).head.epochs
            5
            >>> ImageClassifier().set_params(head__epochs=5)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: head__epochs: expected ImageClassifier's own parameter names ...
        """
        nested = [name for name in params if "__" in name]
        if nested:
            name, _, field = nested[0].partition("__")
            raise ValueError(problem(nested[0], "ImageClassifier's own parameter names (a "
                                     "setting such as head is replaced whole)", nested[0],
                                     f"pass {name}=... whole, e.g. head=dataclasses.replace("
                                     f"clf.head or HeadConfig(), {field}=...)"))
        return super().set_params(**params)

    def _settings(self) -> tuple[HeadConfig, AugmentPolicy | None, FineTuneConfig | None]:
        """The validated head, augmentation and fine-tuning settings, seeded by ``seed``."""
        check_int("seed", self.seed, minimum=0, fix="pass seed=0")
        check_verbose(self.verbose)
        head = _of_type("head", HeadConfig() if self.head is None else self.head, HeadConfig)
        head = replace(head, seed=self.seed).validate()
        policy = self.augment
        if not isinstance(policy, AugmentPolicy):
            policy = AugmentPolicy(views=check_int(
                "augment", policy, minimum=0,
                fix="pass augment=0 (off), a number of views such as 4, or an AugmentPolicy"))
        tune = self.fine_tune
        if tune is not None:
            tune = replace(_of_type("fine_tune", tune, FineTuneConfig), seed=self.seed).validate()
        return head, (policy if policy.views else None), tune

    # ------------------------------------------------------------------ fit
    def fit(self, train, validation=None) -> ImageClassifier:
        """Featurize (cached) and train the head; optionally augment and fine-tune.

        Args:
            train: an :class:`~vitl.data.ImageCollection` or a folder with one
                sub-folder per class.
            validation: the same, for early stopping and the validation log;
                None holds out ``validation_fraction`` of ``train``.

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: bad arguments or data (the message says how to fix it).

        Example:
            >>> ImageClassifier(augment=-1).fit("photos")
            Traceback (most recent call last):
            ...
            ValueError: augment: expected an integer >= 0, received -1. Fix: pass augment=0 (off), a number of views such as 4, or an AugmentPolicy
        """
        config, policy, tune = self._settings()
        fraction = None if validation is not None else self.validation_fraction
        train, validation = self._train_and_validation(train, validation)
        classes = list(train.class_names)
        empty = [name for name, n in train.counts().items() if n == 0]
        if empty:
            raise ValueError(problem("training classes", "at least one training image per class",
                                     f"none for {empty} (counts {train.counts()})",
                                     "add images of that class, or drop it from class_names"))
        y_val = _labels_in(validation, classes, "validation")
        extractor = base = self.build_extractor()
        if tune is not None:
            top_block_layers(extractor, tune.blocks)  # a bad block count fails before any work
        head, history, features = self._train_head(extractor, train, train.labels, validation,
                                                   y_val, classes, config, policy)
        tuned = tune_info = None
        if tune is not None:
            result = fine_tune(extractor, head, train, train.labels, validation, y_val,
                               config=tune, policy=policy, class_weight=config.class_weight,
                               verbose=self.verbose)
            extractor, head, tuned = result.extractor, result.head, result.history
            tune_info = {**tune.to_dict(), **result.summary()}
        # fitted attributes only now: a fit interrupted earlier leaves no half-fitted estimator
        self.fine_tune_history_ = tuned
        self.classes_ = np.array(classes)
        self.extractor_ = extractor
        self.fit_info_ = {
            "backbone": extractor.name,
            **{key: getattr(extractor, key) for key in ("input_size", "precision", "fingerprint")},
            "weights": asdict(extractor.weights),
            "base_fingerprint": base.fingerprint,
            "train_root": str(train.root) if train.root else None,
            "counts": _counts(train, validation),
            "validation_fraction": None if fraction is None else float(fraction),
            "head": config.to_dict(),
            "features": features,
            "augment": {"views": policy.views if policy else 0,
                        "policy": policy.to_dict() if policy else None,
                        "transform_id": policy.transform_id if policy else None},
            "fine_tune": tune_info,
            "continued": [],
        }
        return self._set_head(head, history, train)

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
            epochs: maximum epochs for this run; default ``head.epochs``.

        Returns:
            ``self``, with a new ``head_``, ``model_`` and ``history_``; the
            run is appended to ``fit_info_["continued"]``.

        Raises:
            ValueError: the classes differ from ``classes_``, or bad arguments.
            NotFittedError: the classifier was never fitted nor loaded.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> len(clf.continue_training(folder, epochs=2).fit_info_["continued"])
            1
        """
        check_is_fitted(self)
        config, policy, _ = self._settings()
        if epochs is not None:
            config = replace(config, epochs=check_int("epochs", epochs, minimum=1,
                                                      fix="pass epochs=20 or None"))
        train, validation = self._train_and_validation(train, validation)
        classes = [str(c) for c in self.classes_]
        if set(train.class_names) != set(classes):
            raise ValueError(problem(
                "classes", f"the model's classes {classes}", list(train.class_names),
                "continue training with images of exactly these classes (one folder each); "
                "to add or drop a class train a new model with fit"))
        head, history, features = self._train_head(
            self.extractor_, train, _labels_in(train, classes, "train"), validation,
            _labels_in(validation, classes, "validation"), classes, config, policy,
            start_from=self.head_.get_weights())
        run = {"counts": _counts(train, validation), "epochs": config.epochs,
               "epochs_run": len(history), "features": features}
        self.fit_info_ = {**self.fit_info_, "continued": [*self.fit_info_.get("continued", []), run]}
        return self._set_head(head, history, train)

    def _set_head(self, head, history, train) -> ImageClassifier:
        """Keep a newly trained head: ``head_``, ``history_``, ``model_``; return ``self``."""
        self.head_ = head
        self.history_ = history
        self.model_ = _join(self.extractor_, head)
        # 100 to 199 training paths, evenly spread: the default int8 export calibration set
        self.fit_info_["calibration_paths"] = [str(p) for p in
                                               train.paths[:: max(1, len(train) // 100)]]
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
        featurizer = Featurizer(extractor, cache=self.cache, verbose=self.verbose)
        views = list(range(policy.views + 1)) if policy is not None else [0]
        x_train = featurizer.featurize(train, views=views, transform=policy)
        stats = {"train": _stats(featurizer.last_stats)}
        x_train = x_train.reshape(-1, x_train.shape[-1])
        x_val = None
        if len(validation):
            x_val = featurizer.featurize(validation)  # view 0 only: never augmented
            stats["validation"] = _stats(featurizer.last_stats)
        callbacks = list(self.callbacks)
        if start_from is not None:  # warm start: the fresh head begins with the current weights
            start = keras.callbacks.LambdaCallback(
                on_train_begin=lambda logs: start.model.set_weights(start_from))
            callbacks.insert(0, start)
        head, history = train_head(
            x_train, np.tile(np.asarray(y_train), len(views)), x_val,
            y_val if x_val is not None else None, n_classes=len(classes), config=config,
            callbacks=callbacks, on_epoch=self.on_epoch, verbose=self.verbose)
        stats["train_rows"] = len(x_train)
        return head, history, stats

    # ------------------------------------------------------------------ predict
    def featurize(self, images) -> np.ndarray:
        """Return the backbone features of ``images`` (cached when they are files).

        Args:
            images: as for :meth:`predict_proba`.

        Returns:
            ``(N, feature_dim)`` float32 features.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> clf.featurize(folder).shape
            (6, 1280)
        """
        check_is_fitted(self)
        paths, arrays = paths_or_arrays(images)
        if arrays is not None:
            size = self.extractor_.input_size
            batch = np.stack([to_model_image(_pixels(a), size) for a in arrays])
            batch = batch.astype(np.float32)
            return self.extractor_(batch)
        return Featurizer(self.extractor_, cache=self.cache, verbose=self.verbose).featurize(paths)

    def predict_proba(self, images) -> np.ndarray:
        """Return ``(N, n_classes)`` class probabilities, columns in ``classes_`` order.

        Args:
            images: an image path, a folder (every image below it), a list of
                paths, an :class:`~vitl.data.ImageCollection`, or RGB arrays
                (one ``(H, W, 3)`` image or an ``(N, H, W, 3)`` batch, 0..255).

        Returns:
            ``(N, n_classes)`` float32 probabilities.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> clf.predict_proba(folder).sum(axis=1).round(3).tolist()
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        """
        features = self.featurize(images)  # checks first that the classifier is fitted
        return predict_proba(self.head_, features)

    def predict(self, images) -> np.ndarray:
        """Return the predicted class name of each image.

        Args:
            images: as for :meth:`predict_proba`.

        Returns:
            An array of class names, one per image.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> sorted(set(clf.predict(folder)) - {"cracked", "uncracked"})
            []
        """
        proba = self.predict_proba(images)  # checks first that the classifier is fitted
        return self.classes_[proba.argmax(axis=1)]

    def classify(self, images, csv_path=None) -> list[Prediction]:
        """Predict and return one :class:`Prediction` per image; optionally write a CSV.

        Unlike :meth:`predict`, whose rows must match its input, files that cannot be read
        as images are skipped, each named in a warning; the others are still classified.
        A path that does not exist is an error, as in :meth:`predict`.

        Args:
            images: as for :meth:`predict_proba`.
            csv_path: optional CSV file: ``path, label, score`` and one
                ``score_<class>`` column per class.

        Returns:
            A list of :class:`Prediction`, one per readable image.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> [p.label in ("cracked", "uncracked") for p in clf.classify(folder)][:2]
            [True, True]
        """
        check_is_fitted(self)
        paths, arrays = paths_or_arrays(images)
        if arrays is not None:
            proba = self.predict_proba(arrays)
            names = [None] * len(proba)
        else:
            missing = [path for path in paths if not (path.exists() or path.is_symlink())]
            if missing:  # a typo to fix, not a bad photo to skip (as predict says too)
                raise FileNotFoundError(problem("image file", "an existing file", str(missing[0]),
                                                "check the path or reload the folder"))
            featurizer = Featurizer(self.extractor_, cache=self.cache, verbose=self.verbose)
            features = featurizer.featurize(paths, errors="skip")
            for path, reason in featurizer.last_stats.bad:
                warnings.warn(f"vitl: skipped {path}: {reason}", stacklevel=2)
            readable = ~np.isnan(features).any(axis=1)
            proba = predict_proba(self.head_, features[readable])
            names = [str(p) for p, ok in zip(paths, readable) if ok]
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
                classes); default the one not named like a normal class
                (``Negative``, ``ok``, ``uncracked``, ...), else the first class
                (``CD`` in the tutorial).

        Returns:
            The report.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> clf.evaluate(folder).n
            6
        """
        check_is_fitted(self)
        test = _as_collection(test, "test", min_classes=1)  # photos of one class can be scored
        y_true = _labels_in(test, [str(c) for c in self.classes_], "test")
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

        Args:
            path: a file name ending in ``.keras``.

        Returns:
            The path written.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> clf.save(tempfile.mkdtemp() + "/model.keras").name
            'model.keras'
        """
        check_is_fitted(self)
        path = Path(path)
        if path.suffix != ".keras":
            raise ValueError(problem("path", "a file name ending in .keras", str(path),
                                     f"use {path.with_suffix('.keras').name}"))
        params = {k: v.to_dict() if hasattr(v, "to_dict") else v
                  for k, v in self.get_params(deep=False).items()
                  if k not in ("callbacks", "on_epoch")}
        if isinstance(self.backbone, FeatureExtractor):
            params["backbone"] = self.backbone.name
        tuned = self.fine_tune_history_
        metadata = {
            "format": SAVE_FORMAT, "vitl_version": __version__,
            "preprocessing_version": PREPROCESSING_VERSION,
            "classes": [str(c) for c in self.classes_],
            "params": params,
            "fit_info": self.fit_info_,
            "history": self.history_.to_dict(),
            "fine_tune_history": tuned.to_dict() if tuned is not None else None,
        }
        with atomic_path(path, suffix=".keras") as tmp:  # Keras wants the .keras suffix
            self.model_.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                # numpy numbers (configs accept them) stay numbers, or load reads back text
                archive.writestr(_METADATA, json.dumps(metadata, indent=1, default=lambda v: (
                    v.item() if isinstance(v, np.generic) else str(v))))
        return path

    @classmethod
    def load(cls, path, *, cache="default", verbose=1) -> ImageClassifier:
        """Load a classifier saved with :meth:`save`; it predicts exactly as before.

        Args:
            path: the ``.keras`` file, or a folder holding ``model.keras``.
            cache: the feature cache the loaded classifier uses.
            verbose: as for the constructor.

        Returns:
            A fitted :class:`ImageClassifier`.

        Raises:
            ValueError: the file is not a vitl model or comes from another format version.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> path = clf.save(tempfile.mkdtemp() + "/model.keras")
            >>> ImageClassifier.load(path, cache=None, verbose=0).classes_.tolist()
            ['cracked', 'uncracked']
        """
        path = Path(path)
        if path.is_dir():
            path = path / "model.keras"
        if not path.is_file():
            raise FileNotFoundError(problem("model file", "a .keras file saved by vitl",
                                            str(path), "train one with `vitl train` or "
                                            "ImageClassifier.fit(...).save(path)"))
        metadata = _read_metadata(path)
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
        known = cls._get_param_names()
        params = {k: v for k, v in metadata["params"].items() if k in known}
        for name, config in (("head", HeadConfig), ("augment", AugmentPolicy),
                             ("fine_tune", FineTuneConfig)):
            if isinstance(params.get(name), dict):
                params[name] = config.from_dict(params[name])
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
    def export(self, directory, format="savedmodel", quantize=None, representative=None,
               overwrite=False) -> Path:
        """Export for serving or the edge: a SavedModel or a TFLite file, plus ``labels.txt``.

        Args:
            directory: output folder (created).
            format: ``"savedmodel"`` (the counterpart of ML.NET's ``.pb``) or ``"tflite"``.
            quantize: TFLite only: None (float32), ``"float16"`` or ``"int8"``.
            representative: int8 only: images to calibrate with (paths, a folder
                or a collection); default a sample of the training images.
            overwrite: replace files in ``directory`` that vitl did not write.

        Returns:
            The exported SavedModel folder or ``.tflite`` file.

        Example:
            >>> import tempfile
            >>> from vitl.datasets import make_synthetic_cracks
            >>> folder = make_synthetic_cracks(tempfile.mkdtemp() + "/s", 3, size=32, verbose=0)
            >>> clf = ImageClassifier("mobilenetv2", weights=None, input_size=32, cache=None,
            ...                       head=HeadConfig(epochs=1), verbose=0).fit(folder)
            >>> clf.export(tempfile.mkdtemp() + "/out", format="tflite").suffix
            '.tflite'
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
                            quantize=quantize, representative=representative,
                            verbose=self.verbose, overwrite=overwrite)


def _stats(stats) -> dict:
    return {"rows": stats.images, "hits": stats.hits, "computed": stats.computed}


def _counts(train, validation) -> dict:
    return {"train": train.counts(), "validation": validation.counts()}


def _of_type(name: str, value, kind):
    if not isinstance(value, kind):
        raise ValueError(problem(name, f"a vitl {kind.__name__}", type(value).__name__,  # noqa: TRY004
                                 f"pass {name}={kind.__name__}(...)"))
    return value


#: vitl.json keys ``load`` reads, with their JSON types; then the keys of its fit_info.
_REQUIRED = {"classes": list, "params": dict, "fit_info": dict, "history": dict}
_REQUIRED_FIT_INFO = {"backbone": str, "input_size": int, "precision": str, "weights": dict}


def _read_metadata(path) -> dict:
    """The ``vitl.json`` of a saved model, once every zip member passed its CRC check.

    Raises a one-line ValueError when the zip or a member is damaged, the JSON is
    not an object of this :data:`SAVE_FORMAT`, or a key ``load`` reads is missing
    or of the wrong type (the tables above; classes: two or more distinct names).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            metadata = json.loads(archive.read(_METADATA))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, zlib.error) as err:
        raise ValueError(problem("model file", "a .keras file saved by vitl (with vitl.json)",
                                 f"{path} ({err})", "pass the file ImageClassifier.save or "
                                 "`vitl train` wrote (not an export or another file)")) from None
    if damaged or not isinstance(metadata, dict):
        received = (f"a damaged member {damaged}" if damaged
                    else f"a JSON {type(metadata).__name__} as vitl.json")
        raise ValueError(problem("model file", "an intact .keras zip with a JSON object as "
                                 "vitl.json", f"{path} with {received}",
                                 "restore the file from a backup, or retrain"))
    if metadata.get("format") != SAVE_FORMAT:
        raise ValueError(problem("model format", f"version {SAVE_FORMAT}",
                                 f"version {metadata.get('format')} "
                                 f"(vitl {metadata.get('vitl_version')})",
                                 "retrain the model with this vitl version, or install the "
                                 "vitl version that saved it"))
    info = metadata.get("fit_info") if isinstance(metadata.get("fit_info"), dict) else {}
    wrong = [key for key, kind in _REQUIRED.items() if not isinstance(metadata.get(key), kind)]
    wrong += [f"fit_info.{key}" for key, kind in _REQUIRED_FIT_INFO.items()
              if not isinstance(info.get(key), kind)]
    classes = metadata.get("classes")
    if isinstance(classes, list) and (len(classes) < 2 or len(set(map(str, classes))) != len(classes)
                                      or not all(isinstance(c, str) and c for c in classes)):
        wrong.append("classes (two or more distinct names)")
    if wrong:
        raise ValueError(problem("model file's vitl.json", "the keys a vitl model is saved with",
                                 f"missing or wrong: {', '.join(wrong)} in {path}",
                                 "retrain; the file was edited or damaged"))
    return metadata


def write_predictions_csv(predictions, csv_path, classes) -> Path:
    """Write predictions as CSV: ``path, label, score, score_<class>...``.

    Args:
        predictions: :class:`Prediction` objects.
        csv_path: the file to write (atomically).
        classes: class names, for the score columns.

    Returns:
        ``csv_path`` as a Path.

    Example:
        >>> import tempfile
        >>> p = Prediction("a.jpg", "cracked", 0.9, {"cracked": 0.9, "intact": 0.1})
        >>> path = write_predictions_csv([p], tempfile.mkdtemp() + "/p.csv", ["cracked", "intact"])
        >>> path.read_text().splitlines()[1]
        'a.jpg,cracked,0.900000,0.900000,0.100000'
    """
    csv_path = Path(csv_path)
    # The csv module, not pandas: pandas 3 stores text as Arrow strings, which refuse file
    # names that are not UTF-8; surrogateescape writes such a name as its own bytes.
    with atomic_path(csv_path, suffix=".csv") as tmp, \
            open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle, lineterminator="\n")
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


def _as_collection(images, name: str, min_classes: int = 2) -> ImageCollection:
    if isinstance(images, (str, Path)):
        return load_image_folder(images, verbose=0, min_classes=min_classes)
    if isinstance(images, ImageCollection) and len(images):
        return images
    expected = "an ImageCollection with images, or a folder with one sub-folder per class"
    if isinstance(images, ImageCollection):
        raise ValueError(problem(name, expected, "an empty collection",  # noqa: TRY004
                                 "use vitl.load_image_folder(path); check the split fractions"))
    shape = getattr(images, "shape", None)  # sklearn-style pixel arrays: labels come from folders
    raise ValueError(problem(name, expected, f"a numpy array of shape {shape}" if shape else
                             type(images).__name__, "save the images in one sub-folder per class "
                             "and pass that folder (features are cached per image file)"))


def _pixels(image) -> np.ndarray:
    """``image`` if it is RGB in 0..255; a one-line error for the usual slips."""
    image = np.asarray(image)
    expected = "RGB pixels 0..255, (H, W, 3) per image"
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(problem("images", expected, f"an array of shape {image.shape}",
                                 "grey: np.repeat(image[..., None], 3, axis=-1); RGBA: "
                                 "image[..., :3]"))
    if image.dtype.kind == "f" and 0 < image.max() <= 1:  # would read as an almost black photo
        raise ValueError(problem("images", expected, "floats in 0..1",
                                 "multiply by 255 (the backbone's preprocessing is built in)"))
    return image


def _labels_in(collection: ImageCollection, classes: list[str], name: str) -> np.ndarray:
    """The collection's labels as indices into ``classes`` (matched by name)."""
    unknown = sorted(set(collection.class_names) - set(classes))
    if unknown:
        raise ValueError(problem(f"{name} classes", f"names among {classes}", unknown,
                                 "use folders named like the training classes"))
    index = np.array([classes.index(c) for c in collection.class_names])
    return index[collection.labels]


__all__ = ["ImageClassifier", "Prediction", "write_predictions_csv"]
