"""Turn unpickled records (:mod:`.pickle_records`) into plain data, arrays made in one place.

Dicts, lists, tuples and sets are rebuilt; ``numpy.dtype`` / ``_reconstruct`` / ``scalar`` /
``_frombuffer`` records become arrays through :mod:`.plain_arrays` (plain numeric dtypes only,
sizes equal to the bytes held); chumpy and scipy records become the :mod:`.stand_ins`; legacy
torch records become arrays through :mod:`.legacy_torch`. Cycles, nesting deeper than
:data:`MAX_RESOLVE_DEPTH` and anything else are refused with ``ArrayFormatError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import pickle_records as records
from .plain_arrays import (
    ArrayFormatError,
    array_from_bytes,
    checked_shape,
    element_count,
    plain_dtype,
)
from .stand_ins import ChumpyArray, SparseCscMatrix

MAX_RESOLVE_DEPTH = 100
MAX_OBJECT_ITEMS = 1_000_000  # elements of a pickled object array (FLAME's hold one)


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

    def __init__(
        self,
        path: str | Path | None,
        python2_text: bool = False,
        storages: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.path = path
        self.python2_text = python2_text
        self.storages = storages or {}  # a torch zip's storages, read by .torch_zip
        self.done: dict[int, Any] = {}
        self.keep: list[Any] = []  # keeps ids in `done` from being reused while resolving
        self.active: set[int] = set()
        # Python 2 pickles repeat the same dtype description for every array: check each
        # distinct description once (keyed by its arguments and state, when hashable).
        self.dtypes: dict[Any, np.dtype | str] = {}

    def _dtype(self, record: Any) -> np.dtype | str:
        if not isinstance(record, records.DtypeRecord):
            return _dtype_of(record)
        key = (record.args, record.state)
        try:
            return self.dtypes[key]
        except KeyError:
            self.dtypes[key] = result = _dtype_of(record)
            return result
        except TypeError:  # an unhashable state: _dtype_of refuses it
            return _dtype_of(record)

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, memoryview):  # a long byte string left in place (safe_pickle)
            value = value.tobytes()
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
            dtype = self._dtype(dtype)
            if isinstance(dtype, str):
                raise ArrayFormatError("_frombuffer of an object dtype is refused")
            return array_from_bytes(data, dtype, shape, order == "F")
        if isinstance(value, records.ScalarRecord):
            if len(value.args) != 2:
                raise ArrayFormatError("numpy scalar needs (dtype, data)")
            dtype = self._dtype(value.args[0])
            if isinstance(dtype, str):
                raise ArrayFormatError("numpy scalar of an object dtype is refused")
            return array_from_bytes(value.args[1], dtype, ())[()]
        if isinstance(value, records.DtypeRecord):
            dtype = self._dtype(value)
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

            if len(value.args) < 4:
                raise ArrayFormatError("_rebuild_tensor_v2 needs (storage, offset, size, stride)")
            storage, *args = (self(arg, depth) for arg in value.args[:4])
            return rebuild_tensor(storage, *args)
        if isinstance(value, records.StorageRecord) and value.key in self.storages:
            return self.storages[value.key]
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
        dtype = self._dtype(dtype)
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


def resolve_records(
    value: Any, path: str | Path | None, storages: dict[str, np.ndarray] | None = None
) -> Any:
    """Records in an unpickled value replaced by plain data (see :class:`_Resolver`).

    ``storages``: key -> 1-D array, what each :class:`~.pickle_records.StorageRecord` of that
    key stands for (the storages of a zip-format ``torch.save`` file)."""
    if isinstance(value, Python2Text):
        return _Resolver(path, python2_text=True, storages=storages)(value.value)
    return _Resolver(path, storages=storages)(value)
