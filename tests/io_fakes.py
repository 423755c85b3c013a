"""Write pickles the way Python 2, chumpy, scipy and old torch wrote them, without any of them.

Used by the IO tests to build small hand-made FLAME files (and malicious ones). The pickler is
the pure-Python ``pickle._Pickler`` with two changes: objects carrying ``pickle_as = (module,
name)`` are written as that global (so a stand-in class pickles as ``chumpy.ch.Ch``, or a marker
as ``os.system``), and in ``py2`` mode ``str``/``bytes`` are written as Python 2 ``str`` opcodes
(``STRING``/``BINSTRING``), as a Python 2 pickle of numpy arrays has them.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np


class Global:
    """A marker pickled as the global ``module.name`` (e.g. ``Global('os', 'system')``)."""

    def __init__(self, module: str, name: str) -> None:
        self.pickle_as = (module, name)

    def __reduce_ex__(self, protocol: int) -> str:
        return self.pickle_as[1]

    def __call__(self, *args: Any) -> Any:  # the pickler wants reduce functions callable
        raise RuntimeError(f"{self.pickle_as} is a marker, not to be called")


class Call:
    """Pickled as ``func(*args)`` (a REDUCE), with ``func`` a :class:`Global`; then BUILD with
    ``state`` when one is given."""

    def __init__(self, func: Global, *args: Any, state: Any = None) -> None:
        self.func = func
        self.args = args
        self.state = state

    def __reduce_ex__(self, protocol: int) -> tuple:
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


class FakeCh:
    """Pickles like ``chumpy.ch.Ch``: NEWOBJ of the class, then BUILD with chumpy's state."""

    pickle_as = ("chumpy.ch", "Ch")

    def __init__(self, x: Any, **extra: Any) -> None:
        self.state = {
            "_dirty_vars": set(),
            "_itr": None,
            "_make_dense": None,
            "_make_sparse": None,
            "_depends_on_deps": {},
            "x": x,
            **extra,
        }

    def __reduce_ex__(self, protocol: int) -> tuple:
        return (copyreg.__newobj__, (type(self),), self.state)


class FakeCsc:
    """Pickles like ``scipy.sparse.csc.csc_matrix`` (or ``module`` given)."""

    pickle_as = ("scipy.sparse.csc", "csc_matrix")

    def __init__(self, dense: np.ndarray, shape_key: str = "_shape") -> None:
        dense = np.asarray(dense, dtype=np.float64)
        rows, cols = dense.shape
        indices, indptr, data = [], [0], []
        for j in range(cols):
            nz = np.nonzero(dense[:, j])[0]
            indices.extend(nz)
            data.extend(dense[nz, j])
            indptr.append(len(indices))
        self.state = {
            shape_key: (rows, cols),
            "maxprint": 50,
            "format": "csc",
            "indices": np.array(indices, dtype=np.int32),
            "indptr": np.array(indptr, dtype=np.int32),
            "data": np.array(data, dtype=np.float64),
        }

    def __reduce_ex__(self, protocol: int) -> tuple:
        return (copyreg.__newobj__, (type(self),), self.state)


class FakeCscNew(FakeCsc):
    pickle_as = ("scipy.sparse._csc", "csc_matrix")


