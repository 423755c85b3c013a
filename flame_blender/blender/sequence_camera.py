"""The tracked camera: an animated Blender camera that sees the head as the tracker's images did.

The file's cameras are OpenCV (intrinsics ``K`` and world-to-camera in FLAME space). The camera
object is parented to the head, so its local matrix is FLAME space's camera-to-world with the
axes turned from OpenCV's (y down, looking down +z) to Blender's (y up, looking down -z). The
focal length and principal point become ``lens`` and ``shift_x/y`` of a HORIZONTAL-fit sensor;
``fx != fy`` becomes the render's pixel aspect.
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from ..core.render.camera import BLENDER_TO_OPENCV
from ..core.sequences import SequenceCameras
from .keyframes import animate

SENSOR_WIDTH = 36.0


def camera_local_matrices(world_to_camera: np.ndarray) -> np.ndarray:
    """Blender camera matrices ``(F, 4, 4)`` in the head's (FLAME) space from OpenCV
    world-to-camera ``(F, 4, 4)``."""
    return np.linalg.inv(world_to_camera) @ BLENDER_TO_OPENCV


def continuous_quaternions(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(location (F, 3), quaternion wxyz (F, 4), scale (F, 3))`` of each matrix, with
    quaternion signs chosen so neighbours agree (linear keys then interpolate the short way)."""
    locations, quaternions, scales = [], [], []
    previous = None
    for matrix in matrices:
        location, rotation, scale = Matrix(matrix.tolist()).decompose()
        q = np.array(rotation[:])
        if previous is not None and np.dot(q, previous) < 0:
            q = -q
        previous = q
        locations.append(location[:])
        quaternions.append(q)
        scales.append(scale[:])
    return np.array(locations), np.array(quaternions), np.array(scales)


def create_tracked_camera(context_scene: Any, head_obj: Any, cameras: SequenceCameras, frames: np.ndarray) -> Any:
    """Make the animated camera (parented to ``head_obj``), set the scene's resolution and
    pixel aspect, and make it the scene camera. Returns the camera object."""
    scene = context_scene
    width, height = (int(round(v)) for v in cameras.image_size[0])
    data = bpy.data.cameras.new(f"{head_obj.name} Tracked Camera")
    obj = bpy.data.objects.new(data.name, data)
    try:
        data.sensor_fit = "HORIZONTAL"
        data.sensor_width = SENSOR_WIDTH
        data.clip_start = 0.01
        obj.rotation_mode = "QUATERNION"
        obj.parent = head_obj
        obj.matrix_parent_inverse = Matrix.Identity(4)
        for collection in head_obj.users_collection[:1] or [scene.collection]:
            collection.objects.link(obj)
        k = cameras.intrinsics
        fx, fy, cx, cy = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]
        aspect = float(np.median(fy / fx))  # Blender: fy = fx * pixel_aspect_x / pixel_aspect_y
        scene.render.resolution_x, scene.render.resolution_y = width, height
        scene.render.resolution_percentage = 100
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = (aspect, 1.0) if aspect >= 1.0 else (1.0, 1.0 / aspect)
        lens = fx * SENSOR_WIDTH / width
        shift_x = (width / 2.0 - cx) / width
        shift_y = (cy - height / 2.0) / (aspect * width)

        def set_data(path: str, _index: int, value: float) -> None:
            setattr(data, path, value)

        animate(data, None, f"{data.name} Intrinsics", [
            ("lens", 0, "Intrinsics", lens), ("shift_x", 0, "Intrinsics", shift_x), ("shift_y", 0, "Intrinsics", shift_y),
        ], frames, set_data)
        locations, quaternions, _ = continuous_quaternions(camera_local_matrices(cameras.world_to_camera))
        channels = [("location", i, "Object Transforms", locations[:, i]) for i in range(3)]
        channels += [("rotation_quaternion", i, "Object Transforms", quaternions[:, i]) for i in range(4)]

        def set_obj(path: str, index: int, value: float) -> None:
            getattr(obj, path)[index] = value

        animate(obj, None, f"{obj.name} Motion", channels, frames, set_obj)
        scene.camera = obj
    except BaseException:
        bpy.data.objects.remove(obj)
        bpy.data.cameras.remove(data)
        raise
    return obj


def add_background_frames(camera_obj: Any, folder: str, frame_ids: np.ndarray, frames: np.ndarray) -> Any:
    """Show the tracker's source frames behind the head in the camera view: the image sequence
    in ``folder`` whose file names end in the frame id (``frame_00042.png`` for id 42), mapped so
    Blender frame ``frames[i]`` shows frame id ``frame_ids[i]``. Returns the image, or raises
    ``FlameFileError`` when no file carries a frame id of the sequence."""
    import re
    from pathlib import Path

    from ..core.errors import FlameFileError

    path = Path(bpy.path.abspath(folder)).expanduser()
    numbered = {}
    if path.is_dir():
        for file in sorted(path.iterdir()):
            digits = re.findall(r"\d+", file.stem)
            if digits and file.suffix.lower() in (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp"):
                numbered.setdefault(int(digits[-1]), file)
    first = next((int(i) for i in frame_ids if int(i) in numbered), None)
    if first is None:
        raise FlameFileError(path, f"has no image named with a frame id of the sequence ({int(frame_ids[0])}...)")
    image = bpy.data.images.load(str(numbered[first]), check_existing=False)
    image.source = "SEQUENCE"
    background = camera_obj.data.background_images.new()
    background.image = image
    user = background.image_user
    # Blender shows file number (frame - frame_start + 1 + frame_offset)
    user.frame_start = int(frames[0])
    user.frame_offset = int(frame_ids[0]) - 1
    user.frame_duration = int(frame_ids[-1] - frame_ids[0]) + 1
    user.use_auto_refresh = True
    camera_obj.data.show_background_images = True
    return image
