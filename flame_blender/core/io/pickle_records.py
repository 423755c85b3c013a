"""Inert stand-ins for the globals FLAME pickles name: they record arguments, never run numpy.

While a pickle is being read, nothing it names is real: ``numpy.dtype`` gives a
:class:`DtypeRecord`, ``_reconstruct`` an :class:`ArrayRecord`, ``chumpy.ch.Ch`` a
:class:`ChumpyRecord` and so on. Each only stores what the file passed (the state of one BUILD,
once). After unpickling, :mod:`.safe_pickle` turns the records into data in one place
(:mod:`.plain_arrays`), checking every size against the bytes the file really holds.

Nothing the file can reach has writable module state: every object :data:`ALLOWED_GLOBALS` hands
out refuses a BUILD on itself (a BUILD on a real function would set its ``__defaults__`` or
``__qualname__`` for the rest of the process), and records accept exactly one BUILD.
"""

from __future__ import annotations

import pickle
from typing import Any


class Refused(pickle.UnpicklingError):
    """A use of an allowed global that FLAME files never make."""


class _Inert:
    """Base of everything the unpickler may hand to a file: no ``__dict__``, no BUILD."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise Refused(f"BUILD on {self!r} is refused; FLAME files never set state on it")


class Marker(_Inert):
    """A global that is only ever an argument (``numpy.ndarray``, ``object``, torch storage
    types); calling it is refused."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str | None = None) -> None:
        self.name = name
        self.dtype = dtype  # for torch.XStorage: the numpy dtype code of its elements

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Refused(f"calling {self.name} is refused; FLAME files only pass it as an argument")

    def __repr__(self) -> str:
        return self.name


class _Record(_Inert):
    """Arguments of one call plus the state of at most one BUILD."""

    __slots__ = ("args", "state", "built")

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state = None
        self.built = False

    def __setstate__(self, state: Any) -> None:
        if self.built:
            raise Refused(f"a second BUILD on one {type(self).__name__} is refused")
        self.built = True
        self.state = state

    def __repr__(self) -> str:
        return type(self).__name__


class DtypeRecord(_Record):
    """``numpy.dtype(code, align, copy)`` then BUILD ``(3, byteorder, subarray, names, fields,
    elsize, alignment, flags)``."""

    __slots__ = ()


class ArrayRecord(_Record):
    """``_reconstruct(ndarray, (0,), b'b')`` then BUILD ``(1, shape, dtype, fortran, data)``."""

    __slots__ = ()


class ScalarRecord(_Record):
    """``numpy.core.multiarray.scalar(dtype, data)``."""

    __slots__ = ()


class BufferRecord(_Record):
    """``numpy.core.numeric._frombuffer(data, dtype, shape, order)``."""

    __slots__ = ()


class TensorRecord(_Record):
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    __slots__ = ()


class StorageBytesRecord(_Record):
    """``torch.storage._load_from_bytes(stream)``: a legacy ``torch.save`` stream."""

    __slots__ = ()


class StorageRecord(_Inert):
    """A storage named by a persistent id inside a legacy torch stream."""

    __slots__ = ("dtype", "key", "numel")

    def __init__(self, dtype: str, key: str, numel: int) -> None:
        self.dtype, self.key, self.numel = dtype, key, numel


class ChumpyRecord:
    """``chumpy.ch.Ch``: NEWOBJ of this class, then one BUILD with chumpy's state dict.

    A class (NEWOBJ needs one); BUILD on the class itself fails, since ``__setstate__`` then
    lacks its ``state`` argument, so the class is never changed."""

    __slots__ = ("state", "built")

    def __setstate__(self, state: Any) -> None:
        if getattr(self, "built", False):
            raise Refused("a second BUILD on one chumpy.ch.Ch is refused")
        self.built = True
        self.state = state


class CscRecord(ChumpyRecord):
    """``scipy.sparse.csc_matrix``: NEWOBJ then one BUILD with ``_shape``, ``indices``,
    ``indptr``, ``data``."""

    __slots__ = ()


