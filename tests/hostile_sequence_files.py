"""Hostile ``torch.save`` zips and tracked-sequence files, grouped like :mod:`hostile_files`.

Each torch file starts from what ``torch.save`` really writes (its member names, order and
records), then its ``data.pkl`` or a storage member is replaced by what an attacker who has read
``core/io/torch_zip.py`` would put there. Readers: ``torch`` (``load_torch_zip``) and
``sequence`` (``load_sequence``, as the import operator calls it).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile_files import OBJECT_DTYPE, PLAIN_STATE, _array, _build_on_global, _dtype, _npy, _zip
from io_fakes import Call, FakePickler, Global

REBUILD = Global("torch._utils", "_rebuild_tensor_v2")


def torch_saved(value: Any) -> bytes:
    """The bytes ``torch.save(value, stream)`` writes (a zip whose records sit in ``archive/``)."""
    torch = pytest.importorskip("torch")  # files written by torch.save itself; 4.x envs have none

    stream = io.BytesIO()
    torch.save(value, stream)
    return stream.getvalue()


def _plain_codes() -> bytes:
    torch = pytest.importorskip("torch")  # files written by torch.save itself; 4.x envs have none

    return torch_saved({"shape": torch.zeros(1, 100), "exp": torch.zeros(1, 50), "pose": torch.zeros(1, 6)})


def rewrite(archive: bytes, replace: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> bytes:
    """``archive`` with the members ending in a key of ``replace`` given new bytes (None drops
    them), the rest kept in order, stored as torch stores them; ``add``: new members at the end."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            match = [k for k in replace if info.filename.endswith(k)]
            content = source.read(info) if not match else replace[match[0]]
            if content is not None:
                target.writestr(info.filename, content)
        for name, content in (add or {}).items():
            target.writestr(name, content)
    return out.getvalue()


class _Storage:
    """Pickled as the persistent id it is registered with."""


def data_pkl(value: Any, storages: list[tuple[_Storage, tuple]]) -> bytes:
    """A protocol-2 ``data.pkl`` as torch's pickler writes it: storages as ``BINPERSID`` of
    ``('storage', torch.XStorage, key, 'cpu', numel)``."""
    stream = io.BytesIO()
    pickler = FakePickler(stream, 2, py2=False)
    for storage, pid in storages:
        pickler.persistent[id(storage)] = pid
    pickler.dump(value)
    return stream.getvalue()


def _tensor_file(kind: str, numel: int, storage_bytes: bytes, offset: int, size: tuple,
                 stride: tuple, key: str = "0") -> bytes:  # fmt: skip
    storage = _Storage()
    tensor = Call(REBUILD, storage, offset, size, stride, False, OrderedDict())
    pid = ("storage", Global("torch", kind), key, "cpu", numel)
    pickled = data_pkl({"shape": tensor}, [(storage, pid)])
    return rewrite(_plain_codes(), {"data.pkl": pickled, "data/0": storage_bytes,
                                    "data/1": None, "data/2": None})  # fmt: skip


# --- memory corruption ----------------------------------------------------------------------


def torch_tensor_reads_past_storage(_: Path) -> tuple[str, str, bytes]:
    data = np.arange(4, dtype="<i8").tobytes()
    return "torch", "codes.pt", _tensor_file("LongStorage", 4, data, 3, (4,), (1 << 40,))


def torch_storage_named_with_two_types(_: Path) -> tuple[str, str, bytes]:
    first, second = _Storage(), _Storage()
    value = {"a": Call(REBUILD, first, 0, (2,), (1,), False, OrderedDict()),
             "b": Call(REBUILD, second, 0, (2,), (1,), False, OrderedDict())}  # fmt: skip
    pickled = data_pkl(value, [(first, ("storage", Global("torch", "ByteStorage"), "0", "cpu", 16)),
                               (second, ("storage", Global("torch", "DoubleStorage"), "0", "cpu", 2))])  # fmt: skip
    return "torch", "codes.pt", rewrite(_plain_codes(), {"data.pkl": pickled, "data/0": bytes(16),
                                                         "data/1": None, "data/2": None})  # fmt: skip


def frame_numpy_array_with_hidden_object_field(_: Path) -> tuple[str, str, bytes]:
    fields = {"a": (OBJECT_DTYPE, 0), "b": (_dtype("f8", PLAIN_STATE), 8)}
    dtype = _dtype("V16", (3, "|", None, ("a", "b"), fields, 16, 1, 63))
    pickled = data_pkl({"flame": {"exp": _array(dtype, (1,), b"A" * 16)}}, [])
    return "sequence", "00000.frame", rewrite(_plain_codes(), {"data.pkl": pickled})


# --- resource bombs -------------------------------------------------------------------------


def torch_storage_numel_bomb(_: Path) -> tuple[str, str, bytes]:
    return "torch", "codes.pt", _tensor_file("DoubleStorage", 10**12, bytes(8), 0, (10**12,), (1,))


def torch_stride_zero_tensor_bomb(_: Path) -> tuple[str, str, bytes]:
    data = np.ones(1, "<f4").tobytes()
    return "sequence", "codes.pt", _tensor_file("FloatStorage", 1, data, 0, (10**12,), (0,))


def frame_memo_bomb(_: Path) -> tuple[str, str, bytes]:
    pickled = b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 28) + b"."
    return "sequence", "00000.frame", rewrite(_plain_codes(), {"data.pkl": pickled})


