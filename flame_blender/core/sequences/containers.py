"""Read the containers trackers save into: one flat ``{key: array}`` dict per file.

Every file goes through the project's restricted readers: ``.npz``/``.npy`` through
:mod:`..numpy_files`, pickles through :mod:`..safe_pickle`. ``torch.save`` files (``.pt``,
metrical-tracker's ``.frame``) are zip archives whose ``data.pkl`` is unpickled by the restricted
unpickler; tensors are rebuilt as numpy arrays from the archive's raw storages, so torch is never
imported. Nested dicts are flattened with dots: ``{"flame": {"exp": ...}}`` -> ``"flame.exp"``.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from ..legacy_torch import STORAGE_TYPES, StorageType
from ..numpy_files import load_npy, load_npz
from ..safe_pickle import RestrictedUnpickler

#: Largest ``data.pkl`` / storage member read from a torch zip, and largest JSON file (bytes).
MAX_MEMBER_BYTES = 1 << 30
MAX_JSON_BYTES = 256 << 20

_READ_ERRORS = (
    EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
    KeyError, OverflowError, MemoryError, RecursionError, RuntimeError, zipfile.BadZipFile,
    NotImplementedError, OSError, UnicodeDecodeError,
)


def flatten(value: Any, path: Path, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one level with dotted keys; leaves stay as they are."""
    out: dict[str, Any] = {}
    if not isinstance(value, Mapping):
        raise FlameFileError(path, f"holds a {type(value).__name__}; expected a dict of arrays")
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            out.update(flatten(item, path, name + "."))
        else:
            out[name] = item
    return out


def load_torch_zip(path: str | Path) -> Any:
    """The object a zip-format ``torch.save`` wrote, with tensors as numpy arrays (no torch).

    Raises ``FlameFileError`` (``UnsafePickleError`` for a global outside the allowed set).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise FlameFileError(
                    path, f"has {len(pickles)} 'data.pkl' records; expected one (a torch.save zip)"
                )
            prefix = pickles[0][: -len("data.pkl")]
            order = prefix + "byteorder"
            if order in names and archive.read(order).strip() not in (b"little", b""):
                raise FlameFileError(path, "is a big-endian torch file; expected little-endian")
            data = _read_member(archive, pickles[0], path)

            def persistent_load(pid: Any) -> np.ndarray:
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                    raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
                storage_type, key, _location, numel = pid[1:]
                if not isinstance(storage_type, StorageType) or not isinstance(numel, int):
                    raise pickle.UnpicklingError(f"persistent id {pid!r:.80} is not a storage")
                member = f"{prefix}data/{key}"
                raw = _read_member(archive, member, path)
                if len(raw) != numel * storage_type.dtype.itemsize:
                    raise pickle.UnpicklingError(
                        f"storage {key!r} holds {len(raw)} bytes, its header said {numel} elements"
                    )
                return np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<")).copy()

            unpickler = RestrictedUnpickler(
                io.BytesIO(data), path, extra_globals=STORAGE_TYPES, persistent_load=persistent_load
            )
            return unpickler.load()
    except FlameFileError:
        raise
    except _READ_ERRORS as error:
        raise FlameFileError(
            path, f"is not a readable torch.save file ({type(error).__name__}: {error})"
        ) from None


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise FlameFileError(path, f"has no record {name!r}; the torch archive is incomplete") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise FlameFileError(path, f"record {name!r} is {info.file_size} bytes; refusing over 1 GiB")
    return archive.read(name)


def _to_arrays(flat: dict[str, Any], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, (str, bytes)):
            out[key] = value
            continue
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            continue  # ragged lists and the like: not a parameter, ignored
        if array.dtype.kind in "biuf" or array.dtype.kind == "U":
            out[key] = array
    return out


def read_arrays(path: str | Path) -> dict[str, Any]:
    """``{dotted key: numpy array (or str)}`` of one ``.npz``, ``.npy``, ``.pt``, ``.frame``,
    ``.pth``, ``.json`` file. Non-numeric leaves are dropped."""
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return dict(load_npz(path))
    if suffix == ".npy":
        value = load_npy(path)
        if isinstance(value, Mapping):
            return _to_arrays(flatten(value, path), path)
        return {"": np.asarray(value)}
    if suffix in (".pt", ".pth", ".frame", ".tar"):
        if not zipfile.is_zipfile(path):
            raise FlameFileError(
                path, "is not a zip-format torch.save file (torch >= 1.6); older formats are not read"
            )
        return _to_arrays(flatten(load_torch_zip(path), path), path)
    if suffix == ".json":
        if path.stat().st_size > MAX_JSON_BYTES:
            raise FlameFileError(path, "is over 256 MiB; refusing to parse it")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise FlameFileError(path, f"is not valid JSON ({error})") from None
        return _to_arrays(flatten(value, path), path)
    raise FlameFileError(path, f"unsupported file type {suffix!r}; expected .npz, .npy, .pt, .frame or .json")
