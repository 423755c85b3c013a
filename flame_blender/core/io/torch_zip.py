"""Read zip-format ``torch.save`` files (``.pt``, metrical-tracker's ``.frame``) without torch.

Since torch 1.6, ``torch.save`` writes a zip archive ``<name>/``: ``data.pkl`` (the object, a
protocol-2 pickle), ``byteorder``, ``version`` and one member ``data/<key>`` per storage holding
its raw elements. Inside ``data.pkl`` a tensor is
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())``
and the storage a persistent id ``('storage', torch.FloatStorage, key, location, numel)``;
numpy arrays (metrical-tracker saves ``.cpu().numpy()`` values) are ordinary numpy pickles.

Reading goes the way of every other FLAME file:

1. the archive's limits are checked before anything is decompressed (the rules of the
   ``.npz`` reader, :func:`.numpy_files._check_archive`, with the sizes below);
2. ``data.pkl`` is scanned and unpickled by :mod:`.safe_pickle` with the torch storage types as
   markers; a persistent id becomes a :class:`~.pickle_records.StorageRecord`;
3. each storage member's size must be exactly ``numel * itemsize`` (checked before reading it),
   and its bytes become a 1-D array in :mod:`.plain_arrays`;
4. records resolve into plain data; tensors are gathered from their storage by
   :func:`.legacy_torch.rebuild_tensor` (bounds checked, strides never given to numpy).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from .numpy_files import _check_archive, _check_member_count
from .pickle_records import STORAGE_GLOBALS, Marker, StorageRecord
from .pickle_resolve import resolve_records
from .pickle_scan import PickleScanError
from .plain_arrays import array_from_bytes, plain_dtype
from .safe_pickle import describe_error, unpickle_records

# A tracked sequence in one file (1000 frames of 5023x3 float32 offsets) is ~60 MB; a member
# (data.pkl or one storage) may be 1 GiB and the whole archive 2 GiB unpacked.
MAX_MEMBER_BYTES = 1 << 30
MAX_ARCHIVE_BYTES = 2 << 30
MAX_MEMBERS = 1024  # torch writes 4-6 records plus one per storage
MAX_KEY_LENGTH = 64  # storage keys are small decimal numbers


def _persistent_load(storages: dict[str, StorageRecord]) -> Any:
    def load(pid: Any) -> StorageRecord:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unexpected persistent id in data.pkl")
        storage_type, key, location, numel = pid[1:]
        if not isinstance(storage_type, Marker) or storage_type.dtype is None:
            raise pickle.UnpicklingError("persistent id names no torch storage type")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("storage element count is not a count")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise pickle.UnpicklingError("storage key is not a short string")
        if not isinstance(location, str):
            raise pickle.UnpicklingError("storage location is not a string")
        known = storages.get(key)
        if known is None:
            if len(storages) >= MAX_MEMBERS:
                raise pickle.UnpicklingError(f"more than {MAX_MEMBERS} storages")
            known = storages[key] = StorageRecord(storage_type.dtype, key, numel)
        elif known.dtype != storage_type.dtype or known.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} is named with two types or sizes")
        return known

    return load


def _storage_arrays(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    prefix: str,
    storages: dict[str, StorageRecord],
    path: Path,
) -> dict[str, np.ndarray]:
    """key -> 1-D array of each storage ``data.pkl`` named, sizes checked before reading."""
    arrays: dict[str, np.ndarray] = {}
    for key, storage in storages.items():
        info = members.get(f"{prefix}data/{key}")
        if info is None:
            raise FlameFileError(path, f"has no record 'data/{key}' for a storage its data.pkl names")
        dtype = plain_dtype(storage.dtype)
        expected = storage.numel * dtype.itemsize
        if info.file_size != expected:
            raise FlameFileError(
                path, f"storage 'data/{key}' holds {info.file_size} bytes; its data.pkl says "
                f"{storage.numel} elements of {dtype} ({expected} bytes)",
            )
        arrays[key] = array_from_bytes(archive.read(info), dtype, (storage.numel,))
    return arrays


def load_torch_zip(path: str | Path) -> Any:
    """The object a zip-format ``torch.save`` wrote, as plain data: tensors and numpy arrays
    become fresh numpy arrays, dicts, lists, strings and numbers stay. torch is not imported.

    Raises:
        UnsafePickleError: ``data.pkl`` names a global outside the allowed set; nothing ran.
        FlameFileError: anything else (not a torch zip, truncated, over a limit, a storage
            whose size disagrees with its persistent id, a tensor reading outside its storage,
            big-endian data).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(path, "no such file; expected a torch.save file")
    try:
        size = path.stat().st_size
        _check_member_count(path, MAX_MEMBERS)
        with zipfile.ZipFile(path) as archive:
            checked = _check_archive(
                path, archive, size, MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_ARCHIVE_BYTES
            )
            members = {info.filename: info for info in checked}
            pickles = [n for n in members if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise FlameFileError(
                    path, f"has {len(pickles)} 'data.pkl' records; expected one (a torch.save zip)"
                )
            prefix = pickles[0][: -len("data.pkl")]
            order = members.get(prefix + "byteorder")
            if order is not None and archive.read(order).strip() != b"little":
                raise FlameFileError(path, "is not a little-endian torch file")
            data = archive.read(members[pickles[0]])
            storages: dict[str, StorageRecord] = {}
            value, end = unpickle_records(
                data, path, extra_globals=STORAGE_GLOBALS, persistent_load=_persistent_load(storages)
            )
            if end != len(data):
                raise FlameFileError(path, "data.pkl has bytes after its pickle")
            arrays = _storage_arrays(archive, members, prefix, storages, path)
        return resolve_records(value, path, arrays)
    except FlameFileError:
        raise
    except PickleScanError as error:
        raise FlameFileError(path, f"data.pkl is not a readable pickle ({error})") from None
    except Exception as error:  # noqa: BLE001 - no other exception may leave a reader
        raise FlameFileError(
            path, f"is not a readable torch.save file ({describe_error(error)})"
        ) from None