def torch_storage_zip_bomb(_: Path, size: int = 256 << 20) -> tuple[str, str, bytes]:
    """A torch zip whose storage member inflates 256 MB from ~260 KB (the data.pkl names it)."""
    storage = _Storage()
    tensor = Call(REBUILD, storage, 0, (size // 4,), (1,), False, OrderedDict())
    pickled = data_pkl({"shape": tensor}, [(storage, ("storage", Global("torch", "FloatStorage"),
                                                       "0", "cpu", size // 4))])  # fmt: skip
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(64 << 20)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    raw = block * (size // len(chunk)) + compressor.flush()
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    entries = [(b"archive/data.pkl", 0, zlib.crc32(pickled), pickled, len(pickled)),
               (b"archive/byteorder", 0, zlib.crc32(b"little"), b"little", 6),
               (b"archive/data/0", 8, crc, raw, size)]  # fmt: skip
    local, central = b"", b""
    for name, method, check, body, total in entries:
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, check,
                               len(body), total, len(name), 0, 0, 0, 0, 0, len(local)) + name  # fmt: skip
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, check, len(body),
                             total, len(name), 0) + name + body  # fmt: skip
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 3, 3, len(central), len(local), 0)
    return "torch", "codes.pt", local + central + end


def npz_text_member_promises_terabytes(_: Path) -> tuple[str, str, bytes]:
    header = "{'descr': '<U4096', 'fortran_order': False, 'shape': (1000000000,), }"
    return "sequence", "tracked_flame_params.npz", _zip({"timestep_id.npy": _npy(header, bytes(64))})


def json_nested_a_million_deep(_: Path) -> tuple[str, str, bytes]:
    return "sequence", "codes.json", b"[" * 1_000_000 + b"]" * 1_000_000


# --- undocumented exceptions ----------------------------------------------------------------


def legacy_torch_file_named_pt(_: Path) -> tuple[str, str, bytes]:
    """An old (non-zip) torch.save stream: the magic number pickle first."""
    return "sequence", "codes.pt", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."


def torch_unknown_compression(_: Path) -> tuple[str, str, bytes]:
    data = bytearray(_plain_codes())
    for signature, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        position = data.index(signature) + at  # the first member: data.pkl
        data[position : position + 2] = struct.pack("<H", 14)  # LZMA
    return "torch", "codes.pt", bytes(data)


def torch_two_data_pkl(_: Path) -> tuple[str, str, bytes]:
    good = _plain_codes()
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        pickled = archive.read("archive/data.pkl")
    return "torch", "codes.pt", rewrite(good, {}, {"other/data.pkl": pickled})


def torch_persistent_id_not_a_storage(_: Path) -> tuple[str, str, bytes]:
    storage = _Storage()
    pickled = data_pkl({"shape": storage}, [(storage, ("module", Global("torch", "FloatStorage"),
                                                        "0", "cpu", 1))])  # fmt: skip
    return "torch", "codes.pt", rewrite(_plain_codes(), {"data.pkl": pickled})


def torch_big_endian(_: Path) -> tuple[str, str, bytes]:
    return "sequence", "codes.pt", rewrite(_plain_codes(), {"byteorder": b"big"})


# --- state tampering ------------------------------------------------------------------------


def torch_build_on_storage_type(_: Path) -> tuple[str, str, bytes]:
    pickled = _build_on_global("torch", "FloatStorage")
    return "torch", "codes.pt", rewrite(_plain_codes(), {"data.pkl": pickled})


def vhap_npz_pickled_member(_: Path) -> tuple[str, str, bytes]:
    """A VHAP file whose ``expr`` is an object array: ``np.load(allow_pickle=True)`` would run the
    global its pickle names."""
    members = {}
    for key, value in (("rotation", np.zeros((2, 3))), ("translation", np.zeros((2, 3))),
                       ("neck_pose", np.zeros((2, 3))), ("jaw_pose", np.zeros((2, 3))),
                       ("eyes_pose", np.zeros((2, 6))), ("shape", np.zeros(300)),
                       ("timestep_id", np.array(["00000", "00001"]))):  # fmt: skip
        stream = io.BytesIO()
        np.save(stream, value)
        members[f"{key}.npy"] = stream.getvalue()
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    payload = b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00touch pwned\x85R."
    members["expr.npy"] = _npy(header, payload)
    return "sequence", "tracked_flame_params.npz", _zip(members)


def frame_names_os_system(_: Path) -> tuple[str, str, bytes]:
    command = "touch pwned"
    pickled = b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(command)) + command.encode()
    pickled += b"\x85R."
    return "sequence", "00000.frame", rewrite(_plain_codes(), {"data.pkl": pickled})


HOSTILE_SEQUENCE: dict[str, dict[str, Callable[[Path], tuple[str, str, bytes]]]] = {
    "memory corruption": {
        f.__name__: f for f in (
            torch_tensor_reads_past_storage, torch_storage_named_with_two_types,
            frame_numpy_array_with_hidden_object_field,
        )
    },
    "resource bomb": {
        f.__name__: f for f in (
            torch_storage_numel_bomb, torch_stride_zero_tensor_bomb, frame_memo_bomb,
            torch_storage_zip_bomb, npz_text_member_promises_terabytes, json_nested_a_million_deep,
        )
    },
    "undocumented exception": {
        f.__name__: f for f in (
            legacy_torch_file_named_pt, torch_unknown_compression, torch_two_data_pkl,
            torch_persistent_id_not_a_storage, torch_big_endian,
        )
    },
    "state tampering": {
        f.__name__: f for f in (
            torch_build_on_storage_type, frame_names_os_system, vhap_npz_pickled_member,
        )
    },
}  # fmt: skip