class FakePickler(pickle._Pickler):
    """``pickle._Pickler`` that writes ``pickle_as`` globals and, with ``py2``, Python 2 str
    opcodes; with ``frombuffer`` set to a module name, ndarrays are written as
    ``<module>._frombuffer(bytes, dtype, shape, order)`` (Python 3 / FLAME 2023 Open style)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(
        self,
        file: Any,
        protocol: int,
        py2: bool = False,
        frombuffer: str | None = None,
        reconstruct: str | None = None,
    ) -> None:
        super().__init__(file, protocol)
        self.py2 = py2
        self.frombuffer = frombuffer
        self.reconstruct = reconstruct
        self.persistent: dict[int, Any] = {}

    def persistent_id(self, obj: Any) -> Any:
        return self.persistent.get(id(obj))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray) and type(obj) is np.ndarray:
            if self.frombuffer is not None and obj.dtype != object:
                order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
                return (
                    Global(self.frombuffer, "_frombuffer"),
                    (obj.tobytes(order=order), obj.dtype, obj.shape, order),
                )
            if self.reconstruct is not None:
                func, args, state = obj.__reduce_ex__(2)
                return (Global(self.reconstruct, "_reconstruct"), args, state)
        return NotImplemented

    def save_global(self, obj: Any, name: str | None = None) -> None:
        target = getattr(obj, "pickle_as", None)
        if target is None:
            return super().save_global(obj, name)
        module, qualname = target
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)

    def _save_py2_string(self, obj: Any) -> None:
        if not self.py2:
            kind = pickle._Pickler.save_str if isinstance(obj, str) else pickle._Pickler.save_bytes
            return kind(self, obj)
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if self.proto == 0:
            self.write(pickle.STRING + repr(data)[1:].encode("ascii") + b"\n")
        elif len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_string
    dispatch[bytes] = _save_py2_string


def dumps(obj: Any, protocol: int = 2, py2: bool = True, **options: Any) -> bytes:
    stream = io.BytesIO()
    FakePickler(stream, protocol, py2=py2, **options).dump(obj)
    return stream.getvalue()


def write_pickle(path: Path, obj: Any, protocol: int = 2, py2: bool = True, **options: Any) -> Path:
    path.write_bytes(dumps(obj, protocol, py2, **options))
    return path


# --- .npy object arrays and legacy torch tensors -----------------------------------------------


def npy_object_bytes(value: Any, protocol: int = 2, py2: bool = True) -> bytes:
    """A ``.npy`` of a 0-d object array holding ``value`` (as ``np.save`` writes it)."""
    holder = np.empty((), dtype=object)
    holder[()] = value
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": "|O", "fortran_order": False, "shape": ()}
    )
    FakePickler(stream, protocol, py2=py2).dump(holder)
    return stream.getvalue()


_STORAGE_NAMES = {
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.int32): "IntStorage",
}


class _Storage:
    pass


def legacy_storage_stream(flat: np.ndarray, key: str = "94030112") -> bytes:
    """An old-style ``torch.save`` stream of one storage holding ``flat`` (1-D)."""
    flat = np.ascontiguousarray(flat).ravel()
    stream = io.BytesIO()
    for value in (
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4}},
    ):
        pickle.dump(value, stream, protocol=2)
    storage = _Storage()
    pickler = FakePickler(stream, 2, py2=False)
    storage_type = Global("torch", _STORAGE_NAMES[flat.dtype])
    pickler.persistent[id(storage)] = ("storage", storage_type, key, "cpu", flat.size, None)
    pickler.dump(storage)
    pickle.dump([key], stream, protocol=2)
    stream.write(struct.pack("<q", flat.size))
    stream.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
    return stream.getvalue()


def legacy_tensor(array: np.ndarray) -> Call:
    """Pickles like a torch tensor in DECA's file: ``_rebuild_tensor_v2`` over
    ``_load_from_bytes`` of a legacy storage stream."""
    array = np.ascontiguousarray(array)
    strides = tuple(s // array.itemsize for s in array.strides)
    storage = Call(Global("torch.storage", "_load_from_bytes"), legacy_storage_stream(array))
    return Call(
        Global("torch._utils", "_rebuild_tensor_v2"),
        storage,
        0,
        tuple(array.shape),
        strides,
        False,
        OrderedDict(),
    )


# --- a tiny FLAME-like model ------------------------------------------------------------------


def tiny_model(n_vertices: int = 12, n_components: int = 4, seed: int = 0) -> dict:
    """A small model dict with FLAME's keys, dtypes and shape pattern (5 joints)."""
    rng = np.random.default_rng(seed)
    v = n_vertices
    regressor = np.zeros((5, v))
    for j in range(5):
        picks = rng.choice(v, size=3, replace=False)
        regressor[j, picks] = rng.random(3)
    weights = rng.random((v, 5))
    weights /= weights.sum(axis=1, keepdims=True)
    return {
        "f": rng.integers(0, v, size=(2 * v, 3)).astype(np.uint32),
        "J_regressor": regressor,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "J": rng.normal(size=(5, 3)),
        "bs_style": "lbs",
        "weights": weights,
        "posedirs": rng.normal(size=(v, 3, 36)),
        "v_template": rng.normal(size=(v, 3)),
        "shapedirs": rng.normal(size=(v, 3, n_components)),
        "bs_type": "lrotmin",
    }


def as_py2_file(model: dict) -> dict:
    """The model as FLAME 2020 stores it: shapedirs a chumpy Ch, J_regressor a csc_matrix."""
    stored = dict(model)
    stored["shapedirs"] = FakeCh(model["shapedirs"])
    stored["J_regressor"] = FakeCsc(model["J_regressor"])
    return stored


# --- an independent reference reader (for files we wrote ourselves) ----------------------------


class _RefObject:
    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state)


class _ReferenceUnpickler(pickle.Unpickler):
    """The stock unpickler with chumpy/scipy classes replaced by a plain state holder; used
    only on trusted files (the synthetic generator's) to cross-check the restricted reader."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("chumpy.ch", "Ch"), ("scipy.sparse.csc", "csc_matrix"),
                              ("scipy.sparse._csc", "csc_matrix")):  # fmt: skip
            return _RefObject
        return super().find_class(module, name)


def reference_model(path: Path) -> dict:
    """A FLAME model pickle read without safe_pickle: Ch -> its x, csc -> dense (loop)."""
    with open(path, "rb") as handle:
        raw = _ReferenceUnpickler(handle, encoding="latin1").load()
    model = {}
    for key, value in raw.items():
        if isinstance(value, _RefObject) and "x" in value.__dict__:
            value = value.x
        elif isinstance(value, _RefObject):
            rows, cols = value._shape
            dense = np.zeros((rows, cols))
            for j in range(cols):
                for p in range(value.indptr[j], value.indptr[j + 1]):
                    dense[value.indices[p], j] += value.data[p]
            value = dense
        model[key] = value
    return model
