"""The TGA reader against Blender's own writer and loader (bpy), and on broken files.

The batch renderer has Blender write each picture as an uncompressed TGA and makes the PNG from
it, so the reader must return exactly the pixels Blender's PNG writer would have stored.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from flame_blender.core.errors import FlameFileError
from flame_blender.core.render.png import read_png
from flame_blender.core.render.tga import decode_tga, read_tga


def _saved(image, path, file_format):
    image.filepath_raw = str(path)
    image.file_format = file_format
    image.save()
    return path


def test_blender_tga_reads_as_blender_png_and_as_blender_loads_it(blender_scene, tmp_path):
    import bpy

    width, height = 7, 5  # odd sizes: a row or column order mistake cannot hide
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (height, width, 4)).astype(np.float32) / 255.0
    image = bpy.data.images.new("tga check", width, height, alpha=True)
    image.pixels.foreach_set(pixels.reshape(-1))
    tga = _saved(image, tmp_path / "picture.tga", "TARGA_RAW")
    png = _saved(image, tmp_path / "picture.png", "PNG")

    ours = read_tga(tga)
    assert ours.shape == (height, width, 4) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, read_png(png))

    loaded = bpy.data.images.load(str(tga))
    blender = np.empty(width * height * 4, np.float32)
    loaded.pixels.foreach_get(blender)
    blender = np.rint(blender.reshape(height, width, 4)[::-1] * 255).astype(np.uint8)  # row 0 = top
    np.testing.assert_array_equal(ours, blender)


def test_a_rendered_picture_as_tga_is_the_png_blender_writes(blender_scene, tmp_path):
    """Colour management (the scene's view transform) and dithering apply to both files alike."""
    import bpy

    from flame_blender.blender.render import passes

    scene = bpy.context.scene
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0)
    bpy.ops.object.camera_add(location=(0.0, -4.0, 0.5), rotation=(1.45, 0.0, 0.0))
    scene.camera = bpy.context.object
    bpy.ops.object.light_add(type="SUN", rotation=(0.6, 0.2, 0.0))
    scene.render.engine = "CYCLES"
    scene.render.resolution_x, scene.render.resolution_y = 24, 16
    scene.render.resolution_percentage = 100
    scene.render.dither_intensity = 1.0
    passes.render_picture_scratch(scene, tmp_path / "picture.tga", samples=2, transparent=True, denoise=False)
    passes.use_png_rgba8(scene.render.image_settings)
    bpy.data.images["Render Result"].save_render(str(tmp_path / "picture.png"), scene=scene)
    ours, blender = read_tga(tmp_path / "picture.tga"), read_png(tmp_path / "picture.png")
    assert ours.shape == (16, 24, 4) and 0 < ours[..., 3].mean() < 255  # sphere and background
    np.testing.assert_array_equal(ours, blender)


def _header(image_type=2, bits=32, width=2, height=2, descriptor=0x28, id_length=0):
    return struct.pack("<BBBHHBHHHHBB", id_length, 0, image_type, 0, 0, 0, 0, 0, width, height, bits, descriptor)


def test_row_and_column_order_and_grey():
    # a 2 x 2 BGRA image stored top row first, then the same stored bottom row first
    top, bottom = [[1, 2, 3, 4], [5, 6, 7, 8]], [[9, 10, 11, 12], [13, 14, 15, 16]]
    expected = np.array([[[3, 2, 1, 4], [7, 6, 5, 8]], [[11, 10, 9, 12], [15, 14, 13, 16]]], np.uint8)
    stored_top_first = _header(descriptor=0x28) + bytes(np.array([top, bottom], np.uint8).tobytes())
    stored_bottom_first = _header(descriptor=0x08) + bytes(np.array([bottom, top], np.uint8).tobytes())
    np.testing.assert_array_equal(decode_tga(stored_top_first), expected)
    np.testing.assert_array_equal(decode_tga(stored_bottom_first), expected)
    right_to_left = _header(descriptor=0x38) + bytes(np.array([top[::-1], bottom[::-1]], np.uint8).tobytes())
    np.testing.assert_array_equal(decode_tga(right_to_left), expected)
    grey = decode_tga(_header(image_type=3, bits=8, descriptor=0x20, id_length=3) + b"abc" + bytes([1, 2, 3, 4]))
    np.testing.assert_array_equal(grey, [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "shorter than its header"),
        (_header(image_type=10), "image type 10"),  # run-length encoded
        (_header(bits=16), "16 bits"),
        (_header(width=0), "empty"),
        (_header() + bytes(15), "truncated"),
        (_header(width=65535, height=65535), "truncated"),  # a huge header, no pixels
    ],
)
def test_broken_files_are_refused(data, message, tmp_path):
    path = tmp_path / "broken.tga"
    path.write_bytes(data)
    with pytest.raises(FlameFileError, match=message) as error:
        read_tga(path)
    assert "broken.tga" in str(error.value)
