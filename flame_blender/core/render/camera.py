"""Pinhole cameras: the one convention every output of this project uses, and Blender's cameras.

Convention (the single place it is stated):

* **Camera axes are OpenCV's**: x right, y down, z forward (out of the lens); a point is in
  front of the camera when z > 0. A world-to-camera matrix maps world points into these axes.
* **Pixels**: ``(u, v)`` with u to the right and v down; ``(0, 0)`` is the top-left *corner* of
  the image, so the first pixel's centre is ``(0.5, 0.5)`` and an image of W x H pixels spans
  ``[0, W] x [0, H]``; a centred principal point is ``(W / 2, H / 2)``.
* **Projection**: ``u = fx * x / z + cx``, ``v = fy * y / z + cy`` (no distortion). ``depth`` in
  :func:`pixel2camera` is the z coordinate (distance along the optical axis), not the distance
  along the ray.

Blender's camera looks down its local -z with +y up; :func:`world_to_camera_from_blender` turns
its ``matrix_world`` into the OpenCV world-to-camera matrix (flip y and z), and
:func:`intrinsics_from_blender` turns lens, sensor, fit, resolution, shift and pixel aspect into
``(fx, fy, cx, cy)`` the way Blender's renderer uses them (``BKE_camera_params_compute_viewplane``).

Functions take numpy arrays or torch tensors (differentiable), and work on any leading shape.
Points with ``z <= 0`` are behind the camera; their pixels are meaningless (no error is raised,
so the functions stay vectorised and differentiable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Blender camera axes (x right, y up, looking down -z) -> OpenCV camera axes.
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


def _stack(parts: list[Any], like: Any) -> Any:
    if type(like).__module__.startswith("torch"):
        import torch

        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def camera2pixel(points: Any, fx: float, fy: float, cx: float, cy: float) -> Any:
    """Project camera-space points ``(..., 3)`` (OpenCV axes, metres) to pixels ``(..., 2)``."""
    if not type(points).__module__.startswith("torch"):
        points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have 3 values in the last axis, got shape {tuple(points.shape)}")
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return _stack([fx * x / z + cx, fy * y / z + cy], points)


def pixel2camera(pixels: Any, depth: Any, fx: float, fy: float, cx: float, cy: float) -> Any:
    """Back-project pixels ``(..., 2)`` at ``depth`` (z, ``(...)``) to camera-space points ``(..., 3)``."""
    if not type(pixels).__module__.startswith("torch"):
        pixels = np.asarray(pixels, dtype=np.float64)
        depth = np.asarray(depth, dtype=np.float64)
    if pixels.shape[-1] != 2:
        raise ValueError(f"pixels must have 2 values in the last axis, got shape {tuple(pixels.shape)}")
    u, v = pixels[..., 0], pixels[..., 1]
    return _stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth + 0 * u], pixels)


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """The 3x3 ``K`` matrix of this convention."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_blender(
    lens_mm: float,
    sensor_width_mm: float,
    sensor_height_mm: float,
    sensor_fit: str,
    width_px: int,
    height_px: int,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    pixel_aspect: float = 1.0,
) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels for a Blender perspective camera.

    Args:
        lens_mm, sensor_width_mm, sensor_height_mm, sensor_fit: ``camera.data.lens``,
            ``sensor_width``, ``sensor_height``, ``sensor_fit`` (``AUTO``/``HORIZONTAL``/``VERTICAL``).
        width_px, height_px: the rendered size (resolution x/y already scaled by the percentage).
        shift_x, shift_y: ``camera.data.shift_x/shift_y`` (fractions of the larger fitted side).
        pixel_aspect: ``render.pixel_aspect_x / render.pixel_aspect_y`` (width / height of a pixel).
    """
    fit = str(sensor_fit).upper()
    if fit not in SENSOR_FITS:
        raise ValueError(f"sensor_fit {sensor_fit!r}: expected one of {SENSOR_FITS}")
    if min(lens_mm, sensor_width_mm, sensor_height_mm, width_px, height_px, pixel_aspect) <= 0:
        raise ValueError("lens, sensor sizes, resolution and pixel aspect must be positive")
    # Blender: ycor = aspect_y / aspect_x; AUTO fits the sensor width to the larger side
    y_correction = 1.0 / pixel_aspect
    if fit == "AUTO":
        fit = "HORIZONTAL" if pixel_aspect * width_px >= height_px else "VERTICAL"
        sensor = sensor_width_mm
    else:
        sensor = sensor_width_mm if fit == "HORIZONTAL" else sensor_height_mm
    view_factor = width_px if fit == "HORIZONTAL" else y_correction * height_px
    fx = lens_mm * view_factor / sensor
    fy = fx / y_correction
    cx = width_px / 2.0 - shift_x * view_factor
    cy = height_px / 2.0 + shift_y * view_factor / y_correction
    return float(fx), float(fy), float(cx), float(cy)


def world_to_camera_from_blender(camera_matrix_world: Any) -> np.ndarray:
    """OpenCV world-to-camera ``(4, 4)`` from a Blender camera's ``matrix_world`` ``(4, 4)``.

    Scale in ``matrix_world`` is ignored (Blender's renderer ignores a camera's scale too).
    """
    m = np.asarray(camera_matrix_world, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"camera_matrix_world must be 4x4, got shape {m.shape}")
    rotation = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    world_to_blender_camera = np.eye(4)
    world_to_blender_camera[:3, :3] = rotation.T
    world_to_blender_camera[:3, 3] = -rotation.T @ m[:3, 3]
    return BLENDER_TO_OPENCV @ world_to_blender_camera
