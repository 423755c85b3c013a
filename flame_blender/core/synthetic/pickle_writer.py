"""Pickles written opcode by opcode, the way the real FLAME files were written.

The real model pickles come from Python 2 (cPickle, protocol 2) with chumpy and scipy objects in
them, the masks and static embeddings from Python 2's protocol 0, DECA's embedding from Python 3
with legacy torch tensors. Python 3's pickler cannot produce Python 2 ``str`` opcodes
(SHORT_BINSTRING, BINSTRING, STRING), and importing chumpy, scipy or torch to write their
objects is not an option, so this module emits the opcodes itself. Objects to write are plain
Python values plus the small marker classes below.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Py2Str:
    """A Python 2 ``str`` (bytes): written as SHORT_BINSTRING/BINSTRING or STRING."""

    data: bytes


@dataclass
class Global:
    module: str
    name: str


@dataclass
class Reduce:
    """``callable(*args)`` then, if ``state`` is not None, BUILD with it."""

    callable: object
    args: tuple
    state: object = None


@dataclass
class NewObj:
    """``cls.__new__(cls)`` then BUILD with ``state`` (protocol 2)."""

    cls: Global
    state: object


@dataclass
class Py2Set:
    """Python 2's ``__builtin__.set(list)``."""

    items: list = field(default_factory=list)


@dataclass
class PersistentId:
    pid: object


@dataclass
class OrderedPairs:
    """A dict written in the given key order (Python 2's dict order differs from insertion)."""

    items: list


def py2_repr(data: bytes) -> bytes:
    """Python 2's ``repr(str)``: what protocol 0's STRING opcode carries."""
    quote = b'"' if (b"'" in data and b'"' not in data) else b"'"
    out = bytearray(quote)
    for byte in data:
        ch = bytes([byte])
        if ch == quote or ch == b"\\":
            out += b"\\" + ch
        elif ch == b"\t":
            out += b"\\t"
        elif ch == b"\n":
            out += b"\\n"
        elif ch == b"\r":
            out += b"\\r"
        elif byte < 32 or byte >= 127:
            out += b"\\x%02x" % byte
        else:
            out += ch
    out += quote
    return bytes(out)


def _numpy_reduce(array: np.ndarray, numpy_core: str = "numpy.core.multiarray",
                  py3: bool = False) -> Reduce:
    """How numpy 1.x pickles an ndarray: ``_reconstruct(ndarray, (0,), 'b')`` then BUILD.

    Python 2's numpy wrote ``str`` for the type code and raw data and ints for the dtype flags;
    Python 3's writes ``bytes`` and booleans.
    """
    array = np.asarray(array)
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    if array.dtype == object:
        kind, byte_order, flags = "O8", "|", 63
        raw = list(array.ravel(order="F" if fortran else "C"))
    else:
        descr = array.dtype.str  # e.g. '<f8'
        byte_order, kind, flags = descr[0], descr[1:], 0
        raw = array.tobytes(order="F" if fortran else "C")
        raw = raw if py3 else Py2Str(raw)
    text = (lambda t: t) if py3 else (lambda t: Py2Str(t.encode()))
    dtype = Reduce(
        Global("numpy", "dtype"),
        (text(kind), False, True) if py3 else (text(kind), 0, 1),
        (3, text(byte_order), None, None, None, -1, -1, flags),
    )
    return Reduce(
        Global(numpy_core, "_reconstruct"),
        (Global("numpy", "ndarray"), (0,), b"b" if py3 else Py2Str(b"b")),
        (1, tuple(int(s) for s in array.shape), dtype, fortran, raw),
    )


