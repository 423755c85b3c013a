"""Read ``.npy`` and ``.npz`` files strictly: no ``np.load``, nothing allocated on a file's word.

``np.load(allow_pickle=True)`` unpickles object arrays with the plain unpickler (which runs any
global the file names), parses headers with ``ast.literal_eval`` (``SyntaxError`` and
``RecursionError`` on hostile text) and believes the shape a header promises. Here:

- the header is parsed by a small strict parser (``descr``, ``fortran_order``, ``shape`` only,
  at most :data:`MAX_HEADER_BYTES`), and the dtype must be a plain numeric one
  (:mod:`.plain_arrays`) or, in a ``.npy`` only, an object array (read by :mod:`.safe_pickle`);
- the shape must need exactly the bytes that follow the header, checked before allocating;
- an ``.npz`` member must be stored or deflated, unencrypted, at most :data:`MAX_MEMBER_BYTES`
  uncompressed and at most :data:`MAX_DEFLATE_RATIO` times its compressed size, and an archive
  at most :data:`MAX_NPZ_BYTES` uncompressed and :data:`MAX_NPZ_MEMBERS` members, all checked
  before anything is decompressed.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from .plain_arrays import ArrayFormatError, checked_shape, empty_for, plain_dtype, text_dtype
from .safe_pickle import describe_error, load_pickle_bytes

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000  # numpy's own limit for untrusted headers
# FLAME's largest file, FLAME_texture.npz, holds a 512x512x3x200 float64 basis: 1.26 GB.
MAX_MEMBER_BYTES = 2 << 30
MAX_NPZ_BYTES = 3 << 30
MAX_NPZ_MEMBERS = 256
# Float data deflates to about half; only runs of equal bytes deflate 1000:1 (a zip bomb).
MAX_DEFLATE_RATIO = 100
_RATIO_FREE_BYTES = 64 << 20  # small members may be all zeros

_STRING = r"'(?P<{0}>[^'\\]{{0,40}})'|\"(?P<{0}2>[^\"\\]{{0,40}})\""
_HEADER_ITEM = re.compile(
    r"\s*'(?P<key>descr|fortran_order|shape)'\s*:\s*(?:"
    + _STRING.format("text")
    + r"|(?P<flag>True|False)|\((?P<shape>[\s\dL,]{0,400})\))\s*(?:,|(?=\}))"
)


def parse_header(text: str) -> tuple[str, bool, tuple[int, ...]]:
    """``(descr, fortran_order, shape)`` from a ``.npy`` header dict literal such as
    ``{'descr': '<f8', 'fortran_order': False, 'shape': (5023, 3), }``; ValueError otherwise."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError("header is not a dict literal")
    body = body[1:-1]
    found: dict[str, Any] = {}
    position = 0
    while body[position:].strip():
        match = _HEADER_ITEM.match(body, position)
        if match is None or match.group("key") in found:
            raise ValueError(f"header has an unexpected entry near {body[position:position + 40]!r}")
        key = match.group("key")
        if key == "descr":
            value = match.group("text") or match.group("text2")
            if value is None:
                raise ValueError("header 'descr' is not a dtype string (structured dtype?)")
        elif key == "fortran_order":
            if match.group("flag") is None:
                raise ValueError("header 'fortran_order' is not True or False")
            value = match.group("flag") == "True"
        else:
            if match.group("shape") is None:
                raise ValueError("header 'shape' is not a tuple")
            parts = [p.strip().rstrip("L") for p in match.group("shape").split(",")]
            if parts and parts[-1] == "":
                parts.pop()
            if not all(p.isdigit() and len(p) <= 19 for p in parts):
                raise ValueError("header 'shape' is not a tuple of sizes")
            value = checked_shape(tuple(int(p) for p in parts))
        found[key] = value
        position = match.end()
    if set(found) != {"descr", "fortran_order", "shape"}:
        raise ValueError("header lacks 'descr', 'fortran_order' or 'shape'")
    return found["descr"], found["fortran_order"], found["shape"]


def _read_header(head: bytes) -> tuple[str, bool, tuple[int, ...], int]:
    """(descr, fortran_order, shape, offset of the data) from the first bytes of a ``.npy``."""
    if head[:6] != MAGIC or len(head) < 10:
        raise ValueError("no .npy magic string (not a .npy file)")
    major = head[6]
    if major == 1:
        (length,), start = struct.unpack_from("<H", head, 8), 10
    elif major in (2, 3):
        if len(head) < 12:
            raise ValueError("the .npy header is truncated")
        (length,), start = struct.unpack_from("<I", head, 8), 12
    else:
        raise ValueError(f".npy format version {major}.{head[7]} is unknown")
    if length > MAX_HEADER_BYTES:
        raise ValueError(f".npy header of {length} bytes (the limit is {MAX_HEADER_BYTES})")
    raw = head[start : start + length]
    if len(raw) != length:
        raise ValueError("the .npy header is truncated")
    text = raw.decode("utf-8" if major == 3 else "latin1")
    return (*parse_header(text), start + length)


