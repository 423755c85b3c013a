"""Exact landmark visibility: a ray from the camera centre to each landmark, cast with Blender's
BVH (``mathutils.bvhtree``) on the head's evaluated mesh, the mesh that was rendered.

The batch casts the rays on its writer thread, on a BVH built from the sample's vertices and the
head mesh's triangles (:func:`mesh_triangles`, :func:`ray_visibility_from_mesh`): the same
float32 triangles Cycles rendered, without touching Blender data off the main thread
(``mathutils`` needs none). The batch reports it next to the picture-based rule of ``core.ground_truth`` (which looks at
the rendered depth around the landmark's pixel and so cannot see an occluder thinner than a
pixel, or tell a landmark on the silhouette from one just behind it).
"""

from __future__ import annotations

from collections.abc import Callable

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
    return _cast(tree, origin, points_object)


def mesh_triangles(head: bpy.types.Object) -> np.ndarray:
    """The triangles Cycles renders of the head's mesh, ``(T, 3)`` vertex indices (main
    thread; they do not change while only vertex positions do)."""
    mesh = head.data
    mesh.calc_loop_triangles()
    triangles = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", triangles)
    return triangles.reshape(-1, 3)


def mesh_triangle_polygons(head: bpy.types.Object) -> np.ndarray:
    """The polygon each of :func:`mesh_triangles` comes from, ``(T,)`` int64 (main thread)."""
    mesh = head.data
    mesh.calc_loop_triangles()
    polygons = np.empty(len(mesh.loop_triangles), np.int32)
    mesh.loop_triangles.foreach_get("polygon_index", polygons)
    return polygons.astype(np.int64)


def ray_visibility_from_mesh(
    vertices: np.ndarray, triangles: np.ndarray, world_to_camera: np.ndarray
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """:func:`ray_visibility` for a mesh given as arrays, usable off Blender's main thread.

    ``vertices (V, 3)`` object (FLAME) space, rounded to float32 as Blender stores them;
    ``triangles (T, 3)`` from :func:`mesh_triangles`; ``world_to_camera (4, 4)`` maps object
    space to the camera (its centre is where the rays start). Returns ``points (L, 3) ->
    (visible (L,), occluded_by (L,))``; the BVH is built on the first call.
    """
    coordinates = np.asarray(vertices, np.float32).astype(np.float64).reshape(-1, 3).tolist()
    polygons = np.asarray(triangles, np.int64).reshape(-1, 3).tolist()
    centre = np.linalg.inv(np.asarray(world_to_camera, np.float64)) @ np.array([0.0, 0.0, 0.0, 1.0])
    origin = Vector((centre[:3] / centre[3]).tolist())
    tree: list[BVHTree] = []

    def visibility(points_object: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not tree:
            tree.append(BVHTree.FromPolygons(coordinates, polygons))
        return _cast(tree[0], origin, points_object)

    return visibility


def _cast(tree: BVHTree, origin: Vector, points_object: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
