"""Cycles renders: the picture, and Cycles' own ground-truth passes.

The picture ("beauty") uses the user's samples, Cycles' default 1.5 px pixel filter and the
denoiser, and is saved by Blender (so the scene's view transform applies). Renders run in one
Cycles session kept between renders (``use_persistent_data``): after the first image, a render
re-syncs only what changed (the head's mesh, camera, lights, albedo image).

The batch renderer computes its ground truth without Cycles
(:mod:`flame_blender.core.render.rasterize`). :func:`render_ground_truth_file` is Cycles' own
measurement of the same thing, the independent reference the tests compare it with: a render
at one sample with a 0.01 px pixel filter, so every pixel of the depth, normal and label passes
is the value at the pixel's centre. Its passes come back as arrays through a multilayer EXR
that Blender writes and :mod:`core.exr` reads (``Render Result`` has no pixels in background
mode). Works with Blender 4.2 (``file_format`` only) and 5.0 (``media_type`` first), chosen
with ``hasattr``.
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


@dataclass
class GroundTruth:
    """Per-pixel ground truth at the pixel centres, row 0 = top of the image."""

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
    """Cycles at ``width`` x ``height``, with a persistent session."""
    scene.render.engine = "CYCLES"
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.cycles.samples = samples
    # keep Cycles' session between renders: later renders sync only what changed
    scene.render.use_persistent_data = True
    return scene.view_layers[0]


def use_ground_truth_passes(view_layer: bpy.types.ViewLayer) -> None:
    """Enable the passes :func:`render_ground_truth_file` saves: depth, normals, the label AOV."""
    view_layer.use_pass_z = True
    view_layer.use_pass_normal = True
    if LABEL_AOV not in view_layer.aovs:
        aov = view_layer.aovs.add()
        aov.name = LABEL_AOV
        aov.type = "VALUE"


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


def render_ground_truth_file(scene: bpy.types.Scene, path: str | Path) -> None:
    """Render one point sample per pixel and save every pass as a multilayer EXR at ``path``
    (the scene's first view layer gets the ground-truth passes). :func:`read_ground_truth`
    reads the file. The picture's settings are restored afterwards.

    The render starts a new Cycles session: a persistent one compiled its shaders before the
    label AOV existed, and would write no labels.
    """
    cycles, render = scene.cycles, scene.render
    saved = (cycles.samples, cycles.filter_width, cycles.use_denoising, render.film_transparent,
             render.use_persistent_data)
    use_ground_truth_passes(scene.view_layers[0])
    render.use_persistent_data = False
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
    try:
        bpy.ops.render.render()
        bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    finally:
        (cycles.samples, cycles.filter_width, cycles.use_denoising, render.film_transparent,
         render.use_persistent_data) = saved


def read_ground_truth(path: str | Path, layer: str) -> GroundTruth:
    """The ground truth in a multilayer EXR written by :func:`render_ground_truth_file`
    (``layer``: the view layer's name). Uses no Blender API."""
    return _ground_truth_from_channels(read_exr(path), layer)


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
