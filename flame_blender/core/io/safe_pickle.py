"""A restricted unpickler for FLAME files: only the globals those files use, nothing that runs code.

Unpickling calls whatever global a pickle names (``os.system``, ``builtins.eval``, ...), so a
plain ``pickle.load`` of a downloaded file runs the file's author's code. FLAME's pickles name
only numpy's array reconstruction, chumpy's ``Ch``, scipy's ``csc_matrix`` and (DECA) torch's
legacy tensors. This module allows exactly those, maps the foreign classes to small stand-ins
(so neither chumpy, scipy nor torch is imported or needed), and refuses anything else at the
moment the global is looked up, before it can be called.

Public: :func:`load_pickle` (a file), :func:`load_pickle_bytes` (bytes, e.g. the body of an
``.npy`` object array), :class:`ChumpyArray`, :class:`SparseCscMatrix`, :func:`to_array`.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError, UnsafePickleError

try:  # numpy >= 1.26 has numpy._core; numpy 2 warns when numpy.core is imported
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy.core.multiarray import scalar as _numpy_scalar


def _state_dict(state: Any, class_name: str) -> dict:
    """A BUILD state as one dict: pickles write either a dict or a (dict state, slot state) pair."""
    if isinstance(state, tuple) and len(state) == 2:
        merged: dict = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(part)
        state = merged
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"{class_name} state is a {type(state).__name__}, expected a dict")
    return state


class ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps only the stored value ``x`` (an ndarray).

    chumpy's bookkeeping (``_dirty_vars``, ``_itr``, ``_depends_on_deps``, ...) is accepted and
    dropped. ``np.asarray(ch)`` and ``ch.r`` give the value, as with chumpy.
    """

    x: Any = None

    def __setstate__(self, state: Any) -> None:
        self.x = _state_dict(state, "chumpy.ch.Ch").get("x")

    @property
    def r(self) -> np.ndarray:
        return to_array(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        value = to_array(self)
        return value if dtype is None else value.astype(dtype, copy=False)

    def __repr__(self) -> str:
        shape = getattr(self.x, "shape", None)
        return f"ChumpyArray(shape={shape})"


class SparseCscMatrix:
    """Stand-in for ``scipy.sparse.csc_matrix`` (old and new module paths).

    Compressed sparse columns: the rows of column ``j`` are ``indices[indptr[j]:indptr[j+1]]``
    with values ``data[indptr[j]:indptr[j+1]]``.
    """

    shape: tuple[int, int] | None = None
    indices: Any = None
    indptr: Any = None
    data: Any = None

    def __setstate__(self, state: Any) -> None:
        state = _state_dict(state, "csc_matrix")
        shape = state.get("_shape", state.get("shape"))
        self.shape = tuple(int(n) for n in shape) if shape is not None else None
        self.indices = state.get("indices")
        self.indptr = state.get("indptr")
        self.data = state.get("data")

    def toarray(self) -> np.ndarray:
        """The dense float64 matrix ``(rows, cols)``; ValueError when the parts disagree."""
        if self.shape is None or len(self.shape) != 2:
            raise ValueError(f"csc_matrix has no 2-D shape (found {self.shape!r})")
        rows, cols = self.shape
        indices = np.asarray(to_array(self.indices)).ravel()
        indptr = np.asarray(to_array(self.indptr)).ravel()
        data = np.asarray(to_array(self.data), dtype=np.float64).ravel()
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
            raise ValueError("csc_matrix indices/indptr must be integer arrays")
        if indptr.shape != (cols + 1,):
            raise ValueError(f"csc_matrix indptr has {indptr.size} entries, expected {cols + 1}")
        nnz = int(indptr[-1])
        if indptr[0] != 0 or np.any(np.diff(indptr.astype(np.int64)) < 0):
            raise ValueError("csc_matrix indptr must start at 0 and never decrease")
        if nnz > indices.size or nnz > data.size:
            raise ValueError(
                f"csc_matrix indptr promises {nnz} entries but indices has {indices.size} "
                f"and data {data.size}"
            )
        indices = indices[:nnz].astype(np.int64)
        if nnz and (indices.min() < 0 or indices.max() >= rows):
            raise ValueError(f"csc_matrix row index out of range 0..{rows - 1}")
        dense = np.zeros((rows, cols), dtype=np.float64)
        columns = np.repeat(np.arange(cols), np.diff(indptr.astype(np.int64)))
        np.add.at(dense, (indices, columns), data[:nnz])  # duplicates add, as scipy does
        return dense

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"SparseCscMatrix(shape={self.shape})"


def to_array(value: Any) -> Any:
    """Unwrap stand-ins: a ``Ch`` gives its ``x`` (recursively), a sparse matrix its dense array;
    anything else is returned unchanged."""
    seen = 0
    while isinstance(value, ChumpyArray):
        value = value.x
        seen += 1
        if seen > 100:  # a Ch whose x is itself: refuse instead of looping
            raise ValueError("chumpy.ch.Ch nests itself")
    if isinstance(value, SparseCscMatrix):
        return value.toarray()
    return value


# --- the allowed globals -------------------------------------------------------------------


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {subtype!r}, expected numpy.ndarray")
    return _numpy_reconstruct(np.ndarray, shape, dtype)


def _scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy scalar of {dtype!r}, expected a numeric numpy.dtype")
    if isinstance(data, str):  # Python 2 str read with latin1
        data = data.encode("latin1")
    return _numpy_scalar(dtype, data) if data is not None else _numpy_scalar(dtype)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    # Writable copy: np.frombuffer over the pickle's bytes would be read-only.
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"numpy _frombuffer order {order!r}, expected 'C' or 'F'")
    array = np.frombuffer(buffer, dtype=np.dtype(dtype))
    return array.reshape(shape, order=order).copy(order=order)


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, 'latin1'); nothing else needed.
    if encoding.lower() not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode only allowed as encode(str, 'latin1'), got encoding {encoding!r}"
        )
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    # Protocol 0/1 pickles of plain objects: copy_reg._reconstructor(cls, object, None).
    if cls not in (ChumpyArray, SparseCscMatrix) or base is not object:
        raise pickle.UnpicklingError(
            f"copy_reg._reconstructor({cls!r}, {base!r}) is not a FLAME stand-in class"
        )
    return object.__new__(cls)


