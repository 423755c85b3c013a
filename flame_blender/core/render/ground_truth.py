"""Ground truth of a rendered sample that needs no Blender: landmark projection and visibility.

Conventions are those of :mod:`flame_blender.core.render.camera`: world = FLAME model space (what
``FLAME.forward`` returns: metres, y up, the face looking along +z); camera = OpenCV axes
(x right, y down, z forward, visible points have z > 0); pixel (0, 0) = the top-left corner of
the image, the first pixel's centre at (0.5, 0.5). Depth maps hold camera z in metres per pixel
centre, 0 where no surface was hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import camera2pixel

#: A landmark counts as visible when the rendered surface at its image position is within this
#: distance (metres) of its own camera z: the surface seen there is the landmark's surface.
VISIBILITY_TOLERANCE = 0.002
# Below this cosine between a camera ray and a surface, tangent planes are not trusted.
_GRAZING_COSINE = 0.17


@dataclass
class ProjectedLandmarks:
    """One landmark set seen by one camera (L landmarks)."""

    points_world: np.ndarray  # (L, 3) FLAME model space, metres
    points_camera: np.ndarray  # (L, 3) OpenCV camera space, metres
    pixels: np.ndarray  # (L, 2) x, y in pixels
    in_frame: np.ndarray  # (L,) bool: in front of the camera and inside the image
    rendered_depth: np.ndarray  # (L,) rendered surface depth along the landmark's ray, 0: none
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


def surface_depths_near(
    depth: np.ndarray,
    normals: np.ndarray,
    pixels: np.ndarray,
    intrinsics: tuple[float, float, float, float],
) -> np.ndarray:
    """Depth of the rendered surface along each landmark's ray, seen from the four pixel centres
    around it: ``(L, 4)``, 0 where a centre holds no surface (or is outside the image).

    Each pixel centre's surface point (its depth) and normal define a tangent plane; the value
    is where the landmark's camera ray meets that plane. Unlike reading the pixel's own depth,
    this does not depend on where in the pixel the landmark falls, so it stays accurate on
    steep surfaces and at low resolutions. Near grazing angles (the ray within ~10 degrees of
    the plane) the pixel's own depth is used.

    Args:
        depth: ``(H, W)`` camera z, 0 on background.
        normals: ``(H, W, 3)`` unit normals in camera (OpenCV) axes.
        pixels: ``(L, 2)`` landmark positions in pixels.
        intrinsics: ``(fx, fy, cx, cy)``.
    """
    depth = np.asarray(depth, np.float64)
    normals = np.asarray(normals, np.float64)
    height, width = depth.shape
    fx, fy, cx, cy = intrinsics
    pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
    finite = np.all(np.isfinite(pixels), axis=1)
    x = np.where(finite, pixels[:, 0], -10.0)
    y = np.where(finite, pixels[:, 1], -10.0)
    # the four pixel centres (at +0.5) around each position
    left = np.floor(x - 0.5).astype(int)
    top = np.floor(y - 0.5).astype(int)
    columns = np.stack([left, left + 1, left, left + 1], axis=1)
    rows = np.stack([top, top, top + 1, top + 1], axis=1)
    inside = (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
    columns = np.clip(columns, 0, width - 1)
    rows = np.clip(rows, 0, height - 1)
    centre_depth = np.where(inside, depth[rows, columns], 0.0)
    normal = normals[rows, columns]  # (L, 4, 3)
    centre_point = np.stack(
        [(columns + 0.5 - cx) / fx * centre_depth, (rows + 0.5 - cy) / fy * centre_depth, centre_depth],
        axis=-1,
    )
    ray = np.stack([(x - cx) / fx, (y - cy) / fy, np.ones_like(x)], axis=-1)[:, None, :]  # z = 1
    facing = np.einsum("lkc,lkc->lk", normal, np.broadcast_to(ray, normal.shape))
    cosine = np.abs(facing) / np.linalg.norm(ray, axis=-1)
    plane = np.einsum("lkc,lkc->lk", normal, centre_point)
    with np.errstate(divide="ignore", invalid="ignore"):
        along_ray = plane / facing
    usable = (cosine > _GRAZING_COSINE) & np.isfinite(along_ray) & (along_ray > 0)
    result = np.where(usable, along_ray, centre_depth)
    return np.where(centre_depth > 0, result, 0.0)


def project_landmarks(
    points_world: np.ndarray,
    world_to_camera: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    size: tuple[int, int],
    depth: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    tolerance: float = VISIBILITY_TOLERANCE,
) -> ProjectedLandmarks:
    """Project ``(L, 3)`` world landmarks and decide their visibility.

    Args:
        world_to_camera: ``(4, 4)`` OpenCV world-to-camera matrix.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels.
        size: ``(width, height)`` of the image in pixels.
        depth: the rendered ``(H, W)`` depth map; without it every in-frame landmark is visible.
        normals: the rendered ``(H, W, 3)`` camera-space normals (needed with ``depth``).
        tolerance: see :data:`VISIBILITY_TOLERANCE`.

    A landmark is visible when it is in frame and the rendered surface around it (the tangent
    planes of the four pixel centres around it, :func:`surface_depths_near`) passes within
    ``tolerance`` of it; otherwise something else is in front of it (or it is on the far side).
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
        if normals is None:
            raise ValueError("normals are needed with a depth map")
        candidates = surface_depths_near(
            depth, normals, np.where(in_frame[:, None], pixels, -10.0), intrinsics
        )
        distance = np.where(candidates > 0, np.abs(candidates - z[:, None]), np.inf)
        best = np.argmin(distance, axis=1)
        rendered = candidates[np.arange(len(z)), best]
        visible = in_frame & (distance[np.arange(len(z)), best] <= tolerance)
    return ProjectedLandmarks(points_world, points_camera, pixels, in_frame, rendered, visible)
