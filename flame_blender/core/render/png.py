"""PNG files with numpy and zlib only (Blender's Python has no PIL).

Arrays are ``(H, W)`` (grey), ``(H, W, 2)`` (grey + alpha), ``(H, W, 3)`` (RGB) or
``(H, W, 4)`` (RGBA), row 0 = top of the image, dtype uint8 or uint16. Writing is atomic: the
bytes go to a temporary file in the same folder, which is then renamed onto the final name, so
a reader never sees half a PNG.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import FlameFileError, read_file_bytes
from ..io.atomic import atomic_write_bytes

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# channels -> PNG colour type
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
_CHANNELS = {value: key for key, value in _COLOUR_TYPES.items()}


def encode_png(image: np.ndarray, compression: int = 6) -> bytes:
    """The PNG bytes of ``image`` (uint8 or uint16, 2-D or 3-D with 1-4 channels)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _COLOUR_TYPES:
        raise ValueError(f"expected an (H, W) or (H, W, 1..4) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        bit_depth = 8
    elif array.dtype == np.uint16:
        bit_depth = 16
        array = array.astype(">u2")  # PNG samples are big-endian
    else:
        raise ValueError(f"expected uint8 or uint16 pixels, got {array.dtype}")
    height, width, channels = array.shape
    rows = np.ascontiguousarray(array).reshape(height, -1).view(np.uint8)
    # Filter type 1 ("Sub") on every row: a vectorised difference that compresses
    # label images and renders well, without the per-byte loop of adaptive filters.
    stride = channels * bit_depth // 8
    filtered = rows.copy()
    filtered[:, stride:] = rows[:, stride:] - rows[:, :-stride]
    raw = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, _COLOUR_TYPES[channels], 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, compression))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | Path, image: np.ndarray, compression: int = 6) -> Path:
    """Write ``image`` (see :func:`encode_png`) to ``path`` atomically."""
    return atomic_write_bytes(path, encode_png(image, compression))


def read_png(path: str | Path) -> np.ndarray:
    """Read a non-interlaced 8- or 16-bit grey, grey+alpha, RGB or RGBA PNG.

    Returns ``(H, W)`` for grey images, else ``(H, W, C)``; uint8 or uint16; row 0 = top.
    """
    path = Path(path)
    data = read_file_bytes(path, "PNG")
    return decode_png(data, source=path)


def decode_png(data: bytes, source: str | Path | None = None) -> np.ndarray:
    """Decode PNG bytes (see :func:`read_png`)."""
    if not data.startswith(_SIGNATURE):
        raise FlameFileError(source, "not a PNG file (bad signature)")
    position = len(_SIGNATURE)
    header = None
    compressed = []
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise FlameFileError(source, "PNG has no IHDR chunk")
    width, height, bit_depth, colour_type, _, _, interlace = header
    if colour_type not in _CHANNELS or bit_depth not in (8, 16) or interlace:
        raise FlameFileError(
            source,
            f"unsupported PNG (colour type {colour_type}, bit depth {bit_depth}, interlace "
            f"{interlace}); expected non-interlaced 8/16-bit grey, grey+alpha, RGB or RGBA",
        )
    channels = _CHANNELS[colour_type]
    stride = channels * bit_depth // 8
    row_bytes = width * stride
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(compressed)), np.uint8)
    except zlib.error as error:
        raise FlameFileError(source, f"corrupt PNG image data ({error})") from None
    if raw.size != height * (row_bytes + 1):
        raise FlameFileError(source, "PNG image data has the wrong size for its header")
    raw = raw.reshape(height, row_bytes + 1)
    pixels = _unfilter(raw[:, 0], raw[:, 1:], stride, source)
    dtype = np.uint8 if bit_depth == 8 else np.dtype(">u2")
    image = pixels.view(dtype).reshape(height, width, channels).astype(
        np.uint8 if bit_depth == 8 else np.uint16
    )
    return image[:, :, 0] if channels == 1 else image


def _unfilter(kinds: np.ndarray, rows: np.ndarray, stride: int, source) -> np.ndarray:
    height, row_bytes = rows.shape
    out = np.zeros((height, row_bytes), np.uint8)
    previous = np.zeros(row_bytes, np.uint8)
    for y in range(height):
        kind = int(kinds[y])
        line = rows[y]
        if kind == 0:
            current = line.copy()
        elif kind == 1:
            current = _undo_sub(line, stride)
        elif kind == 2:
            current = line + previous
        elif kind in (3, 4):
            current = _undo_average_or_paeth(line, previous, stride, kind)
        else:
            raise FlameFileError(source, f"unknown PNG filter type {kind} on row {y}")
        out[y] = current
        previous = current
    return out


def _undo_sub(line: np.ndarray, stride: int) -> np.ndarray:
    # Each byte adds the decoded byte one pixel to the left: a running sum per channel lane.
    padded = np.zeros(-(-line.size // stride) * stride, np.int64)
    padded[: line.size] = line
    lanes = np.cumsum(padded.reshape(-1, stride), axis=0) & 0xFF
    return lanes.reshape(-1)[: line.size].astype(np.uint8)


def _undo_average_or_paeth(
    line: np.ndarray, previous: np.ndarray, stride: int, kind: int
) -> np.ndarray:
    # Sequential by nature (each byte needs the decoded byte to its left): a plain loop.
    current = bytearray(line.tobytes())
    above = previous.tobytes()
    for i in range(len(current)):
        left = current[i - stride] if i >= stride else 0
        up = above[i]
        if kind == 3:
            current[i] = (current[i] + ((left + up) >> 1)) & 0xFF
        else:
            upper_left = above[i - stride] if i >= stride else 0
            estimate = left + up - upper_left
            distance_left = abs(estimate - left)
            distance_up = abs(estimate - up)
            distance_upper_left = abs(estimate - upper_left)
            if distance_left <= distance_up and distance_left <= distance_upper_left:
                predictor = left
            elif distance_up <= distance_upper_left:
                predictor = up
            else:
                predictor = upper_left
            current[i] = (current[i] + predictor) & 0xFF
    return np.frombuffer(bytes(current), np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