class _Factory(_Inert):
    """A callable global: ``record(*args)``, optionally checked by ``check(*args)``."""

    __slots__ = ("name", "make")

    def __init__(self, name: str, make: Any) -> None:
        self.name = name
        self.make = make

    def __call__(self, *args: Any) -> Any:
        return self.make(*args)

    def __repr__(self) -> str:
        return self.name


NDARRAY = Marker("numpy.ndarray")
OBJECT = Marker("object")


def _reconstruct(subtype: Any, shape: Any = (0,), dtype: Any = b"b") -> ArrayRecord:
    if subtype is not NDARRAY:
        raise Refused(f"numpy _reconstruct of {subtype!r}, expected numpy.ndarray")
    return ArrayRecord()


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    # Protocol 0/1 pickles of plain objects: copy_reg._reconstructor(cls, object, None).
    if cls not in (ChumpyRecord, CscRecord) or base is not OBJECT or state is not None:
        raise Refused(f"copy_reg._reconstructor({cls!r}, {base!r}) is not a FLAME stand-in class")
    return cls()


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, 'latin1'); nothing else needed.
    if not isinstance(encoding, str) or encoding.lower() not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode only allowed as encode(str, 'latin1'), got {encoding!r:.40}")
    if not isinstance(text, str):
        raise Refused("_codecs.encode only allowed on a str")
    return text.encode("latin1")


def _bytes(*args: Any) -> bytes:
    # Python 3 pickles b'' at protocol 2 as __builtin__.bytes() (e.g. an empty array's data).
    if args:
        raise Refused("bytes(...) with arguments is refused; only bytes() appears in pickles")
    return b""


def _set(items: Any = ()) -> set:
    if not isinstance(items, (list, tuple)):
        raise Refused(f"set() of a {type(items).__name__}, expected a list")
    return set(items)


def _ordered_dict(items: Any = ()) -> dict:
    # Dicts keep insertion order; OrderedDict's own type (and its __dict__) is not needed.
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in items
    ):
        raise Refused("OrderedDict() of something other than (key, value) pairs")
    return dict(items)


def _record(cls: type) -> Any:
    return lambda *args: cls(*args)


def _dtype(code: Any = None, align: Any = False, copy: Any = True) -> DtypeRecord:
    return DtypeRecord(code)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("chumpy.ch", "Ch"): ChumpyRecord,
    ("scipy.sparse.csc", "csc_matrix"): CscRecord,
    ("scipy.sparse._csc", "csc_matrix"): CscRecord,
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): _Factory("numpy.dtype", _dtype),
    ("__builtin__", "set"): _Factory("set", _set),
    ("builtins", "set"): _Factory("set", _set),
    ("__builtin__", "object"): OBJECT,
    ("builtins", "object"): OBJECT,
    ("__builtin__", "bytes"): _Factory("bytes", _bytes),
    ("builtins", "bytes"): _Factory("bytes", _bytes),
    ("copy_reg", "_reconstructor"): _Factory("copy_reg._reconstructor", _reconstructor),
    ("copyreg", "_reconstructor"): _Factory("copyreg._reconstructor", _reconstructor),
    ("collections", "OrderedDict"): _Factory("OrderedDict", _ordered_dict),
    ("_codecs", "encode"): _Factory("_codecs.encode", _latin1_encode),
    ("torch._utils", "_rebuild_tensor_v2"): _Factory("_rebuild_tensor_v2", _record(TensorRecord)),
    ("torch.storage", "_load_from_bytes"): _Factory(
        "_load_from_bytes", _record(StorageBytesRecord)
    ),
}
for _module in ("numpy.core", "numpy._core"):
    ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _Factory(
        "_reconstruct", _reconstruct
    )
    ALLOWED_GLOBALS[(f"{_module}.multiarray", "scalar")] = _Factory(
        "scalar", _record(ScalarRecord)
    )
    ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _Factory(
        "_frombuffer", _record(BufferRecord)
    )

# Storage classes inside a legacy torch stream, with the numpy dtype code of their elements.
STORAGE_GLOBALS: dict[tuple[str, str], Marker] = {
    ("torch", name): Marker(f"torch.{name}", code)
    for name, code in {
        "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
        "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
        "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "b1",
    }.items()
}  # fmt: skip
