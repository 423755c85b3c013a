"""Exact landmark visibility: a ray from the camera centre to each landmark, cast with Blender's
BVH (``mathutils.bvhtree``) on the head's evaluated mesh, the mesh that was rendered.

The batch reports it next to the picture-based rule of ``core.ground_truth`` (which looks at
the rendered depth around the landmark's pixel and so cannot see an occluder thinner than a
pixel, or tell a landmark on the silhouette from one just behind it).
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix, Vector
from mathutils.bvhtree import BVHTree

#: The ray may meet the surface this close (metres) before the landmark and still count as
#: reaching it: the landmark's own triangle, in float32 coordinates.
RAY_TOLERANCE = 0.0001


def ray_visibility(
    head: bpy.types.Object,
    camera_position_world: np.ndarray,
    points_object: np.ndarray,
    depsgraph=None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each landmark ``points_object (L, 3)`` (the head's object space = FLAME space):
    whether the straight segment from the camera centre reaches it without meeting the head's
    surface first, ``(L,)`` bool, and how far in front of the landmark the first surface met
    is, ``(L,)`` metres (0 when visible).

    Only the head occludes (the studio has nothing else in front of it).
    """
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = head.evaluated_get(depsgraph)
    tree = BVHTree.FromObject(evaluated, depsgraph)
    inverse = Matrix(np.asarray(head.matrix_world).tolist()).inverted()
    origin = inverse @ Vector(np.asarray(camera_position_world, np.float64).tolist())
    # distances along the segment in object space (the head's matrix may scale)
    points = np.asarray(points_object, np.float64).reshape(-1, 3)
    visible = np.zeros(len(points), bool)
    blocked_by = np.zeros(len(points))
    for i, point in enumerate(points):
        target = Vector(point.tolist())
        offset = target - origin
        length = offset.length
        if length == 0.0:
            continue
        hit, _, _, distance = tree.ray_cast(origin, offset / length, length - RAY_TOLERANCE)
        if hit is None:
            visible[i] = True
        else:
            blocked_by[i] = length - distance
    return visible, blocked_by
