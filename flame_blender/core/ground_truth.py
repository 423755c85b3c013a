"""Ground truth of a rendered sample that needs no Blender: landmark projection and visibility.

Conventions are those of :mod:`flame_blender.core.camera`: world = FLAME model space (what
``FLAME.forward`` returns: metres, y up, the face looking along +z); camera = OpenCV axes
(x right, y down, z forward, visible points have z > 0); pixel (0, 0) = the top-left corner of
the image, the first pixel's centre at (0.5, 0.5). Depth maps hold camera z in metres per pixel
centre, 0 where no surface was hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import camera2pixel

#: A landmark counts as visible when the rendered depth at its image position is within this
#: distance (metres) of its own camera z: the surface seen there is the landmark's surface.
VISIBILITY_TOLERANCE = 0.002
# Neighbouring pixel centres whose depths differ by more than this (metres) straddle an edge
# (silhouette or occlusion): the depth there is read at the nearest pixel, not interpolated.
_EDGE_STEP = 0.015


@dataclass
class ProjectedLandmarks:
    """One landmark set seen by one camera (L landmarks)."""

    points_world: np.ndarray  # (L, 3) FLAME model space, metres
    points_camera: np.ndarray  # (L, 3) OpenCV camera space, metres
    pixels: np.ndarray  # (L, 2) x, y in pixels
    in_frame: np.ndarray  # (L,) bool: in front of the camera and inside the image
    rendered_depth: np.ndarray  # (L,) depth map at the landmark, 0 outside or on background
    visible: np.ndarray  # (L,) bool: in frame and not occluded

    def to_dict(self) -> dict[str, list]:
        return {
            "points_3d": self.points_world.tolist(),
            "points_camera": self.points_camera.tolist(),
            "points_2d": [
                [float(v) for v in row] if np.all(np.isfinite(row)) else None
                for row in self.pixels
            ],
            "in_frame": self.in_frame.tolist(),
            "visible": self.visible.tolist(),
        }


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``(4, 4)`` rigid transform to ``(..., 3)`` points."""
    matrix = np.asarray(matrix, np.float64)
    return np.asarray(points, np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """The ``(3, 3)`` matrix K of the pinhole camera."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def depth_at(depth: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Depth map ``(H, W)`` read at ``(L, 2)`` sub-pixel positions -> ``(L,)``.

    Bilinear between the four nearest pixel centres where they all hold a surface without an
    edge between them; otherwise the pixel containing the position. 0 outside the image.
    """
    depth = np.asarray(depth, np.float64)
    height, width = depth.shape
    pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
    out = np.zeros(len(pixels))
    finite = np.all(np.isfinite(pixels), axis=1)
    x = np.where(finite, pixels[:, 0], -1.0)
    y = np.where(finite, pixels[:, 1], -1.0)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    column = np.clip(np.floor(x).astype(int), 0, width - 1)
    row = np.clip(np.floor(y).astype(int), 0, height - 1)
    out[inside] = depth[row[inside], column[inside]]
    # pixel centres at +0.5: the top-left of the four neighbours
    left = np.clip(np.floor(x - 0.5).astype(int), 0, width - 2)
    top = np.clip(np.floor(y - 0.5).astype(int), 0, height - 2)
    fx = np.clip(x - 0.5 - left, 0.0, 1.0)
    fy = np.clip(y - 0.5 - top, 0.0, 1.0)
    corners = np.stack(
        [depth[top, left], depth[top, left + 1], depth[top + 1, left], depth[top + 1, left + 1]],
        axis=1,
    )
    smooth = (
        inside
        & np.all(corners > 0, axis=1)
        & (corners.max(axis=1) - corners.min(axis=1) <= _EDGE_STEP)
    )
    bilinear = (
        corners[:, 0] * (1 - fx) * (1 - fy)
        + corners[:, 1] * fx * (1 - fy)
        + corners[:, 2] * (1 - fx) * fy
        + corners[:, 3] * fx * fy
    )
    out[smooth] = bilinear[smooth]
    return out


def project_landmarks(
    points_world: np.ndarray,
    world_to_camera: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    size: tuple[int, int],
    depth: np.ndarray | None = None,
    tolerance: float = VISIBILITY_TOLERANCE,
) -> ProjectedLandmarks:
    """Project ``(L, 3)`` world landmarks and decide their visibility.

    Args:
        world_to_camera: ``(4, 4)`` OpenCV world-to-camera matrix.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels.
        size: ``(width, height)`` of the image in pixels.
        depth: the rendered ``(H, W)`` depth map; without it every in-frame landmark is visible.
        tolerance: see :data:`VISIBILITY_TOLERANCE`.
    """
    points_world = np.asarray(points_world, np.float64).reshape(-1, 3)
    points_camera = transform_points(world_to_camera, points_world)
    fx, fy, cx, cy = intrinsics
    z = points_camera[:, 2]
    safe = np.where((z > 0)[:, None], points_camera, np.array([0.0, 0.0, 1.0]))
    pixels = np.asarray(camera2pixel(safe, fx, fy, cx, cy), np.float64)
    pixels[z <= 0] = np.nan
    width, height = size
    with np.errstate(invalid="ignore"):
        in_frame = (
            (z > 0)
            & (pixels[:, 0] >= 0)
            & (pixels[:, 0] < width)
            & (pixels[:, 1] >= 0)
            & (pixels[:, 1] < height)
        )
    if depth is None:
        rendered = np.where(in_frame, z, 0.0)
        visible = in_frame.copy()
    else:
        rendered = depth_at(depth, np.where(in_frame[:, None], pixels, -1.0))
        visible = in_frame & (rendered > 0) & (np.abs(rendered - z) <= tolerance)
    return ProjectedLandmarks(points_world, points_camera, pixels, in_frame, rendered, visible)