class PickledMemberError(ArrayFormatError):
    """An object (pickled) array where only numbers are allowed."""


def _dtype(descr: str, allow_object: bool, allow_text: bool = False) -> np.dtype | None:
    if allow_text and "U" in descr:
        return text_dtype(descr)
    if descr in ("|O", "O", "|O8", "<O8", ">O8"):
        if allow_object:
            return None
        raise PickledMemberError("is a pickled object array; expected a numeric array")
    return plain_dtype(descr)


def _bytes_of(array: np.ndarray) -> memoryview:
    """A writable byte view of a fresh (C or Fortran contiguous) array."""
    return memoryview(array.reshape(-1, order="A").view(np.uint8))


def _read_into(handle: Any, view: memoryview) -> None:
    """Fill ``view`` from ``handle`` (exactly its size; EOFError if the stream ends early)."""
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])
        if not got:
            raise EOFError("the array data ends early (truncated?)")
        filled += got


def load_npy(path: str | Path) -> Any:
    """The content of a ``.npy`` file: a plain array, or for an object array the unpickled
    array (restricted reader). A 0-d object array gives its item (e.g. a dict).

    Raises:
        FlameFileError: missing, truncated, over a limit, or not a ``.npy`` of numbers or objects.
        UnsafePickleError: the object array's pickle names a global FLAME files never use.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(path, "no such file; expected a .npy file")
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            descr, fortran_order, shape, offset = _read_header(handle.read(12 + MAX_HEADER_BYTES))
            dtype = _dtype(descr, allow_object=True)
            handle.seek(offset)
            if dtype is not None:
                array = empty_for(dtype, shape, fortran_order, size - offset)
                _read_into(handle, _bytes_of(array))
                return array
            body = handle.read()
    except FlameFileError:
        raise
    except Exception as error:  # noqa: BLE001 - no other exception may leave a reader
        raise FlameFileError(path, f"is not a readable .npy file ({describe_error(error)})") from None
    value = load_pickle_bytes(body, path)
    if not isinstance(value, np.ndarray) or value.dtype != object or value.shape != shape:
        raise FlameFileError(
            path, f"object array pickle holds a {type(value).__name__}, expected an array of "
            f"shape {shape}",
        )
    return value[()] if value.shape == () else value


def _check_archive(
    path: Path,
    archive: zipfile.ZipFile,
    size: int,
    max_members: int = MAX_NPZ_MEMBERS,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_NPZ_BYTES,
) -> list[zipfile.ZipInfo]:
    """The archive's members, once every limit is checked (nothing decompressed yet); the
    torch-zip reader (:mod:`.torch_zip`) applies the same rules with its own sizes."""
    members = archive.infolist()
    if len(members) > max_members:
        raise ArrayFormatError(f"{len(members)} members (the limit is {max_members})")
    total = 0
    for info in members:
        name = info.filename
        if info.flag_bits & 0x1:
            raise ArrayFormatError(f"member {name!r:.80} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArrayFormatError(
                f"member {name!r:.80} uses zip compression method {info.compress_type}; "
                "only stored or deflated members are read"
            )
        if info.file_size > max_member_bytes:
            raise ArrayFormatError(
                f"member {name!r:.80} unpacks to {info.file_size} bytes (the limit is "
                f"{max_member_bytes})"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise ArrayFormatError(f"stored member {name!r:.80} has two different sizes")
        if info.compress_size > size:
            raise ArrayFormatError(f"member {name!r:.80} is larger than the archive")
        ratio_limit = MAX_DEFLATE_RATIO * info.compress_size + _RATIO_FREE_BYTES
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > ratio_limit:
            raise ArrayFormatError(
                f"member {name!r:.80} would unpack {info.file_size} bytes from "
                f"{info.compress_size} (a zip bomb?)"
            )
        total += info.file_size
    if total > max_total_bytes:
        raise ArrayFormatError(f"members unpack to {total} bytes (the limit is {max_total_bytes})")
    return members


def _check_member_count(path: Path, max_members: int = MAX_NPZ_MEMBERS) -> None:
    """Refuse an archive whose end record announces too many members, before the zip reader
    builds one entry per member."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        handle.seek(max(0, end - 22))
        tail = handle.read(22)
    if tail[:4] == b"PK\x05\x06":
        (count,) = struct.unpack_from("<H", tail, 10)
        if max_members < count < 0xFFFF:
            raise ArrayFormatError(f"{count} members (the limit is {max_members})")


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, allow_text: bool = False
) -> np.ndarray:
    with archive.open(info) as member:
        head = member.read(12 + MAX_HEADER_BYTES if info.file_size > 12 else 12)
        descr, fortran_order, shape, offset = _read_header(head)
        dtype = _dtype(descr, allow_object=False, allow_text=allow_text)
        array = empty_for(dtype, shape, fortran_order, info.file_size - offset)
        prefix = head[offset:]
        flat = _bytes_of(array)
        if len(prefix) > len(flat):
            raise ArrayFormatError("member has bytes after its array")
        flat[: len(prefix)] = prefix
        _read_into(member, flat[len(prefix) :])
        if member.read(1):
            raise ArrayFormatError("member has bytes after its array")
    return array


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra length


