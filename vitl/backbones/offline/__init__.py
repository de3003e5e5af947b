"""Offline ImageNet weights: torchvision's MobileNetV2 (``mobilenetv2-tv``) read without torch.

Imported only when ``mobilenetv2-tv`` weights are converted or loaded.

- :mod:`~vitl.backbones.offline.torch_pickle`: a restricted unpickler for legacy ``.pth`` files;
- :mod:`~vitl.backbones.offline.mobilenetv2_tv`: the network in Keras, the weight mapping and
  the converted-weights cache.
"""
