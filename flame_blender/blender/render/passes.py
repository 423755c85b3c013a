"""Two Cycles renders per image: the picture, then its ground truth, in one persistent session.

The picture ("beauty") uses the user's samples, Cycles' default 1.5 px pixel filter and the
denoiser, and is saved by Blender (so the scene's view transform applies). The ground truth is a
second render at one sample with a 0.01 px pixel filter, so every pixel of the depth, normal and
label passes is the exact value at the pixel's centre: no blending across silhouettes, and
depth maps that agree with projected geometry to well under a millimetre. It costs a few
per cent of the picture's time.

Both renders run in one Cycles session kept between renders (``use_persistent_data``): after
the first image, a render re-syncs only what changed (the head's mesh, camera, lights, albedo
image), and switching between the picture's and the ground truth's settings only updates the
film and integrator, so the ground-truth render costs little more than its one sample.

Depth, normals and labels come back as arrays through a multilayer EXR that Blender writes and
:mod:`core.exr` reads (``Render Result`` has no pixels in background mode). Works with Blender
4.2 (``file_format`` only) and 5.0 (``media_type`` first), chosen with ``hasattr``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ...core.render.exr import read_exr
from .material import LABEL_AOV

GROUND_TRUTH_FILTER = 0.01  # px: Cycles' smallest pixel filter, i.e. one point per pixel
BACKGROUND_DEPTH = 1e9  # Cycles writes 1e10 where a ray hits nothing
NO_HIT_DEPTH = 1e10


@dataclass
class GroundTruth:
    """Per-pixel ground truth, row 0 = top of the image."""

    depth: np.ndarray  # (H, W) float32 camera z in metres, 0 on background
    normals_world: np.ndarray  # (H, W, 3) float32 Blender world-space unit normals, 0 on background
    labels: np.ndarray  # (H, W) uint8 segmentation label values
    mask: np.ndarray  # (H, W) bool, True where the head (any surface) is


class RenderTimer:
    """Seconds spent inside Cycles' renders, measured by the render_pre/render_post handlers."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.durations: list[float] = []  # one per render, in order
        #: per render, seconds from its start to Cycles' first "Sample" status: scene sync,
        #: kernel and device set-up (0 when Cycles reported no sample)
        self.sync_durations: list[float] = []
        self._started: float | None = None
        self._sampling_started: float | None = None

    def _pre(self, *args) -> None:
        self._started = time.perf_counter()
        self._sampling_started = None

    def _stats(self, text, *args) -> None:
        # Cycles reports "... | Sample 0/16" once the scene is synced and sampling begins
        if self._sampling_started is None and self._started is not None and "| Sample " in str(text):
            self._sampling_started = time.perf_counter()

    def _post(self, *args) -> None:
        if self._started is not None:
            duration = time.perf_counter() - self._started
            self.seconds += duration
            self.durations.append(duration)
            sampling = self._sampling_started
            self.sync_durations.append(sampling - self._started if sampling is not None else 0.0)
            self._started = None

    def _handlers(self):
        return (
            (bpy.app.handlers.render_pre, self._pre),
            (bpy.app.handlers.render_post, self._post),
            (bpy.app.handlers.render_stats, self._stats),
        )

    def __enter__(self) -> RenderTimer:
        for handlers, function in self._handlers():
            handlers.append(function)
        return self

    def __exit__(self, *exc) -> None:
        for handlers, function in self._handlers():
            if function in handlers:
                handlers.remove(function)



def use_rgba8(settings, file_format: str) -> None:
    """Image settings for an 8-bit RGBA file of ``file_format`` ("PNG", "TARGA_RAW"; Blender 5.0
    first needs a plain-image media type)."""
    if hasattr(settings, "media_type"):
        settings.media_type = "IMAGE"
    settings.file_format = file_format
    settings.color_mode = "RGBA"
    settings.color_depth = "8"


def use_png_rgba8(settings) -> None:
    """Image settings for an 8-bit RGBA PNG."""
    use_rgba8(settings, "PNG")


def prepare_scene(
    scene: bpy.types.Scene, width: int, height: int, samples: int
) -> bpy.types.ViewLayer:
    """Cycles at ``width`` x ``height``, the ground-truth passes and the label AOV enabled."""
    scene.render.engine = "CYCLES"
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.cycles.samples = samples
    # keep Cycles' session between renders: later renders sync only what changed
    scene.render.use_persistent_data = True
    view_layer = scene.view_layers[0]
    view_layer.use_pass_z = True
    view_layer.use_pass_normal = True
    if LABEL_AOV not in view_layer.aovs:
        aov = view_layer.aovs.add()
        aov.name = LABEL_AOV
        aov.type = "VALUE"
    return view_layer


def render_picture(
    scene: bpy.types.Scene, path: str | Path, samples: int, transparent: bool, denoise: bool = True
) -> None:
    """Render the picture and save it as an 8-bit RGBA PNG at ``path``."""
    use_png_rgba8(scene.render.image_settings)
    scene.render.image_settings.compression = 15
    _render_picture(scene, samples, transparent, denoise)
    bpy.data.images["Render Result"].save_render(str(path), scene=scene)