def _read_stored_member(
    handle: Any, info: zipfile.ZipInfo, size: int, allow_text: bool = False
) -> np.ndarray:
    """A stored (uncompressed) member read straight from the archive file into its array:
    one copy, where the zip reader would copy every chunk twice. The same checks as the zip
    reader: local header signature and name, bounds, and the CRC-32 of the member."""
    handle.seek(info.header_offset)
    local = handle.read(_LOCAL_HEADER.size)
    if len(local) != _LOCAL_HEADER.size:
        raise ArrayFormatError("member's local header is truncated")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(local)
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad magic number for a member's local header")
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if handle.read(name_length) != info.orig_filename.encode(encoding):
        raise zipfile.BadZipFile("member's local and central file names differ")
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if start + info.file_size > size:
        raise ArrayFormatError("member runs past the end of the archive (truncated?)")
    handle.seek(start)
    head = handle.read(min(info.file_size, 12 + MAX_HEADER_BYTES))
    descr, fortran_order, shape, offset = _read_header(head)
    dtype = _dtype(descr, allow_object=False, allow_text=allow_text)
    array = empty_for(dtype, shape, fortran_order, info.file_size - offset)
    handle.seek(start + offset)
    flat = _bytes_of(array)
    _read_into(handle, flat)
    if zlib.crc32(flat, zlib.crc32(head[:offset])) != info.CRC:
        raise zipfile.BadZipFile(f"bad CRC-32 for member {info.filename!r:.80}")
    return array


def load_npz(
    path: str | Path,
    required: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    allow_text: bool = False,
) -> dict[str, np.ndarray]:
    """The members of an ``.npz`` archive as arrays (no pickles, limits checked first).

    ``only``: read just these keys (others are not decompressed; missing ones are skipped).
    ``allow_text``: also read fixed-width unicode members (``<U5``: VHAP's ``timestep_id``).

    Raises:
        FlameFileError: missing file, not an npz, truncated or corrupt member, a pickled
            (object) member, a member over a limit, or a key of ``required`` missing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(path, "no such file; expected an .npz archive")
    arrays: dict[str, np.ndarray] = {}
    key = None
    try:
        size = path.stat().st_size
        _check_member_count(path)
        with zipfile.ZipFile(path) as archive, path.open("rb") as handle:
            for info in _check_archive(path, archive, size):
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if only is not None and key not in only:
                    continue
                if info.compress_type == zipfile.ZIP_STORED:
                    arrays[key] = _read_stored_member(handle, info, size, allow_text)
                else:
                    arrays[key] = _read_member(archive, info, allow_text)
            key = None
    except FlameFileError:
        raise
    except Exception as error:  # noqa: BLE001 - no other exception may leave a reader
        where = f"key '{key}': " if key is not None else ""
        if isinstance(error, PickledMemberError):
            raise FlameFileError(path, f"{where}{error} (pickled members are not loaded)") from None
        if isinstance(error, zipfile.BadZipFile) and key is None:
            raise FlameFileError(path, f"is not an .npz archive ({error})") from None
        raise FlameFileError(
            path, f"is not a readable .npz archive ({where}{describe_error(error)})"
        ) from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise FlameFileError(
            path,
            f"has no key {', '.join(repr(k) for k in missing)}; found {sorted(arrays)}, "
            f"expected {', '.join(required)}",
        )
    return arrays
