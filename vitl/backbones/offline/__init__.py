"""Offline ImageNet weights: torchvision's MobileNetV2 (``mobilenetv2-tv``) read without torch.

- :mod:`~vitl.backbones.offline.torch_pickle`: a restricted unpickler for legacy ``.pth`` files;
- :mod:`~vitl.backbones.offline.mobilenetv2_tv`: the network in Keras, the pinned ``.pth``
  and the weight mapping.
"""
