"""vitl: visual inspection by transfer learning.

Folders of photos in (one sub-folder per class), a trained, evaluated, exported
image classifier out. The whole public API is listed below; names load lazily,
so ``import vitl`` is instant and TensorFlow loads on first use of a model.

Example:
    >>> import vitl
    >>> vitl.list_backbones()[0]
    'resnet101v2'
"""

from __future__ import annotations

import importlib

from ._tensorflow import quiet_tensorflow_import

# TensorFlow's C++ start-up notices (oneDNN, CPU features) mean nothing to a tutorial reader.
quiet_tensorflow_import()

__version__ = "0.1.0"

_API = {
    # data: image folders, bad-file report, the tutorial's split
    "load_image_folder": "data", "ImageCollection": "data", "read_image": "data",
    "list_images": "data", "split": "data", "tutorial_split": "data",
    # datasets: the tutorial's SDNET2018 sample, synthetic cracks
    "tutorial_data": "datasets", "sdnet2018_decks": "datasets",
    "make_synthetic_cracks": "datasets", "synthetic_mask_path": "datasets",
    "SDNET2018_ATTRIBUTION": "datasets",
    # backbones: frozen ImageNet feature extractors
    "list_backbones": "backbones", "get_backbone": "backbones",
    "choose_backbone": "backbones", "build_feature_extractor": "backbones",
    # bottleneck phase: cached features
    "featurize": "features", "Featurizer": "features", "FeatureCache": "features",
    "featurize_folder": "features",
    # training phase, the estimator, evaluation
    "HeadConfig": "training", "ImageClassifier": "classifier",
    "EvaluationReport": "evaluation",
    # pictures
    "plot_history": "plots", "plot_confusion_matrix": "plots", "plot_roc_pr": "plots",
    "plot_confidently_wrong": "plots", "plot_image_grid": "plots", "plot_images": "plots",
    # where the model looks
    "grad_cam": "explain", "explain": "explain", "plot_explanations": "explain",
    # improving the model
    "AugmentPolicy": "augment", "plot_views": "augment", "run_grid": "experiments",
    # the teaching notebooks: seed, fast mode for tests, caption credit
    "workshop_settings": "workshop", "image_credit": "workshop",
}

__all__ = sorted(_API)  # noqa: PLE0605 - the lazy API table is the one list of names


def __getattr__(name: str):
    if name in _API:
        module_name = _API[name]
        module = importlib.import_module(f"vitl.{module_name}")
        if _API.get(module_name) == module_name:  # the import set vitl.explain to the module:
            globals()[module_name] = getattr(module, module_name)  # make it the function again
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vitl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
