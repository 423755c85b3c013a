"""Render a tracked sequence frame by frame with the batch renderer's outputs and guarantees.

A thin adapter over :class:`.batch.BatchRenderer`: the sequence's frames become its per-sample
parameters (sample i is the i-th selected frame; its frame id is the sample JSON's
``frame_id``), and the camera is either the tracker's (``tracked``: the file's OpenCV
camera of that frame, intrinsics scaled to ``--resolution``) or one fixed studio camera and light
for the whole sequence (``studio``). Ground truth, atomic writes, resuming and ``--shard K/N``
(over frames) are the batch renderer's. ``overlay`` composites each rendered picture over the
source frame whose name carries the frame id (``samples/<id>.overlay.png``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from ...core.errors import FlameFileError
from ...core.render.png import write_png
from ...core.render.tga import read_tga
from ...core.sequences import FlameSequence, load_sequence
from ...core.sequences.sequence import take_frames
from ..sequence_camera import camera_local_matrices
from .batch import BatchInputError, BatchRenderer, BatchSettings, SampleInputs, SampleJob

CAMERA_MODES = ("tracked", "studio")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def parse_frames(text: str | None) -> tuple[int | None, int | None]:
    """``"A:B"`` -> frame ids A to B inclusive; either side may be empty."""
    if not text:
        return None, None
    match = re.fullmatch(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*", text)
    if match is None:
        raise BatchInputError(f"--frames {text!r}: expected A:B (frame ids, inclusive), e.g. 0:99")
    first, last = (int(v) if v else None for v in match.groups())
    return first, last


class SequenceBatchRenderer(BatchRenderer):
    """:class:`BatchRenderer` fed by a tracked sequence (see the module docstring)."""

    def __init__(self, settings: BatchSettings, sequence_path: Path, camera: str = "tracked",
                 frames: str | None = None, overlay: Path | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.sequence_path = Path(sequence_path)
        self.camera_mode = camera
        self.frames_text = frames
        self.overlay_dir = Path(overlay) if overlay else None
        self.sequence: FlameSequence | None = None

    def prepare(self) -> None:
        s = self.settings
        if self.camera_mode not in CAMERA_MODES:
            raise BatchInputError(f"--camera {self.camera_mode!r}: expected one of {CAMERA_MODES}")
        try:
            sequence = load_sequence(self.sequence_path)
        except FlameFileError as error:
            raise BatchInputError(f"--sequence: {error}") from None
        first, last = parse_frames(self.frames_text)
        ids = sequence.frame_ids
        keep = np.flatnonzero((ids >= (ids[0] if first is None else first)) & (ids <= (ids[-1] if last is None else last)))
        if keep.size == 0:
            raise BatchInputError(f"--frames {self.frames_text}: no frame of {self.sequence_path} in that range")
        self.sequence = take_frames(sequence, keep)
        if self.camera_mode == "tracked":
            if self.sequence.cameras is None:
                raise BatchInputError(f"--camera tracked: {sequence.format} files have no camera; use --camera studio")
            width, height = self.sequence.cameras.image_size[0]
            if abs(s.resolution[0] / s.resolution[1] - width / height) > 0.01 * width / height:
                raise BatchInputError(
                    f"--resolution {s.resolution[0]} {s.resolution[1]}: the tracker's images are "
                    f"{width:g} x {height:g}; give the same aspect, e.g. --resolution {width:g} {height:g}"
                )
        if self.overlay_dir is not None:
            if not self.overlay_dir.is_dir():
                raise BatchInputError(f"--overlay {self.overlay_dir}: no such folder")
            s.transparent = True
            self.frame_images = _images_by_frame(self.overlay_dir)
        s.count = len(self.sequence)
        super().prepare()
        self.parameters = []
        for index in range(len(self.sequence)):
            params = self.sequence.parameters(index)
            if params.n_shape > self.n_shape or params.n_expression > self.n_expression:
                raise BatchInputError(
                    f"--sequence: {params.n_shape} identity / {params.n_expression} expression components, "
                    f"the model has {self.n_shape} / {self.n_expression}"
                )
            self.parameters.append(params)

    def run_settings(self) -> dict[str, Any]:
        settings = super().run_settings()
        digest = hashlib.sha256()
        for name in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl", "frame_ids"):
            digest.update(np.ascontiguousarray(getattr(self.sequence, name)).tobytes())
        settings["source"] = {"sequence": self.sequence.format, "sequence_sha256": digest.hexdigest(),
                              "camera": self.camera_mode, "overlay": bool(self.overlay_dir)}
        return settings

    def spec(self, index: int):
        # one albedo, studio camera and light for the whole sequence (drawn for sample 0)
        base = super().spec(0)
        extra = dict(base.extra, frame_id=int(self.sequence.frame_ids[index]))
        return dataclasses.replace(base, index=index, parameters=self.parameters[index].resized(self.n_shape, self.n_expression),
                                   extra=extra)

    def _set_scene(self, spec, vertices: np.ndarray, albedo: np.ndarray | None) -> None:
        super()._set_scene(spec, vertices, albedo)
        if self.camera_mode == "tracked":
            self._place_tracked_camera(spec.index)

    def _place_tracked_camera(self, index: int) -> None:
        scene, cameras = self.scene, self.sequence.cameras
        width, height = self.settings.resolution
        image_w, image_h = cameras.image_size[index]
        k = cameras.intrinsics[index] * np.array([[width / image_w], [height / image_h], [1.0]])
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        aspect = fy / fx
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = (aspect, 1.0) if aspect >= 1 else (1.0, 1.0 / aspect)
        data = scene.camera.data
        data.sensor_fit, data.sensor_width = "HORIZONTAL", 36.0
        data.lens = fx * 36.0 / width
        data.shift_x = (width / 2.0 - cx) / width
        data.shift_y = (cy - height / 2.0) / (aspect * width)
        local = camera_local_matrices(cameras.world_to_camera[index][None])[0]
        scene.camera.matrix_world = self.head.matrix_world @ Matrix(local.tolist())
        bpy.context.view_layer.update()

    def render_sample(self, index: int, name: str, samples_dir: Path, inputs: SampleInputs | None = None) -> SampleJob:
        job = super().render_sample(index, name, samples_dir, inputs)
        # main thread (Blender loads the source frame), before the writer thread writes the
        # sample's JSON, which marks it finished
        if self.overlay_dir is not None:
            self._write_overlay(index, name, samples_dir, job.picture)
        return job

    def _write_overlay(self, index: int, name: str, samples_dir: Path, picture_file: Path) -> None:
        frame_id = int(self.sequence.frame_ids[index])
        source = self.frame_images.get(frame_id)
        if source is None:
            return
        picture = read_tga(picture_file).astype(np.float32) / 255.0  # the picture's pixels (scratch)
        background = _load_image(source, picture.shape[1], picture.shape[0])
        alpha = picture[..., 3:4]
        composite = picture[..., :3] * alpha + background * (1.0 - alpha)
        write_png(samples_dir / f"{name}.overlay.png", np.round(composite * 255.0).astype(np.uint8))


def _images_by_frame(folder: Path) -> dict[int, Path]:
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            digits = re.findall(r"\d+", path.stem)
            if digits:
                found.setdefault(int(digits[-1]), path)
    return found


def _load_image(path: Path, width: int, height: int) -> np.ndarray:
    """An image file as float RGB ``(height, width, 3)``, row 0 at the top (Blender's loader)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        if tuple(image.size) != (width, height):
            image.scale(width, height)
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1, :, :3]
