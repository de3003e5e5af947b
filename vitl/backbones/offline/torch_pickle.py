"""Read a PyTorch *legacy* (pre-zip) ``.pth`` state dict into numpy, without torch.

The legacy file is a sequence of pickles: magic number, protocol version,
system info, the state dict itself (tensors refer to storages through
``persistent_load``), the list of storage keys, then for each key an int64
element count followed by the raw little-endian data.

Only the few globals a plain state dict needs are allowed; any other global
(``os.system``, ``builtins.eval``, ...) makes :class:`RestrictedUnpickler`
raise :class:`pickle.UnpicklingError`, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct

import numpy as np

from ..._errors import problem

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage class name -> numpy dtype of its little-endian data.
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
                  "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
                  "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}


def _rebuild_tensor_v2(storage, offset, size, stride, *_ignored):
    """Stand-in for torch's: ``(storage key, offset, size, stride)``; the bytes come later."""
    return storage, offset, tuple(size), tuple(stride)


#: The only globals a state dict may name, and what stands in for them.
_ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            **{("torch", name): np.dtype(dtype) for name, dtype in STORAGE_DTYPES.items()}}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for torch legacy state dicts that refuses every other global.

    Storages are returned by key; their dtypes are collected in ``self.storages``.

    Example:
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": 1}))).load()
        {'a': 1}
        >>> RestrictedUnpickler(io.BytesIO(b"cos\\nsystem\\n(S'echo hi'\\ntR.")).load()
        Traceback (most recent call last):
        ...
        _pickle.UnpicklingError: refusing global 'os.system' in a weights file: only torch ...
    """

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str):
        """Return the stand-in for an allowed global; raise for any other.

        Args:
            module: the global's module.
            name: the global's name.

        Returns:
            ``OrderedDict``, a tensor-rebuilding function, or a storage's numpy dtype.

        Raises:
            pickle.UnpicklingError: any other global.

        Example:
            >>> RestrictedUnpickler(io.BytesIO()).find_class("torch", "FloatStorage")
            dtype('float32')
        """
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing global '{module}.{name}' in a weights file: "
                                         "only torch tensors, storages and OrderedDict are allowed")
        return _ALLOWED[module, name]

    def persistent_load(self, pid):
        """Record a storage ``("storage", dtype, key, location, size, view)``; return its key.

        Args:
            pid: the persistent id torch wrote for the storage.

        Returns:
            The storage key.

        Example:
            >>> unpickler = RestrictedUnpickler(io.BytesIO())
            >>> unpickler.persistent_load(("storage", np.dtype("<f4"), "0", "cpu", 4, None))
            '0'
        """
        _, dtype, key, _location, _size, *_view = pid
        self.storages[key] = dtype
        return key


def load_legacy_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Decode a legacy ``torch.save`` state dict to ``{name: numpy array}``.

    Args:
        data: the whole file's bytes.

    Returns:
        A dict (in the file's order) of tensor name to numpy array.

    Raises:
        pickle.UnpicklingError: the file references anything but tensors.
        ValueError: not a legacy torch file.

    Example:
        >>> from vitl.backbones.offline.mobilenetv2_tv import package_weights_path
        >>> state = load_legacy_state_dict(package_weights_path().read_bytes())
        >>> state["features.0.0.weight"].shape
        (32, 3, 3, 3)
    """
    stream = io.BytesIO(data)
    header = [RestrictedUnpickler(stream).load() for _ in range(3)]  # magic, protocol, sys info
    if header[:2] != [MAGIC_NUMBER, PROTOCOL_VERSION]:
        raise ValueError(problem("weights file", "a legacy torch .pth (magic number, protocol)",
                                 header[:2], "pass torchvision's legacy mobilenet_v2 .pth"))
    unpickler = RestrictedUnpickler(stream)
    state = unpickler.load()
    arrays = {}
    for key in RestrictedUnpickler(stream).load():
        dtype = unpickler.storages[key]
        (count,) = struct.unpack("<q", stream.read(8))
        arrays[key] = np.frombuffer(stream.read(count * dtype.itemsize), dtype)
    # np.ndarray refuses an offset, shape or strides that reach outside the storage's buffer.
    return {name: np.ndarray(size, arrays[key].dtype, arrays[key], offset * arrays[key].itemsize,
                             [step * arrays[key].itemsize for step in stride])
            for name, (key, offset, size, stride) in state.items()}
