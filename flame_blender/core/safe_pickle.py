"""A restricted reader for FLAME pickles whose output is data, never objects the file chose.

Unpickling calls whatever global a pickle names (``os.system``, ``builtins.eval``, ...), and even
the globals FLAME files need (numpy's dtype and array reconstruction) can be driven by a hostile
file into reading raw bytes as pointers. So reading happens in three steps:

1. :func:`~.pickle_scan.scan_pickle` checks the opcodes: sizes, memo indices, nesting depth;
2. ``pickle.Unpickler`` runs with :data:`~.pickle_records.ALLOWED_GLOBALS` only: every name maps
   to an inert record of its arguments (no numpy, chumpy, scipy or torch code runs), anything
   else is refused the moment it is looked up;
3. :class:`_Resolver` turns records into plain data: arrays through :mod:`.plain_arrays` (plain
   numeric dtypes, sizes equal to the bytes held), chumpy ``Ch`` into :class:`ChumpyArray`,
   ``csc_matrix`` into :class:`SparseCscMatrix`, legacy torch tensors into arrays.

Every failure is a :class:`~.errors.FlameFileError` naming the file (``UnsafePickleError`` for a
refused global). Public: :func:`load_pickle`, :func:`load_pickle_bytes`, :class:`ChumpyArray`,
:class:`SparseCscMatrix`, :func:`to_array`.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import pickle_records as records
from .errors import FlameFileError, UnsafePickleError
from .pickle_records import ALLOWED_GLOBALS
from .pickle_scan import PickleScanError, scan_pickle
from .plain_arrays import (
    ArrayFormatError,
    array_from_bytes,
    checked_shape,
    element_count,
    plain_dtype,
)

MAX_RESOLVE_DEPTH = 100
MAX_OBJECT_ITEMS = 1_000_000  # elements of a pickled object array (FLAME's hold one)
MAX_DENSE_ELEMENTS = 1 << 26  # a csc_matrix made dense (FLAME's regressor: 5 x 5023)


class ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps only the stored value ``x`` (an ndarray).

    chumpy's bookkeeping (``_dirty_vars``, ``_itr``, ``_depends_on_deps``, ...) is dropped.
    ``np.asarray(ch)`` and ``ch.r`` give the value, as with chumpy.
    """

    def __init__(self, x: Any = None) -> None:
        self.x = x

    @property
    def r(self) -> np.ndarray:
        return to_array(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        value = to_array(self)
        return value if dtype is None else value.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ChumpyArray(shape={getattr(self.x, 'shape', None)})"


class SparseCscMatrix:
    """Stand-in for ``scipy.sparse.csc_matrix`` (old and new module paths).

    Compressed sparse columns: the rows of column ``j`` are ``indices[indptr[j]:indptr[j+1]]``
    with values ``data[indptr[j]:indptr[j+1]]``.
    """

    def __init__(self, shape: Any = None, indices: Any = None, indptr: Any = None,
                 data: Any = None) -> None:  # fmt: skip
        self.shape = shape
        self.indices = indices
        self.indptr = indptr
        self.data = data

    def toarray(self) -> np.ndarray:
        """The dense float64 matrix ``(rows, cols)``; ValueError when the parts disagree."""
        if self.shape is None or len(self.shape) != 2:
            raise ValueError(f"csc_matrix has no 2-D shape (found {self.shape!r})")
        rows, cols = self.shape
        if rows * cols > MAX_DENSE_ELEMENTS:
            raise ValueError(f"csc_matrix of shape {self.shape} is too large to make dense")
        indices = np.asarray(to_array(self.indices)).ravel()
        indptr = np.asarray(to_array(self.indptr)).ravel()
        data = np.asarray(to_array(self.data)).ravel()
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
            raise ValueError("csc_matrix indices/indptr must be integer arrays")
        if data.dtype.kind not in "biuf":
            raise ValueError("csc_matrix data must be numbers")
        data = data.astype(np.float64)
        if indptr.shape != (cols + 1,):
            raise ValueError(f"csc_matrix indptr has {indptr.size} entries, expected {cols + 1}")
        if indptr.dtype == np.uint64 and indptr.size and indptr.max() > np.iinfo(np.int64).max:
            raise ValueError("csc_matrix indptr holds values beyond int64")
        indptr = indptr.astype(np.int64)
        nnz = int(indptr[-1])
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError("csc_matrix indptr must start at 0 and never decrease")
        if nnz > indices.size or nnz > data.size:
            raise ValueError(
                f"csc_matrix indptr promises {nnz} entries but indices has {indices.size} "
                f"and data {data.size}"
            )
        indices = indices[:nnz]
        if nnz and (indices.min() < 0 or indices.max() >= rows):
            raise ValueError(f"csc_matrix row index out of range 0..{rows - 1}")
        indices = indices.astype(np.int64)
        dense = np.zeros((rows, cols), dtype=np.float64)
        columns = np.repeat(np.arange(cols), np.diff(indptr))
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
        if seen > 100:
            raise ValueError("chumpy.ch.Ch nests more than 100 deep")
    if isinstance(value, SparseCscMatrix):
        return value.toarray()
    return value


# --- unpickling -------------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` (Python 2 strings as bytes) that resolves only
    :data:`ALLOWED_GLOBALS` (plus ``extra_globals``) to inert records, and has no persistent
    ids unless given. Its output still holds records: see :func:`load_pickle_bytes`."""

    def __init__(
        self,
        file: Any,
        path: str | Path | None,
        extra_globals: dict[tuple[str, str], Any] | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._globals = dict(ALLOWED_GLOBALS)
        if extra_globals:
            self._globals.update(extra_globals)
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                self._path,
                f"refuses global '{str(module)[:100]}.{str(name)[:100]}': FLAME files only use "
                "numpy arrays, chumpy.ch.Ch, scipy csc_matrix and legacy torch tensors; "
                "loading it would run code from the file, so nothing was loaded",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent_load(pid)


def unpickle_records(
    data: bytes,
    path: str | Path | None,
    start: int = 0,
    extra_globals: dict[tuple[str, str], Any] | None = None,
    persistent_load: Callable[[Any], Any] | None = None,
) -> tuple[Any, int]:
    """Scan then unpickle the pickle at ``start`` of ``data``: (value with records, end offset).
    Errors propagate as they are; the public loaders turn them into ``FlameFileError``.

    Python 2 ``str`` values arrive as bytes (so array data is never decoded and re-encoded);
    the value is wrapped in :class:`Python2Text` to tell the resolver to decode the others
    with latin1, as ``pickle.load(..., encoding='latin1')`` would."""
    end, python2_strings = scan_pickle(data, start, persistent_ids=persistent_load is not None)
    stream = io.BytesIO(data)
    stream.seek(start)
    value = RestrictedUnpickler(stream, path, extra_globals, persistent_load).load()
    return (Python2Text(value) if python2_strings else value), end


class Python2Text:
    """An unpickled value whose bytes are Python 2 ``str`` (text unless used as array data)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _state_dict(state: Any, class_name: str) -> dict:
    """A BUILD state as one dict: pickles write either a dict or a (dict state, slot state) pair."""
    if isinstance(state, tuple) and len(state) == 2:
        merged: dict = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(part)
        state = merged
    if not isinstance(state, dict):
        raise ArrayFormatError(f"{class_name} state is a {type(state).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in state.items()}


def _dtype_of(record: Any) -> np.dtype | str:
    """The plain dtype a ``numpy.dtype`` record names, or "object" for an object dtype."""
    if isinstance(record, np.dtype):
        return plain_dtype(record.str)
    if not isinstance(record, records.DtypeRecord) or len(record.args) != 1:
        raise ArrayFormatError(f"array dtype is a {type(record).__name__}, expected numpy.dtype")
    code = record.args[0]
    state = record.state
    if isinstance(state, tuple):  # Python 2 pickles give the byte order as bytes
        state = tuple(v.decode("latin1") if isinstance(v, bytes) else v for v in state)
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if code in ("O8", "O4", "O"):
        if state is not None and (not isinstance(state, tuple) or len(state) < 8
                                  or state[1] != "|" or state[7] != 63):  # fmt: skip
            raise ArrayFormatError("object dtype state is not the one numpy writes")
        return "object"
    plain_dtype(code)  # the kind first: its message is the useful one
    byteorder = "="
    if state is not None:
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise ArrayFormatError("numpy.dtype state is not the 8-field tuple numpy writes")
        version, byteorder, subarray, names, fields = state[:5]
        if version not in (3, 4) or subarray is not None or names is not None or fields is not None:
            raise ArrayFormatError("numpy.dtype state has fields or a sub-array; FLAME files "
                                   "hold plain numbers")  # fmt: skip
        if state[7] != 0 or (len(state) == 9 and state[8]):
            raise ArrayFormatError("numpy.dtype state has flags or metadata")
        if not isinstance(byteorder, str):
            raise ArrayFormatError("numpy.dtype state has no byte order")
    dtype = plain_dtype(code, byteorder)
    if state is not None and state[5] not in (-1, dtype.itemsize):
        raise ArrayFormatError("numpy.dtype state has a different element size")
    return dtype


class _Resolver:
    """Turns unpickled values holding records into plain data (dicts, lists, arrays...)."""

    def __init__(self, path: str | Path | None, python2_text: bool = False) -> None:
        self.path = path
        self.python2_text = python2_text
        self.done: dict[int, Any] = {}
        self.keep: list[Any] = []  # keeps ids in `done` from being reused while resolving
        self.active: set[int] = set()

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, bytes) and self.python2_text:
            return value.decode("latin1")
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            return value
        key = id(value)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            raise ArrayFormatError("the pickle holds a cycle; FLAME files never do")
        if depth > MAX_RESOLVE_DEPTH:
            raise ArrayFormatError(f"values nest deeper than {MAX_RESOLVE_DEPTH}")
        self.active.add(key)
        result = self._resolve(value, depth + 1)
        self.active.discard(key)
        self.done[key] = result
        self.keep.append(value)
        return result

    def _resolve(self, value: Any, depth: int) -> Any:  # noqa: C901 - one branch per kind
        if isinstance(value, dict):
            result = {}
            for k, v in value.items():
                try:
                    result[self._key(k, depth)] = self(v, depth)
                except ArrayFormatError as error:  # say where: "key 'v_template': ..."
                    where = f"key {k!r:.60}" if isinstance(k, (str, bytes, int)) else "a key"
                    raise ArrayFormatError(f"{where}: {error}") from None
            return result
        if isinstance(value, list):
            return [self(item, depth) for item in value]
        if isinstance(value, tuple):
            return tuple(self(item, depth) for item in value)
        if isinstance(value, (set, frozenset)):
            return type(value)(self._key(item, depth) for item in value)
        if isinstance(value, bytearray):
            return bytes(value)
        if isinstance(value, records.ArrayRecord):
            return self._array(value, depth)
        if isinstance(value, records.BufferRecord):
            if len(value.args) != 4 or value.args[3] not in ("C", "F"):
                raise ArrayFormatError("_frombuffer needs (data, dtype, shape, 'C' or 'F')")
            data, dtype, shape, order = value.args
            dtype = _dtype_of(dtype)
            if isinstance(dtype, str):
                raise ArrayFormatError("_frombuffer of an object dtype is refused")
            return array_from_bytes(data, dtype, shape, order == "F")
        if isinstance(value, records.ScalarRecord):
            if len(value.args) != 2:
                raise ArrayFormatError("numpy scalar needs (dtype, data)")
            dtype = _dtype_of(value.args[0])
            if isinstance(dtype, str):
                raise ArrayFormatError("numpy scalar of an object dtype is refused")
            return array_from_bytes(value.args[1], dtype, ())[()]
        if isinstance(value, records.DtypeRecord):
            dtype = _dtype_of(value)
            if isinstance(dtype, str):
                raise ArrayFormatError("a bare object dtype is refused")
            return dtype
        if isinstance(value, records.CscRecord):
            state = _state_dict(value.state, "csc_matrix")
            shape = state.get("_shape", state.get("shape"))
            shape = checked_shape(self(shape, depth)) if shape is not None else None
            return SparseCscMatrix(shape, *(self(state.get(k), depth) for k in
                                            ("indices", "indptr", "data")))  # fmt: skip
        if isinstance(value, records.ChumpyRecord):
            return ChumpyArray(self(_state_dict(value.state, "chumpy.ch.Ch").get("x"), depth))
        if isinstance(value, records.TensorRecord):
            from .legacy_torch import rebuild_tensor

            args = tuple(self(arg, depth) for arg in value.args[1:4])
            return rebuild_tensor(self(value.args[0], depth), *args) if len(args) == 3 else \
                _refuse("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)")
        if isinstance(value, records.StorageBytesRecord):
            from .legacy_torch import load_storage_from_bytes

            if len(value.args) != 1:
                raise ArrayFormatError("_load_from_bytes needs one bytes argument")
            return load_storage_from_bytes(value.args[0], self.path)
        raise ArrayFormatError(
            f"the pickle holds a {type(value).__name__} as a value; FLAME files hold only "
            "dicts, lists, numbers, strings and arrays"
        )

    def _key(self, key: Any, depth: int) -> Any:
        resolved = self(key, depth)
        try:
            hash(resolved)
        except TypeError:
            raise ArrayFormatError("a dict key or set item is not hashable") from None
        return resolved

    def _array(self, record: records.ArrayRecord, depth: int) -> np.ndarray:
        state = record.state
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, fortran, data)
        if not isinstance(state, tuple) or len(state) != 4:
            raise ArrayFormatError("numpy array state is not (shape, dtype, fortran, data)")
        shape, dtype, fortran, data = state
        shape = checked_shape(shape)
        dtype = _dtype_of(dtype)
        if not isinstance(fortran, (bool, int)):
            raise ArrayFormatError("numpy array state has no Fortran-order flag")
        if dtype != "object":
            return array_from_bytes(data, dtype, shape, bool(fortran))
        count = element_count(shape)
        if not isinstance(data, list) or len(data) != count or count > MAX_OBJECT_ITEMS:
            raise ArrayFormatError(
                f"object array of shape {shape} must hold a list of {count} items"
            )
        holder = np.empty(count, dtype=object)
        for index, item in enumerate(data):
            holder[index] = self(item, depth)
        return holder.reshape(shape, order="F" if fortran else "C")