def render_picture_scratch(
    scene: bpy.types.Scene, path: str | Path, samples: int, transparent: bool, denoise: bool = True
) -> None:
    """Render the picture and save it as an uncompressed 8-bit RGBA TGA at ``path``: the same
    colour-managed pixels as :func:`render_picture`'s PNG, but written in about half the time,
    since Blender's thread does no compression. :func:`core.render.tga.read_tga` reads it back
    (on any thread) for the PNG."""
    use_rgba8(scene.render.image_settings, "TARGA_RAW")
    _render_picture(scene, samples, transparent, denoise)
    bpy.data.images["Render Result"].save_render(str(path), scene=scene)


def _render_picture(scene: bpy.types.Scene, samples: int, transparent: bool, denoise: bool) -> None:
    scene.cycles.samples = samples
    scene.cycles.filter_width = 1.5
    scene.cycles.use_denoising = denoise
    scene.render.film_transparent = transparent
    bpy.ops.render.render()


def render_ground_truth_file(
    scene: bpy.types.Scene, path: str | Path, region: tuple[int, int, int, int] | None = None
) -> None:
    """Render one point sample per pixel and save every pass as a multilayer EXR at ``path``.

    ``region``: ``(x0, y0, x1, y1)`` pixels (top-left origin, x1 and y1 exclusive) outside which
    nothing but background can be seen (:func:`core.render.camera.pixel_region`): only those
    pixels are rendered and saved, and :func:`read_ground_truth` puts background around them.
    :func:`read_ground_truth` reads the file (it needs no Blender, so it can run on another
    thread). The picture's settings are restored afterwards.
    """
    cycles, render = scene.cycles, scene.render
    saved = (cycles.samples, cycles.filter_width, cycles.use_denoising, render.film_transparent)
    cycles.samples = 1
    cycles.filter_width = GROUND_TRUTH_FILTER
    cycles.use_denoising = False
    render.film_transparent = True
    settings = render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "32"
    settings.exr_codec = "NONE"  # a scratch file read back at once: no time spent compressing
    border = [getattr(render, name) for name in _BORDER]
    if region is not None:
        _use_border(render, region)
    try:
        bpy.ops.render.render()
        bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    finally:
        cycles.samples, cycles.filter_width, cycles.use_denoising, render.film_transparent = saved
        for name, value in zip(_BORDER, border, strict=True):
            setattr(render, name, value)


_BORDER = ("use_border", "use_crop_to_border", "border_min_x", "border_max_x", "border_min_y", "border_max_y")


def _use_border(render, region: tuple[int, int, int, int]) -> None:
    """Render only ``region`` and save just those pixels. Blender's border is a fraction of the
    image, bottom-left origin, turned into whole pixels by truncation (or rounding): a quarter
    pixel past each wanted pixel edge gives that edge either way."""
    x0, y0, x1, y1 = region
    width, height = render.resolution_x, render.resolution_y
    render.use_border = True
    render.use_crop_to_border = True
    render.border_min_x, render.border_max_x = (x0 + 0.25) / width, (x1 + 0.25) / width
    render.border_min_y, render.border_max_y = (height - y1 + 0.25) / height, (height - y0 + 0.25) / height


def read_ground_truth(
    path: str | Path, layer: str, region: tuple[int, int, int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> GroundTruth:
    """The ground truth in a multilayer EXR written by :func:`render_ground_truth_file`
    (``layer``: the view layer's name). With the ``region`` it was rendered with, the image of
    ``size`` (width, height) is background around it. Uses no Blender API: safe on a writer
    thread."""
    channels = read_exr(path)
    if region is not None:
        channels = _embed(channels, region, size, path)
    return _ground_truth_from_channels(channels, layer)


def _embed(
    channels: dict[str, np.ndarray], region: tuple[int, int, int, int], size: tuple[int, int], path
) -> dict[str, np.ndarray]:
    x0, y0, x1, y1 = region
    width, height = size
    full = {}
    for name, values in channels.items():
        if values.shape != (y1 - y0, x1 - x0):
            raise RuntimeError(
                f"{path}: {name} has {values.shape[1]} x {values.shape[0]} pixels, expected the "
                f"{x1 - x0} x {y1 - y0} region {region} of the ground-truth render"
            )
        background = NO_HIT_DEPTH if name.endswith("Depth.Z") else 0.0
        image = np.full((height, width), background, values.dtype)
        image[y0:y1, x0:x1] = values
        full[name] = image
    return full


def _ground_truth_from_channels(channels: dict[str, np.ndarray], layer: str) -> GroundTruth:
    def channel(name: str) -> np.ndarray:
        for key in (f"{layer}.{name}", name):
            if key in channels:
                return channels[key]
        raise KeyError(f"the ground-truth render has no {name} pass (channels: {sorted(channels)})")

    depth = channel("Depth.Z")
    mask = (depth > 0) & (depth < BACKGROUND_DEPTH)
    depth = np.where(mask, depth, 0.0).astype(np.float32)
    normals = np.stack([channel(f"Normal.{axis}") for axis in "XYZ"], axis=-1)
    normals = np.where(mask[:, :, None], normals, 0.0).astype(np.float32)
    label_channel = next(
        (key for key in channels if key.startswith(f"{layer}.{LABEL_AOV}.")), None
    )
    if label_channel is None:
        raise KeyError(f"the ground-truth render has no {LABEL_AOV} AOV")
    labels = np.where(mask, np.rint(channels[label_channel]), 0).clip(0, 255).astype(np.uint8)
    return GroundTruth(depth=depth, normals_world=normals, labels=labels, mask=mask)