class OpcodeWriter:
    """Writes one pickle; ``protocol`` 0, 2 or 3. Memoizes globals and repeated dtypes."""

    def __init__(self, protocol: int, memo_start: int = 0,
                 numpy_core: str = "numpy.core.multiarray") -> None:
        self.protocol = protocol
        self.out = bytearray()
        self.next_memo = memo_start
        self.memo: dict[object, int] = {}
        self.numpy_core = numpy_core

    # --- low level -------------------------------------------------------------------
    def w(self, data: bytes) -> None:
        self.out += data

    def put(self) -> int:
        index = self.next_memo
        self.next_memo += 1
        if self.protocol == 0:
            self.w(b"p%d\n" % index)
        elif index < 256:
            self.w(b"q" + bytes([index]))
        else:
            self.w(b"r" + struct.pack("<I", index))
        return index

    def get(self, index: int) -> None:
        if self.protocol == 0:
            self.w(b"g%d\n" % index)
        elif index < 256:
            self.w(b"h" + bytes([index]))
        else:
            self.w(b"j" + struct.pack("<I", index))

    # --- values ----------------------------------------------------------------------
    def dump(self, obj: object) -> bytes:
        if self.protocol >= 2:
            self.w(b"\x80" + bytes([self.protocol]))
        self.save(obj)
        self.w(b".")
        return bytes(self.out)

    def save(self, obj: object) -> None:  # noqa: C901 - one branch per kind of value
        if obj is None:
            self.w(b"N")
        elif obj is True or obj is False:
            if self.protocol >= 2:
                self.w(b"\x88" if obj else b"\x89")
            else:
                self.w(b"I01\n" if obj else b"I00\n")
        elif isinstance(obj, int):
            self.save_int(obj)
        elif isinstance(obj, float):
            if self.protocol >= 2:
                self.w(b"G" + struct.pack(">d", obj))
            else:
                self.w(b"F" + repr(obj).encode() + b"\n")
        elif isinstance(obj, Py2Str):
            self.save_py2_str(obj.data)
        elif isinstance(obj, str):
            self.save_unicode(obj)
        elif isinstance(obj, bytes):
            self.save_bytes(obj)
        elif isinstance(obj, tuple):
            self.save_tuple(obj)
        elif isinstance(obj, list):
            self.save_list(obj)
        elif isinstance(obj, dict):
            self.save_dict(list(obj.items()))
        elif isinstance(obj, OrderedPairs):
            self.save_dict(obj.items)
        elif isinstance(obj, np.ndarray):
            self.save(_numpy_reduce(obj, self.numpy_core, py3=self.protocol >= 3))
        elif isinstance(obj, Global):
            self.save_global(obj)
        elif isinstance(obj, Reduce):
            self.save(obj.callable)
            self.save(obj.args)
            self.w(b"R")
            self.put()
            if obj.state is not None:
                self.save(obj.state)
                self.w(b"b")
        elif isinstance(obj, NewObj):
            self.save(obj.cls)
            self.w(b")")
            self.w(b"\x81")
            self.put()
            self.save(obj.state)
            self.w(b"b")
        elif isinstance(obj, Py2Set):
            self.save(Reduce(Global("__builtin__", "set"), (list(obj.items),)))
        elif isinstance(obj, PersistentId):
            self.save(obj.pid)
            self.w(b"Q")
        else:
            raise TypeError(f"cannot write {type(obj).__name__}")

    def save_int(self, value: int) -> None:
        if self.protocol == 0:
            self.w(b"I%d\n" % value)
        elif 0 <= value < 256:
            self.w(b"K" + bytes([value]))
        elif 0 <= value < 65536:
            self.w(b"M" + struct.pack("<H", value))
        elif -(2**31) <= value < 2**31:
            self.w(b"J" + struct.pack("<i", value))
        else:
            encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.w(b"\x8a" + bytes([len(encoded)]) + encoded)

    def save_py2_str(self, data: bytes) -> None:
        if self.protocol == 0:
            self.w(b"S" + py2_repr(data) + b"\n")
        elif len(data) < 256:
            self.w(b"U" + bytes([len(data)]) + data)
        else:
            self.w(b"T" + struct.pack("<i", len(data)) + data)
        self.put()

    def save_unicode(self, text: str) -> None:
        encoded = text.encode("utf-8")
        if self.protocol == 0:
            raise TypeError("protocol 0 unicode is not used by FLAME files")
        self.w(b"X" + struct.pack("<I", len(encoded)) + encoded)
        self.put()

    def save_bytes(self, data: bytes) -> None:
        if self.protocol < 3:
            raise TypeError("bytes need protocol 3; use Py2Str for Python 2 files")
        if len(data) < 256:
            self.w(b"C" + bytes([len(data)]) + data)
        else:
            self.w(b"B" + struct.pack("<I", len(data)) + data)
        self.put()

    def save_global(self, obj: Global) -> None:
        key = ("global", obj.module, obj.name)
        if key in self.memo:
            self.get(self.memo[key])
            return
        self.w(b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memo[key] = self.put()

    def save_tuple(self, items: tuple) -> None:
        if self.protocol >= 2 and len(items) == 0:
            self.w(b")")
            return
        if self.protocol >= 2 and len(items) <= 3:
            for item in items:
                self.save(item)
            self.w(b"\x85\x86\x87"[len(items) - 1:len(items)])
        else:
            self.w(b"(")
            for item in items:
                self.save(item)
            self.w(b"t")
        self.put()

    def save_list(self, items: list) -> None:
        if self.protocol == 0:
            self.w(b"(l")
            self.put()
            for item in items:
                self.save(item)
                self.w(b"a")
            return
        self.w(b"]")
        self.put()
        self._batched(items, single=b"a", many=b"e", save=self.save)

    def save_dict(self, pairs: list) -> None:
        if self.protocol == 0:
            self.w(b"(d")
            self.put()
            for key, value in pairs:
                self.save(key)
                self.save(value)
                self.w(b"s")
            return
        self.w(b"}")
        self.put()

        def save_pair(pair: tuple) -> None:
            self.save(pair[0])
            self.save(pair[1])

        self._batched(pairs, single=b"s", many=b"u", save=save_pair)

    def _batched(self, items: Iterable, single: bytes, many: bytes, save) -> None:
        items = list(items)
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            if len(batch) == 1:
                save(batch[0])
                self.w(single)
            else:
                self.w(b"(")
                for item in batch:
                    save(item)
                self.w(many)


def py2_key_dict(mapping: dict) -> OrderedPairs:
    """A dict whose keys are Python 2 ``str``, in the given order."""
    return OrderedPairs([(Py2Str(k.encode()), v) for k, v in mapping.items()])


def chumpy_ch(array: np.ndarray) -> NewObj:
    """``chumpy.ch.Ch`` holding ``array`` as its ``x``, with chumpy's bookkeeping."""
    state = py2_key_dict({
        "_dirty_vars": Py2Set([]),
        "_itr": None,
        "_make_dense": None,
        "_depends_on_deps": True,
        "x": np.asarray(array, dtype=np.float64),
        "_make_sparse": None,
    })
    return NewObj(Global("chumpy.ch", "Ch"), state)


def scipy_csc_matrix(dense: np.ndarray) -> NewObj:
    """``scipy.sparse.csc.csc_matrix`` of ``dense`` (columns of nonzeros, int32 indices)."""
    dense = np.asarray(dense, dtype=np.float64)
    indices, indptr, data = [], [0], []
    for column in range(dense.shape[1]):
        rows = np.nonzero(dense[:, column])[0]
        indices.extend(rows)
        data.extend(dense[rows, column])
        indptr.append(len(indices))
    state = py2_key_dict({
        "_shape": tuple(int(s) for s in dense.shape),
        "indices": np.array(indices, dtype=np.int32),
        "indptr": np.array(indptr, dtype=np.int32),
        "maxprint": 50,
        "format": Py2Str(b"csc"),
        "data": np.array(data, dtype=np.float64),
    })
    return NewObj(Global("scipy.sparse.csc", "csc_matrix"), state)


def py2_pickle(obj: object, protocol: int) -> bytes:
    """A pickle as Python 2 wrote it: cPickle's memo starts at 1 for protocol 2."""
    return OpcodeWriter(protocol, memo_start=1 if protocol == 2 else 0).dump(obj)


# --- legacy torch tensors (DECA's landmark_embedding.npy) -------------------------------

TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
TORCH_PROTOCOL_VERSION = 1001
_TORCH_STORAGE = {np.dtype(np.int64): "LongStorage", np.dtype(np.float32): "FloatStorage",
                  np.dtype(np.float64): "DoubleStorage"}


def legacy_torch_storage_bytes(array: np.ndarray, key: str = "0") -> bytes:
    """What ``torch.save(storage, f, _use_new_zipfile_serialization=False)`` writes."""
    flat = np.ascontiguousarray(array).ravel()
    storage_type = Global("torch", _TORCH_STORAGE[flat.dtype])
    chunks = [
        OpcodeWriter(2).dump(TORCH_MAGIC_NUMBER),
        OpcodeWriter(2).dump(TORCH_PROTOCOL_VERSION),
        OpcodeWriter(2).dump({
            "protocol_version": TORCH_PROTOCOL_VERSION,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        }),
        OpcodeWriter(2).dump(
            PersistentId(("storage", storage_type, key, "cpu", int(flat.size), None))
        ),
        OpcodeWriter(2).dump([key]),
        struct.pack("<q", flat.size) + flat.astype(flat.dtype.newbyteorder("<")).tobytes(),
    ]
    return b"".join(chunks)


def legacy_torch_tensor(array: np.ndarray, key: str = "0") -> Reduce:
    """A torch tensor as torch 1.x pickled it inside a plain pickle (DECA's numpy file).

    ``key`` names the storage inside its serialized stream (torch used the storage's address).
    """
    array = np.ascontiguousarray(array)
    storage = Reduce(Global("torch.storage", "_load_from_bytes"),
                     (legacy_torch_storage_bytes(array, key),))
    strides = tuple(s // array.itemsize for s in array.strides)
    ordered_dict = Reduce(Global("collections", "OrderedDict"), ())
    return Reduce(
        Global("torch._utils", "_rebuild_tensor_v2"),
        (storage, 0, tuple(int(s) for s in array.shape), strides, False, ordered_dict),
    )


def npy_of_object(obj: object, protocol: int) -> bytes:
    """An .npy file (format 1.0), as ``np.save`` writes a dict: a 0-d object array, pickled.

    ``protocol`` 2 gives the Python 2 flavour (Python 2 ``str``), 3 numpy's Python 3 default.
    """
    holder = np.empty((), dtype=object)
    holder[()] = obj
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    total = 10 + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    payload = OpcodeWriter(protocol, memo_start=1 if protocol == 2 else 0).dump(holder)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload
