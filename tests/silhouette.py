"""Distance from image points to a mesh's silhouette, measured with Blender's own ray caster
(``mathutils.bvhtree``), independent of the project's numpy code.

A silhouette point is where the surface seen along neighbouring rays stops being continuous:
the next ray misses the mesh or hits something well behind. From a landmark's image position
we walk outward in many directions with closely spaced rays and report the shortest walk that
meets such an end.
"""

from __future__ import annotations

import numpy as np

# Rays this close apart see a smooth surface's depth change by at most ~1.5 mm even at a
# grazing point (sqrt(2 * radius * step)); a bigger change is a different surface behind.
STEP = 0.00002
DEPTH_JUMP = 0.003


def orthographic_tree(vertices: np.ndarray, faces: np.ndarray):
    """A BVH of the mesh ``(V, 3)`` / ``(F, 3)`` for rays along -z (camera on +z)."""
    from mathutils.bvhtree import BVHTree

    return BVHTree.FromPolygons(vertices.tolist(), faces.tolist(), all_triangles=True)


def nearest_depth(tree, x: float, y: float) -> float:
    """z of the first surface a ray along -z through ``(x, y)`` meets (-inf on a miss)."""
    from mathutils import Vector

    location, _, _, _ = tree.ray_cast(Vector((x, y, 10.0)), Vector((0.0, 0.0, -1.0)))
    return -np.inf if location is None else float(location[2])


def distance_to_silhouette(tree, point: np.ndarray, limit: float = 0.006, directions: int = 48) -> float:
    """The image-plane distance (metres) from ``point (3,)`` to the nearest silhouette of the
    surface seen at its position (orthographic view along -z); ``inf`` beyond ``limit``.

    Raises AssertionError when the point is hidden (the surface seen there is > 1 mm in front
    of it): a hidden landmark is not on a silhouette.
    """
    x0, y0, z0 = (float(v) for v in point)
    seen = nearest_depth(tree, x0, y0)
    assert not np.isfinite(seen) or seen < z0 + 0.001, f"landmark hidden {1000 * (seen - z0):.1f} mm behind the surface"
    best = np.inf
    steps = np.arange(1, int(limit / STEP) + 1) * STEP
    for angle in np.linspace(0.0, 2 * np.pi, directions, endpoint=False):
        dx, dy = np.cos(angle), np.sin(angle)
        previous = seen
        for s in steps:
            if s >= best:
                break
            depth = nearest_depth(tree, x0 + s * dx, y0 + s * dy)
            starts = np.isfinite(depth) and not np.isfinite(previous)
            ends = np.isfinite(previous) and (not np.isfinite(depth) or depth < previous - DEPTH_JUMP)
            if starts or ends:
                best = s
                break
            previous = depth
    return best
