"""Read old-style (non-zip) ``torch.save`` storage streams without torch.

DECA's ``landmark_embedding.npy`` pickles torch tensors as
``torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(STREAM), offset, size, stride,
requires_grad, hooks)``. ``STREAM`` is a legacy ``torch.save`` of one storage:

1. pickled magic number ``0x1950a86a20f9469cfc6c``, pickled protocol version ``1001``, pickled
   sys-info dict;
2. the pickled storage, a persistent id ``('storage', <torch.XStorage>, key, location, numel,
   view_metadata)``;
3. the pickled list of storage keys, then per key an int64 little-endian element count and the
   raw little-endian elements.

Everything is unpickled with :class:`~.safe_pickle.RestrictedUnpickler`; the storage type
globals (``torch.LongStorage``...) resolve to markers that only carry a numpy dtype.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


class StorageType:
    """Marker for a ``torch.XStorage`` global: the numpy dtype of its elements."""

    def __init__(self, name: str, dtype: np.dtype) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        return f"StorageType(torch.{self.name}, {self.dtype})"


STORAGE_TYPES: dict[tuple[str, str], StorageType] = {
    ("torch", name): StorageType(name, dtype)
    for name, dtype in {
        "DoubleStorage": np.float64,
        "FloatStorage": np.float32,
        "HalfStorage": np.float16,
        "LongStorage": np.int64,
        "IntStorage": np.int32,
        "ShortStorage": np.int16,
        "CharStorage": np.int8,
        "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }.items()
}


def load_storage_from_bytes(data: Any, path: str | Path | None = None) -> np.ndarray:
    """Parse a legacy ``torch.save`` stream of one storage into a 1-D numpy array ``(numel,)``.

    Raises ``pickle.UnpicklingError`` (or ``UnsafePickleError``) when the stream is not one.
    """
    from .safe_pickle import RestrictedUnpickler

    if isinstance(data, str):  # a Python 2 str read with latin1
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(
            f"torch storage bytes are a {type(data).__name__}, expected bytes"
        )
    stream = io.BytesIO(bytes(data))
    if stream.getvalue()[:2] == b"PK":
        raise pickle.UnpicklingError(
            "torch storage is a zip-format torch.save stream; only the legacy format is supported"
        )

    magic = RestrictedUnpickler(stream, path).load()
    if magic != MAGIC_NUMBER:
        raise pickle.UnpicklingError(
            f"torch storage stream starts with {magic!r}, expected the legacy torch.save magic "
            f"number {MAGIC_NUMBER:#x}"
        )
    protocol = RestrictedUnpickler(stream, path).load()
    if protocol != PROTOCOL_VERSION:
        raise pickle.UnpicklingError(
            f"torch storage stream has protocol {protocol!r}, expected {PROTOCOL_VERSION}"
        )
    sys_info = RestrictedUnpickler(stream, path).load()
    if not isinstance(sys_info, dict):
        raise pickle.UnpicklingError("torch storage stream has no sys-info dict")

    storages: dict[str, np.ndarray] = {}

    def persistent_load(pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in torch stream")
        storage_type, key, _location, numel = pid[1:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"persistent id names {storage_type!r}, not a storage")
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views in torch streams are not supported")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"storage element count {numel!r} is not a count")
        key = str(key)
        if key not in storages:
            storages[key] = np.zeros(numel, dtype=storage_type.dtype)
        return storages[key]

    result = RestrictedUnpickler(
        stream, path, extra_globals=STORAGE_TYPES, persistent_load=persistent_load
    ).load()
    keys = RestrictedUnpickler(stream, path).load()
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("torch storage stream has no storage key list")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise pickle.UnpicklingError(f"torch stream lists storage {key!r} it never used")
        head = stream.read(8)
        if len(head) != 8:
            raise EOFError("torch storage stream ends before a storage size")
        (numel,) = struct.unpack("<q", head)
        if numel != storage.size:
            raise pickle.UnpicklingError(
                f"torch storage {key!r} has {numel} elements, its header said {storage.size}"
            )
        nbytes = numel * storage.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise EOFError("torch storage stream ends inside the storage data")
        # torch writes elements little-endian whatever the machine
        storage[:] = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    if not isinstance(result, np.ndarray):
        raise pickle.UnpicklingError(
            f"torch stream holds a {type(result).__name__}, expected one storage"
        )
    return result


def rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` for numpy: the strided view of ``storage`` copied
    into a new C-contiguous array of shape ``size``."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise pickle.UnpicklingError("_rebuild_tensor_v2 needs a storage (1-D array)")
    try:
        offset = int(storage_offset)
        shape = tuple(int(n) for n in size)
        strides = tuple(int(n) for n in stride)
    except (TypeError, ValueError) as error:
        raise pickle.UnpicklingError(
            f"_rebuild_tensor_v2 arguments are not integers: {error}"
        ) from error
    if len(shape) != len(strides) or offset < 0 or min(shape + strides, default=0) < 0:
        raise pickle.UnpicklingError(
            f"_rebuild_tensor_v2 size {shape} / stride {strides} / offset {offset} are invalid"
        )
    if 0 in shape:
        return np.zeros(shape, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    if last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {shape} stride {strides} offset {offset} reads element {last} "
            f"of a storage of {storage.size}"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=shape,
        strides=tuple(s * storage.itemsize for s in strides),
        writeable=False,
    )
    return np.array(view, order="C")
