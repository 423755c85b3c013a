"""PNG and EXR files of core/render/png.py and core/render/exr.py, opened by Blender's own image loader.

The project's readers are checked against the same loader: a writer and a reader that agree only
with each other would pass a round trip while writing files nobody else can open.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender.core.render.exr import read_exr, write_exr  # noqa: E402
from flame_blender.core.render.png import read_png, write_png  # noqa: E402


def blender_pixels(path: Path, non_color: bool) -> np.ndarray:
    """``(H, W, 4)`` float32 as Blender loads the file, top row first."""
    image = bpy.data.images.load(str(path))
    try:
        if non_color:  # the stored values, not converted from sRGB
            image.colorspace_settings.name = "Non-Color"
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]  # Blender's row 0 is the bottom


RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "image",
    [
        RNG.integers(0, 256, (5, 7), dtype=np.uint8),
        RNG.integers(0, 256, (4, 4, 2), dtype=np.uint8),
        RNG.integers(0, 256, (9, 4, 3), dtype=np.uint8),
        RNG.integers(0, 256, (3, 8, 4), dtype=np.uint8),
        RNG.integers(0, 65536, (6, 5), dtype=np.uint16),
    ],
    ids=["gray8", "gray_alpha8", "rgb8", "rgba8", "gray16"],
)
def test_png_files_open_in_blender(tmp_path: Path, image: np.ndarray) -> None:
    path = write_png(tmp_path / "image.png", image)
    scale = 65535 if image.dtype == np.uint16 else 255
    pixels = np.rint(blender_pixels(path, non_color=True).astype(np.float64) * scale).astype(np.int64)
    planes = image[..., None] if image.ndim == 2 else image
    colour = planes[..., :1] if planes.shape[-1] <= 2 else planes[..., :3]
    assert np.array_equal(pixels[..., : colour.shape[-1]], colour)
    if planes.shape[-1] in (2, 4):
        assert np.array_equal(pixels[..., 3], planes[..., -1])
    else:
        assert (pixels[..., 3] == scale).all()
    assert np.array_equal(read_png(path), image)  # our reader agrees with Blender's


def test_exr_files_open_in_blender(tmp_path: Path) -> None:
    channels = {name: RNG.standard_normal((7, 11)).astype(np.float32) for name in "RGB"}
    channels["A"] = np.ones((7, 11), np.float32)
    channels["B"][:] = 0.0  # a plane that compresses
    path = write_exr(tmp_path / "colour.exr", channels)
    pixels = blender_pixels(path, non_color=False)  # EXR is linear: no conversion either way
    for index, name in enumerate("RGBA"):
        assert np.array_equal(pixels[..., index], channels[name]), name
    depth = {"Y": (RNG.random((5, 9)) * 3).astype(np.float32)}  # how the depth maps are written
    path = write_exr(tmp_path / "depth.exr", depth)
    pixels = blender_pixels(path, non_color=False)
    assert np.array_equal(pixels[..., 0], depth["Y"]) and np.array_equal(pixels[..., 1], depth["Y"])
    assert np.array_equal(read_exr(path)["Y"], pixels[..., 0])