def _rebuild_tensor_v2(*args: Any) -> np.ndarray:
    from .legacy_torch import rebuild_tensor_v2

    return rebuild_tensor_v2(*args)


def _load_from_bytes(data: Any) -> Any:
    from .legacy_torch import load_storage_from_bytes

    return load_storage_from_bytes(data)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("chumpy.ch", "Ch"): ChumpyArray,
    ("scipy.sparse.csc", "csc_matrix"): SparseCscMatrix,
    ("scipy.sparse._csc", "csc_matrix"): SparseCscMatrix,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` (latin1 for Python 2 strings) that resolves only
    :data:`ALLOWED_GLOBALS` (plus ``extra_globals``) and has no persistent ids unless given."""

    def __init__(
        self,
        file: Any,
        path: str | Path | None,
        extra_globals: dict[tuple[str, str], Any] | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path
        self._globals = dict(ALLOWED_GLOBALS)
        if extra_globals:
            self._globals.update(extra_globals)
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                self._path,
                f"refuses global '{module}.{name}': FLAME files only use numpy arrays, "
                "chumpy.ch.Ch, scipy csc_matrix and legacy torch tensors; loading it would "
                "run code from the file, so nothing was loaded",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._persistent_load(pid)


# Errors a damaged or foreign file can raise from inside the unpickler or numpy's setstate.
_READ_ERRORS = (
    EOFError,
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,
    RecursionError,
    RuntimeError,  # numpy's scalar/setstate on malformed state
    zipfile.BadZipFile,
)


def _describe(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "the file ends early (truncated?)"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


def load_pickle_bytes(data: bytes, path: str | Path | None = None) -> Any:
    """Unpickle ``data`` with the restricted unpickler; ``path`` names the source in errors.

    Raises:
        UnsafePickleError: the pickle names a global outside :data:`ALLOWED_GLOBALS`.
        FlameFileError: anything else wrong with the bytes (truncated, corrupt, not a pickle).
    """
    stream = io.BytesIO(data)
    try:
        value = RestrictedUnpickler(stream, path).load()
    except FlameFileError:
        raise
    except _READ_ERRORS as error:
        raise FlameFileError(
            path, f"is not a readable pickle ({_describe(error)}); expected a FLAME pickle"
        ) from error
    return value


def load_pickle(path: str | Path) -> Any:
    """Read a pickle file with the restricted unpickler (latin1 for Python 2 pickles).

    Returns the unpickled object; ``chumpy.ch.Ch`` values come back as :class:`ChumpyArray`
    and ``csc_matrix`` values as :class:`SparseCscMatrix` (see :func:`to_array`).

    Raises:
        FlameFileError: the file is missing, unreadable, truncated or not a pickle.
        UnsafePickleError: the pickle names a global a FLAME file never uses; nothing ran.
    """
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FlameFileError(path, "no such file") from None
    except IsADirectoryError:
        raise FlameFileError(path, "is a folder, expected a pickle file") from None
    except OSError as error:
        raise FlameFileError(path, f"cannot be read ({error.strerror or error})") from error
    if not data:
        raise FlameFileError(path, "is empty; expected a pickle")
    return load_pickle_bytes(data, path)
