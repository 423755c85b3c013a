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

Every pickle in the stream is scanned and unpickled by :mod:`.safe_pickle` (the storage type
globals, ``torch.LongStorage``..., resolve to markers that only carry a numpy dtype), storages are
made by :mod:`.plain_arrays` from exactly the bytes the stream holds, and a tensor's strides are
used only as index arithmetic over its storage, never as numpy strides.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .pickle_records import STORAGE_GLOBALS, Marker, StorageRecord
from .plain_arrays import (
    ArrayFormatError,
    array_from_bytes,
    checked_shape,
    element_count,
    plain_dtype,
)

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_STORAGES = 64  # DECA's tensors each have their own stream of one storage


def _persistent_load(storages: dict[str, StorageRecord]) -> Any:
    def load(pid: Any) -> StorageRecord:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError("unexpected persistent id in torch stream")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, Marker) or storage_type.dtype is None:
            raise pickle.UnpicklingError("persistent id names no torch storage type")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views in torch streams are not supported")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("storage element count is not a count")
        if not isinstance(key, (str, int)):
            raise pickle.UnpicklingError("storage key is not a string")
        key = str(key)
        if key not in storages:
            if len(storages) >= MAX_STORAGES:
                raise pickle.UnpicklingError(f"more than {MAX_STORAGES} storages in one stream")
            storages[key] = StorageRecord(storage_type.dtype, key, numel)
        return storages[key]

    return load


def load_storage_from_bytes(data: Any, path: str | Path | None = None) -> np.ndarray:
    """Parse a legacy ``torch.save`` stream of one storage into a 1-D numpy array ``(numel,)``.

    Raises ``pickle.UnpicklingError``, ``ArrayFormatError`` or ``UnsafePickleError`` when the
    stream is not one (the public loaders turn these into ``FlameFileError``).
    """
    from .safe_pickle import Python2Text, unpickle_records

    def load(offset: int = 0, **options: Any) -> tuple[Any, int]:
        value, end = unpickle_records(data, path, offset, **options)
        return (value.value if isinstance(value, Python2Text) else value), end

    if isinstance(data, str):  # a Python 2 str read with latin1
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise pickle.UnpicklingError(f"torch storage bytes are a {type(data).__name__}, expected bytes")
    data = bytes(data)
    if data[:2] == b"PK":
        raise pickle.UnpicklingError(
            "torch storage is a zip-format torch.save stream; only the legacy format is supported"
        )
    magic, offset = load()
    if magic != MAGIC_NUMBER:
        raise pickle.UnpicklingError(
            f"torch storage stream does not start with the legacy torch.save magic number "
            f"{MAGIC_NUMBER:#x}"
        )
    protocol, offset = load(offset)
    if protocol != PROTOCOL_VERSION:
        raise pickle.UnpicklingError(f"torch storage stream protocol is not {PROTOCOL_VERSION}")
    sys_info, offset = load(offset)
    if not isinstance(sys_info, dict):
        raise pickle.UnpicklingError("torch storage stream has no sys-info dict")
    storages: dict[str, StorageRecord] = {}
    result, offset = load(
        offset, extra_globals=STORAGE_GLOBALS, persistent_load=_persistent_load(storages)
    )
    keys, offset = load(offset)
    if not isinstance(keys, list) or len(keys) > MAX_STORAGES:
        raise pickle.UnpicklingError("torch storage stream has no storage key list")
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        storage = storages.get(str(key))
        if storage is None or not isinstance(key, (str, int)):
            raise pickle.UnpicklingError("torch stream lists a storage it never used")
        if len(data) - offset < 8:
            raise EOFError("torch storage stream ends before a storage size")
        (numel,) = struct.unpack_from("<q", data, offset)
        offset += 8
        dtype = plain_dtype(storage.dtype)
        if numel != storage.numel:
            raise pickle.UnpicklingError(
                f"torch storage has {numel} elements, its header said {storage.numel}"
            )
        nbytes = numel * dtype.itemsize
        if nbytes > len(data) - offset:
            raise EOFError("torch storage stream ends inside the storage data")
        # torch writes elements little-endian whatever the machine (the dtype codes say '<')
        arrays[storage.key] = array_from_bytes(memoryview(data)[offset : offset + nbytes], dtype, (numel,))
        offset += nbytes
    if not isinstance(result, StorageRecord) or result.key not in arrays:
        raise pickle.UnpicklingError("torch stream holds no storage with data")
    return arrays[result.key]


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` for numpy: the elements of ``storage`` (1-D) at
    ``offset + sum(i_k * stride_k)``, gathered into a new C-contiguous array of shape ``size``.

    The view may not read outside the storage, nor hold more elements than it (a stride-0 view
    of a huge size is refused, not expanded)."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise ArrayFormatError("_rebuild_tensor_v2 needs a storage (1-D array)")
    shape = checked_shape(size)
    strides = checked_shape(stride)  # torch's saved strides are sizes >= 0 too
    if isinstance(storage_offset, bool) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise ArrayFormatError("_rebuild_tensor_v2 offset is not a count")
    if len(shape) != len(strides):
        raise ArrayFormatError(f"_rebuild_tensor_v2 size {shape} and stride {strides} differ in length")
    count = element_count(shape)
    if count == 0:
        return np.zeros(shape, dtype=storage.dtype)
    if count > storage.size:
        raise ArrayFormatError(
            f"tensor of size {shape} has more elements than its storage ({storage.size})"
        )
    last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    if last >= storage.size:
        raise ArrayFormatError(
            f"tensor of size {shape} stride {strides} offset {storage_offset} reads element "
            f"{last} of a storage of {storage.size}"
        )
    contiguous, step = [], 1
    for n in reversed(shape):
        contiguous.insert(0, step)
        step *= n
    if all(n == 1 or s == c for n, s, c in zip(shape, strides, contiguous, strict=True)):
        # the usual case (a tensor saved as made): a plain slice, no index array
        return storage[storage_offset : storage_offset + count].reshape(shape).copy()
    index = np.full(shape, storage_offset, dtype=np.int64)
    for axis, (n, s) in enumerate(zip(shape, strides, strict=True)):
        steps = np.arange(n, dtype=np.int64) * s
        index += steps.reshape((n,) + (1,) * (len(shape) - axis - 1))
    return np.ascontiguousarray(storage[index])
