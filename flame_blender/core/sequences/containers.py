"""Read the containers trackers save into: one flat ``{key: array}`` dict per file.

Every file goes through the project's restricted readers: ``.npz``/``.npy`` through
:mod:`..io.numpy_files`, ``torch.save`` files (``.pt``, metrical-tracker's ``.frame``) through
:mod:`..io.torch_zip` (restricted unpickler, tensors rebuilt from the archive's storages, torch
never imported). Nested dicts are flattened with dots: ``{"flame": {"exp": ...}}`` -> ``"flame.exp"``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from ..io.numpy_files import load_npy, load_npz
from ..io.reader_guard import file_reader
from ..io.torch_zip import load_torch_zip

#: Largest JSON file read (bytes).
MAX_JSON_BYTES = 256 << 20


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


@file_reader
def read_arrays(path: str | Path) -> dict[str, Any]:
    """``{dotted key: numpy array (or str)}`` of one ``.npz``, ``.npy``, ``.pt``, ``.frame``,
    ``.pth``, ``.json`` file. Non-numeric leaves are dropped."""
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return dict(load_npz(path, allow_text=True))
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
