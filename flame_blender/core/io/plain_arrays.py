"""The one place where bytes from a file become numpy arrays.

Every reader (pickles, ``.npy``/``.npz``, legacy torch storages) describes an array as a dtype
name, a shape, a memory order and the bytes it holds, and this module makes the array. Only plain
numeric dtypes are allowed (bool, int8..int64, uint8..uint64, float16/32/64, either byte order):
no fields, sub-arrays, flags or object dtypes, so no byte of a file can ever become a pointer.
The shape's element count times the item size must equal the bytes actually held, and strides
never come from a file (the result is always a fresh, writable array in C or Fortran order).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

# kind+size codes of the plain numeric dtypes (the letters numpy's dtype.str uses)
PLAIN_CODES = frozenset(
    {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}
)
# numpy's one-letter type codes as Python 2 numpy and np.save sometimes write them
_LETTER_CODES = {
    "?": "b1", "b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4", "I": "u4",
    "l": "i8", "L": "u8", "q": "i8", "Q": "u8", "e": "f2", "f": "f4", "d": "f8",
    "bool": "b1", "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "float16": "f2", "float32": "f4", "float64": "f8",
}  # fmt: skip
MAX_DIMENSIONS = 32  # numpy's own limit
MAX_TEXT_LENGTH = 4096  # characters of one fixed-width text item (frame names are short)


class ArrayFormatError(ValueError):
    """An array description a reader must refuse; readers turn it into ``FlameFileError``."""


def plain_dtype(code: Any, byteorder: str = "=") -> np.dtype:
    """The numpy dtype for a plain numeric ``code`` ('f8', '<f8', 'float64', 'd', ...) and
    ``byteorder`` ('<', '>', '|', '=' or ''), refusing anything else."""
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str) or len(code) > 16:
        raise ArrayFormatError(f"dtype {code!r} is not a plain numeric dtype name")
    if code[:1] in "<>|=" and len(code) > 1:
        byteorder, code = code[0], code[1:]
    code = _LETTER_CODES.get(code, code)
    if code not in PLAIN_CODES:
        raise ArrayFormatError(
            f"dtype {code!r} is not allowed; FLAME files hold plain numbers "
            "(bool, int8..int64, uint8..uint64, float16/32/64)"
        )
    if byteorder not in ("<", ">", "|", "=", ""):
        raise ArrayFormatError(f"byte order {byteorder!r} is not one of < > | =")
    if code[1] == "1" or byteorder in ("|", ""):
        byteorder = "|" if code[1] == "1" else "="
    return np.dtype(byteorder + code if byteorder != "=" else code)


def text_dtype(code: Any) -> np.dtype:
    """A fixed-width unicode dtype (``'<U5'``: 4-byte code points, no pointers), for the readers
    that opt in to text (tracked sequences name frames with strings); anything else refused."""
    if isinstance(code, bytes):
        code = code.decode("latin1")
    match = re.fullmatch(r"([<>|=]?)U(\d{1,5})", code) if isinstance(code, str) else None
    if match is None or not 0 < int(match.group(2)) <= MAX_TEXT_LENGTH:
        raise ArrayFormatError(f"dtype {code!r:.40} is not a plain numeric or text dtype")
    return np.dtype(f"{match.group(1) if match.group(1) in '<>' else '='}U{match.group(2)}")


def checked_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative Python ints (at most 32 of them)."""
    if type(shape) is tuple and len(shape) <= MAX_DIMENSIONS and all(
        type(n) is int and n >= 0 for n in shape
    ):
        return shape  # already checked (the common case: no copy, no loop below)
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_DIMENSIONS:
        raise ArrayFormatError(f"shape {shape!r:.80} is not a tuple of at most 32 sizes")
    sizes = []
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ArrayFormatError(f"shape {shape!r:.80} holds {n!r:.40}, not a size >= 0")
        sizes.append(int(n))
    return tuple(sizes)


def element_count(shape: tuple[int, ...]) -> int:
    """The exact number of elements (a Python int: no overflow whatever the file says)."""
    return math.prod(shape)


def array_from_bytes(data: Any, dtype: np.dtype, shape: Any, fortran_order: bool = False) -> np.ndarray:
    """A fresh writable array of ``shape`` from exactly ``prod(shape) * itemsize`` bytes.

    ``data``: bytes, bytearray, memoryview or a latin1 ``str`` (Python 2 strings read with
    ``encoding='latin1'``). Raises :class:`ArrayFormatError` when the sizes disagree.
    """
    shape = checked_shape(shape)
    if isinstance(data, str):
        try:
            data = data.encode("latin1")
        except UnicodeEncodeError:
            raise ArrayFormatError("array data is text outside latin1, not raw bytes") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ArrayFormatError(f"array data is a {type(data).__name__}, expected bytes")
    expected = element_count(shape) * dtype.itemsize
    held = memoryview(data).nbytes
    if held != expected:
        raise ArrayFormatError(
            f"array of shape {shape} and dtype {dtype} needs {expected} bytes, the file holds {held}"
        )
    order = "F" if fortran_order else "C"
    flat = np.frombuffer(data, dtype=dtype) if expected else np.zeros(0, dtype=dtype)
    return flat.reshape(shape, order=order).copy(order=order)


def empty_for(dtype: np.dtype, shape: Any, fortran_order: bool, available: int) -> np.ndarray:
    """An uninitialised array to ``readinto`` from a stream that has ``available`` bytes left:
    refused (before allocating) unless the shape needs exactly that many bytes."""
    shape = checked_shape(shape)
    expected = element_count(shape) * dtype.itemsize
    if expected != available:
        raise ArrayFormatError(
            f"header promises shape {shape} of {dtype} ({expected} bytes) but {available} "
            "bytes follow"
        )
    return np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")


def fits_int64(array: np.ndarray) -> bool:
    """True when every value of an integer array is representable as int64 (a uint64 index of
    2**64-1 would otherwise wrap to -1 and silently pick the last element)."""
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and array.size:
        return bool(array.max() <= np.iinfo(np.int64).max)
    return True
