"""OpenEXR scan-line files with numpy and zlib only (no OpenEXR library needed).

Reads single- and multi-part scan-line files with NONE, ZIPS or ZIP compression and HALF, FLOAT or UINT
channels: what Blender writes with the ZIP, ZIPS or NONE codecs (multilayer files included;
layer channels are named ``Layer.Pass.Channel``). Writes float32 channels with ZIP compression.
Images are ``(H, W)`` per channel, row 0 = top of the image (EXR's own order).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import FlameFileError, read_file_bytes
from ..io.atomic import atomic_write_bytes

_MAGIC = 20000630
_NO_COMPRESSION, _ZIPS, _ZIP = 0, 2, 3
_LINES_PER_BLOCK = {_NO_COMPRESSION: 1, _ZIPS: 1, _ZIP: 16}
_COMPRESSION_NAMES = {0: "NONE", 1: "RLE", 2: "ZIPS", 3: "ZIP", 4: "PIZ", 5: "PXR24", 6: "B44",
                      7: "B44A", 8: "DWAA", 9: "DWAB"}
# EXR pixel type -> numpy dtype (little-endian on disk)
_PIXEL_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """Every channel of an EXR file: name -> ``(H, W)`` array (float32, or uint32 for UINT)."""
    path = Path(path)
    data = read_file_bytes(path, "EXR")
    return decode_exr(data, source=path)


def decode_exr(data: bytes, source: str | Path | None = None) -> dict[str, np.ndarray]:
    """Decode EXR bytes (see :func:`read_exr`); the channels of every part of a multi-part file."""
    if len(data) < 8 or struct.unpack_from("<i", data, 0)[0] != _MAGIC:
        raise FlameFileError(source, "not an OpenEXR file (bad magic number)")
    flags = struct.unpack_from("<I", data, 4)[0]
    if flags & 0x200 or flags & 0x800:
        raise FlameFileError(source, "tiled or deep EXR; expected scan-line images")
    multipart = bool(flags & 0x1000)
    headers = []
    position = 8
    while True:
        header, position = _read_header(data, position, source)
        headers.append(header)
        if not multipart:
            break
        if data[position] == 0:  # an empty header ends the list of parts
            position += 1
            break
    layouts = [_layout(header, source) for header in headers]
    tables = []
    for layout in layouts:
        tables.append(np.frombuffer(data, "<u8", layout["blocks"], position))
        position += 8 * layout["blocks"]
    channels_out: dict[str, np.ndarray] = {}
    for part, (layout, offsets) in enumerate(zip(layouts, tables, strict=True)):
        planes = _read_part(data, layout, offsets, part if multipart else None, source)
        channels_out.update(planes)
    return channels_out


def _layout(header: dict, source) -> dict:
    channels = header.get("channels")
    window = header.get("dataWindow")
    compression = header.get("compression")
    if channels is None or window is None or compression is None:
        raise FlameFileError(source, "EXR header lacks channels, dataWindow or compression")
    if header.get("type", "scanlineimage") != "scanlineimage":
        raise FlameFileError(source, f"EXR part of type {header['type']!r}; expected scan lines")
    if compression not in _LINES_PER_BLOCK:
        raise FlameFileError(
            source,
            f"EXR compression {_COMPRESSION_NAMES.get(compression, compression)} is not supported; "
            "expected NONE, ZIPS or ZIP (Blender's ZIP codec)",
        )
    x_min, y_min, x_max, y_max = window
    lines = _LINES_PER_BLOCK[compression]
    height = y_max - y_min + 1
    return {
        "channels": channels,
        "window": window,
        "compression": compression,
        "lines": lines,
        "blocks": header.get("chunkCount", -(-height // lines)),
    }


def _read_part(data: bytes, layout: dict, offsets: np.ndarray, part: int | None, source):
    channels = layout["channels"]
    x_min, y_min, x_max, y_max = layout["window"]
    width, height = x_max - x_min + 1, y_max - y_min + 1
    lines = layout["lines"]
    planes = {name: np.empty((height, width), dtype) for name, dtype in channels}
    pixel_bytes = sum(dtype.itemsize for _, dtype in channels)
    for offset in offsets:
        start = int(offset)
        if part is not None:
            start += 4  # multi-part chunks begin with their part number
        y, size = struct.unpack_from("<ii", data, start)
        chunk = data[start + 8 : start + 8 + size]
        rows = min(lines, y_max - y + 1)
        expected = rows * width * pixel_bytes
        if size != expected:
            if layout["compression"] == _NO_COMPRESSION:
                raise FlameFileError(source, f"EXR block at line {y} has the wrong size")
            chunk = _unzip(chunk, source)
        if len(chunk) != expected:
            raise FlameFileError(source, f"EXR block at line {y} has the wrong size")
        cursor = 0
        top = y - y_min
        for row in range(rows):
            for name, dtype in channels:
                planes[name][top + row] = np.frombuffer(chunk, dtype, width, cursor)
                cursor += width * dtype.itemsize
    return {
        name: plane.astype(np.float32) if plane.dtype.kind == "f" else plane.astype(np.uint32)
        for name, plane in planes.items()
    }


def write_exr(path: str | Path, channels: Mapping[str, np.ndarray]) -> Path:
    """Write float32 channels (name -> ``(H, W)``, row 0 = top) as a ZIP-compressed EXR, atomically.

    Viewers show channels named ``R``, ``G``, ``B`` (and ``A``) as colour, ``Y`` or ``Z`` as grey.
    """
    if not channels:
        raise ValueError("expected at least one channel")
    names = sorted(channels)  # EXR stores channels in alphabetical order
    planes = [np.ascontiguousarray(channels[name], dtype="<f4") for name in names]
    height, width = planes[0].shape
    if any(plane.shape != (height, width) for plane in planes):
        raise ValueError("every channel must have the same (H, W) shape")
    header = b"".join(
        [
            _attribute(
                "channels",
                "chlist",
                b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for n in names)
                + b"\0",
            ),
            _attribute("compression", "compression", bytes([_ZIP])),
            _attribute("dataWindow", "box2i", struct.pack("<iiii", 0, 0, width - 1, height - 1)),
            _attribute("displayWindow", "box2i", struct.pack("<iiii", 0, 0, width - 1, height - 1)),
            _attribute("lineOrder", "lineOrder", b"\0"),
            _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            _attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
            _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        ]
    ) + b"\0"
    lines = _LINES_PER_BLOCK[_ZIP]
    stacked = np.stack(planes, axis=1)  # (H, C, W): per scan line, channel after channel
    chunks = []
    for top in range(0, height, lines):
        raw = stacked[top : top + lines].tobytes()
        packed = _zip(raw)
        if len(packed) >= len(raw):
            packed = raw  # EXR rule: a block that does not shrink is stored as is
        chunks.append(struct.pack("<ii", top, len(packed)) + packed)
    start = 8 + len(header) + 8 * len(chunks)
    offsets = np.cumsum([0] + [len(chunk) for chunk in chunks[:-1]]) + start
    body = (
        struct.pack("<iI", _MAGIC, 2)
        + header
        + np.asarray(offsets, "<u8").tobytes()
        + b"".join(chunks)
    )
    return atomic_write_bytes(path, body)


def _zip(raw: bytes) -> bytes:
    data = np.frombuffer(raw, np.uint8)
    reordered = np.concatenate([data[0::2], data[1::2]])
    predicted = reordered.astype(np.int16)
    predicted[1:] = (reordered[1:].astype(np.int16) - reordered[:-1].astype(np.int16) + 128) & 0xFF
    return zlib.compress(predicted.astype(np.uint8).tobytes(), 4)


def _unzip(chunk: bytes, source) -> bytes:
    try:
        data = np.frombuffer(zlib.decompress(chunk), np.uint8)
    except zlib.error as error:
        raise FlameFileError(source, f"corrupt EXR ZIP block ({error})") from None
    # Undo the predictor (a running sum of byte differences), then the even/odd byte split.
    reordered = ((np.cumsum(data.astype(np.int64) - 128) + 128) & 0xFF).astype(np.uint8)
    half = (data.size + 1) // 2
    out = np.empty(data.size, np.uint8)
    out[0::2] = reordered[:half]
    out[1::2] = reordered[half:]
    return out.tobytes()


def _read_header(data: bytes, position: int, source) -> tuple[dict, int]:
    header: dict = {}
    while True:
        if position >= len(data):
            raise FlameFileError(source, "EXR header is truncated")
        if data[position] == 0:
            return header, position + 1
        name, position = _read_string(data, position)
        kind, position = _read_string(data, position)
        size = struct.unpack_from("<i", data, position)[0]
        value = data[position + 4 : position + 4 + size]
        position += 4 + size
        if kind == "chlist":
            header["channels"] = _parse_channels(value, source)
        elif kind == "compression":
            header["compression"] = value[0]
        elif name == "dataWindow" and kind == "box2i":
            header["dataWindow"] = struct.unpack("<iiii", value)
        elif name == "chunkCount" and kind == "int":
            header["chunkCount"] = struct.unpack("<i", value)[0]
        elif name == "type" and kind == "string":
            header["type"] = value.decode("latin-1")


def _parse_channels(value: bytes, source) -> list[tuple[str, np.dtype]]:
    channels = []
    position = 0
    while position < len(value) and value[position] != 0:
        name, position = _read_string(value, position)
        pixel_type, _, _, x_sampling, y_sampling = struct.unpack_from("<iB3sii", value, position)
        position += 16
        if pixel_type not in _PIXEL_TYPES or x_sampling != 1 or y_sampling != 1:
            raise FlameFileError(source, f"EXR channel {name!r} has an unsupported type or sampling")
        channels.append((name, _PIXEL_TYPES[pixel_type]))
    return channels


def _read_string(data: bytes, position: int) -> tuple[str, int]:
    end = data.index(b"\0", position)
    return data[position:end].decode("latin-1"), end + 1


def _attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value
