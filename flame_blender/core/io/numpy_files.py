"""Read ``.npy`` and ``.npz`` files safely: pickled members never go through ``np.load``.

``np.load(allow_pickle=True)`` unpickles object arrays with the plain unpickler, which runs any
global the file names. Here ``.npy`` object arrays are unpickled by the restricted unpickler of
:mod:`.safe_pickle`, and ``.npz`` archives are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from ..errors import FlameFileError
from .safe_pickle import load_pickle_bytes


def _read_header(handle: Any, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(handle)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(handle)
        return npy_format._read_array_header(handle, version)  # 3.0: utf-8 header
    except (ValueError, EOFError, SyntaxError, TypeError) as error:
        raise FlameFileError(path, f"is not a .npy file ({error})") from error


def load_npy(path: str | Path) -> Any:
    """The content of a ``.npy`` file: a plain array, or for an object array the unpickled
    array (restricted unpickler). A 0-d object array gives its item (e.g. a dict).

    Raises:
        FlameFileError: missing, truncated or not a ``.npy`` file.
        UnsafePickleError: the object array's pickle names a global FLAME files never use.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(path, "no such file; expected a .npy file")
    with path.open("rb") as handle:
        shape, fortran_order, dtype = _read_header(handle, path)
        if not dtype.hasobject:
            count = int(np.prod(shape, dtype=np.int64))
            data = handle.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise FlameFileError(path, "ends early (truncated?); the header promised more")
            order = "F" if fortran_order else "C"
            return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order=order)
        body = handle.read()
    value = load_pickle_bytes(body, path)
    if not isinstance(value, np.ndarray):
        raise FlameFileError(
            path, f"object array pickle holds a {type(value).__name__}, expected an array"
        )
    return value.item() if value.shape == () else value


def load_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` archive as arrays (no pickles allowed).

    Raises:
        FlameFileError: missing file, not an npz, truncated member, a pickled (object) member,
            or a key of ``required`` missing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(path, "no such file; expected an .npz archive")
    if not zipfile.is_zipfile(path):
        raise FlameFileError(path, "is not an .npz archive (not a zip file)")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as error:
                    if "allow_pickle" in str(error) or "Object arrays" in str(error):
                        raise FlameFileError(
                            path,
                            f"key '{key}' is a pickled object array; expected a numeric array "
                            "(pickled members are not loaded)",
                        ) from error
                    raise
    except FlameFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        raise FlameFileError(
            path, f"is not a readable .npz archive ({type(error).__name__}: {error})"
        ) from error
    missing = [key for key in required if key not in arrays]
    if missing:
        raise FlameFileError(
            path,
            f"has no key {', '.join(repr(k) for k in missing)}; found {sorted(arrays)}, "
            f"expected {', '.join(required)}",
        )
    return arrays
