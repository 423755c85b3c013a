"""Uncompressed Truevision TGA images, read with numpy.

The batch renderer has Blender save each picture as an uncompressed 8-bit RGBA TGA (Blender's
fastest 8-bit writer: no compression on Blender's thread), and the writer thread turns it into
the sample's PNG. Only what such files hold is read: image type 2 (true colour) or 3 (grey),
8, 24 or 32 bits per pixel, either row order. Anything else is a :class:`FlameFileError`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import FlameFileError, read_file_bytes

_HEADER = struct.Struct("<BBBHHBHHHHBB")
_TRUE_COLOUR, _GREY = 2, 3
_CHANNELS = {(_TRUE_COLOUR, 24): 3, (_TRUE_COLOUR, 32): 4, (_GREY, 8): 1}


def read_tga(path: str | Path) -> np.ndarray:
    """The pixels of an uncompressed TGA: ``(H, W, C)`` uint8, RGB(A) order (C = 3 or 4) or
    ``(H, W)`` for grey, row 0 = top of the image."""
    path = Path(path)
    data = read_file_bytes(path, "TGA")
    return decode_tga(data, source=path)


def decode_tga(data: bytes, source: str | Path | None = None) -> np.ndarray:
    """Decode TGA bytes (see :func:`read_tga`)."""
    if len(data) < _HEADER.size:
        raise FlameFileError(source, f"TGA file of {len(data)} bytes is shorter than its header")
    (id_length, colour_map_type, image_type, _, map_length, map_entry_bits, _, _,
     width, height, bits, descriptor) = _HEADER.unpack_from(data, 0)
    channels = _CHANNELS.get((image_type, bits))
    if channels is None or colour_map_type not in (0, 1):
        raise FlameFileError(
            source,
            f"TGA image type {image_type} with {bits} bits per pixel; expected an uncompressed "
            "true-colour (24 or 32 bits) or grey (8 bits) image",
        )
    if width == 0 or height == 0:
        raise FlameFileError(source, f"TGA image of {width} x {height} pixels is empty")
    start = _HEADER.size + id_length + (map_length * ((map_entry_bits + 7) // 8) if colour_map_type else 0)
    size = width * height * channels
    if len(data) < start + size:
        raise FlameFileError(
            source, f"TGA file is truncated: {width} x {height} x {channels} bytes of pixels expected "
            f"after byte {start}, {max(0, len(data) - start)} found",
        )
    pixels = np.frombuffer(data, np.uint8, count=size, offset=start).reshape(height, width, channels)
    if not descriptor & 0x20:  # bit 5 clear: rows stored bottom to top
        pixels = pixels[::-1]
    if descriptor & 0x10:  # bit 4 set: columns stored right to left
        pixels = pixels[:, ::-1]
    if channels == 1:
        return np.ascontiguousarray(pixels[:, :, 0])
    order = [2, 1, 0, 3][:channels]  # stored B G R (A)
    return np.ascontiguousarray(pixels[:, :, order])
