"""Offline ImageNet weights: torchvision's MobileNetV2 (``mobilenetv2-tv``) read without torch.

Imported only when ``mobilenetv2-tv`` weights are converted or loaded.

- :mod:`~vitl.backbones.offline.torch_pickle`: a restricted unpickler for legacy ``.pth`` files;
- :mod:`~vitl.backbones.offline.mobilenetv2_tv`: the network in Keras, the weight mapping and
  the converted-weights cache.
"""

from .mobilenetv2_tv import (
    CONVERTED_NAME,
    PACKAGE_PIN,
    OfflineWeightsError,
    build_mobilenetv2_tv,
    converted_weights_file,
    package_weights_path,
    record_sha256,
)

__all__ = ["CONVERTED_NAME", "PACKAGE_PIN", "OfflineWeightsError", "build_mobilenetv2_tv",
           "converted_weights_file", "package_weights_path", "record_sha256"]