def _refuse(message: str) -> Any:
    raise ArrayFormatError(message)


def describe_error(error: BaseException) -> str:
    """A short description of why a file could not be read."""
    if isinstance(error, EOFError):
        return "the file ends early (truncated?)"
    if isinstance(error, MemoryError):
        return "MemoryError: it asks for more memory than there is"
    if isinstance(error, RecursionError):
        return "RecursionError: it nests too deeply"
    text = str(error)[:300] or type(error).__name__
    return f"{type(error).__name__}: {text}"


def resolve_records(value: Any, path: str | Path | None) -> Any:
    """Records in an unpickled value replaced by plain data (see :class:`_Resolver`)."""
    if isinstance(value, Python2Text):
        return _Resolver(path, python2_text=True)(value.value)
    return _Resolver(path)(value)


def load_pickle_bytes(data: bytes, path: str | Path | None = None) -> Any:
    """Read the pickle in ``data`` as plain data; ``path`` names the source in errors.

    Raises:
        UnsafePickleError: the pickle names a global outside :data:`ALLOWED_GLOBALS`.
        FlameFileError: anything else wrong with the bytes (truncated, corrupt, over a limit,
            not a pickle, an array whose bytes do not match its shape).
    """
    try:
        value, _end = unpickle_records(data, path)
        return resolve_records(value, path)
    except FlameFileError:
        raise
    except PickleScanError as error:
        raise FlameFileError(path, f"is not a readable pickle ({error})") from None
    except Exception as error:  # noqa: BLE001 - no other exception may leave a reader
        raise FlameFileError(
            path, f"is not a readable pickle ({describe_error(error)}); expected a FLAME pickle"
        ) from None


def read_file_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``; ``FlameFileError`` when it is missing, a folder or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FlameFileError(path, "no such file") from None
    except IsADirectoryError:
        raise FlameFileError(path, f"is a folder, expected {what}") from None
    except (OSError, MemoryError) as error:
        raise FlameFileError(path, f"cannot be read ({describe_error(error)})") from None


def load_pickle(path: str | Path) -> Any:
    """Read a pickle file as plain data (latin1 for Python 2 pickles).

    ``chumpy.ch.Ch`` values come back as :class:`ChumpyArray` and ``csc_matrix`` values as
    :class:`SparseCscMatrix` (see :func:`to_array`); arrays as fresh numpy arrays.

    Raises:
        FlameFileError: the file is missing, unreadable, truncated, over a limit or not a pickle.
        UnsafePickleError: the pickle names a global a FLAME file never uses; nothing ran.
    """
    path = Path(path).expanduser()
    data = read_file_bytes(path, "a pickle file")
    if not data:
        raise FlameFileError(path, "is empty; expected a pickle")
    return load_pickle_bytes(data, path)
