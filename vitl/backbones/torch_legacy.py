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
from dataclasses import dataclass

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage class name -> numpy dtype of its little-endian data.
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: only its name (the dtype) matters."""

    name: str


@dataclass(frozen=True)
class _StorageRef:
    key: str
    offset: int  # elements, non-zero only for legacy storage views


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes come after the main pickle."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for torch legacy state dicts that refuses every other global.

    Example:
        >>> import io, pickle
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": 1}))).load()
        {'a': 1}
        >>> RestrictedUnpickler(io.BytesIO(b"cos\\nsystem\\n(S'echo hi'\\ntR.")).load()
        Traceback (most recent call last):
        ...
        _pickle.UnpicklingError: refusing global 'os.system' in a weights file: only torch ...
    """

    def __init__(self, file, storages: dict | None = None):
        super().__init__(file)
        self.storages = {} if storages is None else storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing global '{module}.{name}' in a weights file: "
            "only torch tensors, storages and OrderedDict are allowed"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a weights file")
        _, storage_type, key, _location, size, *view = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage {key!r} has no torch storage type")
        self.storages.setdefault(str(key), (storage_type.name, int(size)))
        if view and view[0] is not None:  # (view_key, offset, view_size) of very old files
            return _StorageRef(str(key), int(view[0][1]) if isinstance(view[0], tuple) else 0)
        return _StorageRef(str(key), 0)


def _materialise(ref: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    flat = data[ref.storage.key]
    start = ref.storage.offset + ref.offset
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, dtype=flat.dtype)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if start < 0 or last >= flat.size or any(s < 0 for s in ref.stride):
        raise ValueError(f"tensor reaches outside its storage {ref.storage.key!r}: corrupted file")
    strides = tuple(s * flat.itemsize for s in ref.stride)
    return np.lib.stride_tricks.as_strided(flat[start:], ref.size, strides).copy()


def load_legacy_state_dict(data: bytes) -> collections.OrderedDict[str, np.ndarray]:
    """Decode a legacy ``torch.save`` state dict to ``{name: numpy array}``.

    Args:
        data: the whole file's bytes.

    Returns:
        An ordered dict of tensor name to a C-contiguous numpy array.

    Raises:
        pickle.UnpicklingError: the file references anything but tensors.
        ValueError: not a legacy torch file, or truncated / inconsistent.
    """
    if data[:4] == b"PK\x03\x04":
        raise ValueError("this is a zip-format torch file; only the legacy format is supported")
    stream = io.BytesIO(data)
    try:
        magic = RestrictedUnpickler(stream).load()
        version = RestrictedUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"not a legacy torch file ({err})") from err
    if magic != MAGIC_NUMBER or version != PROTOCOL_VERSION:
        raise ValueError(f"not a legacy torch file (magic {magic!r}, protocol {version!r})")
    sys_info = RestrictedUnpickler(stream).load()
    if not sys_info.get("little_endian", True):
        raise ValueError("big-endian torch files are not supported")

    storages: dict[str, tuple[str, int]] = {}
    state = RestrictedUnpickler(stream, storages).load()
    keys = RestrictedUnpickler(stream).load()
    if not isinstance(state, dict) or sorted(map(str, keys)) != sorted(storages):
        raise ValueError("inconsistent torch file: storage list does not match the tensors")

    arrays: dict[str, np.ndarray] = {}
    for key in map(str, keys):
        type_name, size = storages[key]
        dtype = np.dtype(STORAGE_DTYPES[type_name])
        header = stream.read(8)
        if len(header) != 8:
            raise ValueError(f"truncated torch file: storage {key!r} is missing")
        (count,) = struct.unpack("<q", header)
        raw = stream.read(count * dtype.itemsize)
        if count != size or len(raw) != count * dtype.itemsize:
            raise ValueError(f"truncated or inconsistent torch file at storage {key!r}")
        arrays[key] = np.frombuffer(raw, dtype=dtype)

    out = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            kind = type(value).__name__  # ValueError, like every other "not a state dict"
            raise ValueError(f"entry {name!r} is not a tensor ({kind})")  # noqa: TRY004
        out[name] = _materialise(value, arrays)
    return out
