"""vitl: visual inspection by transfer learning.

Photo folders in, a trained, evaluated, exported image classifier out. The imports below are
the public API; they load lazily, so ``import vitl`` is instant (TensorFlow loads on first use).

Example:
    >>> import vitl
    >>> vitl.list_backbones()[0], vitl.HeadConfig().optimizer
    ('resnet101v2', 'adam')
"""

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ._tensorflow import quiet_tensorflow_import

quiet_tensorflow_import()  # TensorFlow's C++ start-up notices mean nothing to a reader

__version__ = "0.1.0"

if TYPE_CHECKING:  # IDEs see these; at run time each name loads on first use (__getattr__)
    from .data import (BadImageError, DataSummary, ImageCollection, LoadReport, Split,
                       list_images, load_image_folder, read_image, split, tutorial_split)
    from .datasets import (SDNET2018_ATTRIBUTION, make_synthetic_cracks, sdnet2018_decks,
                           synthetic_mask_path, tutorial_data)
    from .backbones import (BackboneChoice, BackboneSpec, FeatureExtractor, WeightsSource,
                            build_feature_extractor, choose_backbone, get_backbone,
                            list_backbones)
    from .features import (CacheInfo, FeatureCache, FeatureStats, Featurizer, FolderStats,
                           featurize, featurize_folder)
    from .augment import AugmentPolicy, plot_views
    from .training import HeadConfig, TrainingHistory
    from .evaluation import EvaluationReport, Mistake, ThresholdChoice
    from .finetune import FineTuneConfig
    from .classifier import ImageClassifier, Prediction
    from .experiments import ExperimentResults, run_grid
    from .plots import (plot_confidently_wrong, plot_confusion_matrix, plot_history,
                        plot_image_grid, plot_images, plot_roc_pr)
    from .explain import Explanation, explain, grad_cam, plot_explanations
    from .workshop import WorkshopSettings, image_credit, workshop_settings


def _api() -> dict[str, str]:
    """Name -> module, read from the TYPE_CHECKING imports above: the one list of names."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If))
    return {alias.name: node.module for node in block.body for alias in node.names}


_MODULE_OF = _api()
__all__ = sorted(_MODULE_OF)  # noqa: PLE0605 - read from the TYPE_CHECKING block


def __getattr__(name: str):
    if name in _MODULE_OF:
        module_name = _MODULE_OF[name]
        module = importlib.import_module(f"vitl.{module_name}")
        if _MODULE_OF.get(module_name) == module_name:  # importing vitl.explain set the
            globals()[module_name] = getattr(module, module_name)  # module: restore the function
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vitl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
