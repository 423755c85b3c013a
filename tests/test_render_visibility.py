"""The batch's exact ray-cast visibility as its writer thread computes it
(``visibility.ray_visibility_from_mesh``: a BVH of plain arrays, off Blender's main thread),
checked against a cube solved by hand and against Blender's own BVH of the evaluated head
(``BVHTree.FromObject``, cast on the main thread)."""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np

from flame_blender.blender.render import visibility


def in_thread(function, *args):
    """``function(*args)`` run on another thread (as the batch's writer does); its result."""
    result: dict = {}

    def work() -> None:
        try:
            result["value"] = function(*args)
        except BaseException as error:  # re-raised on the test's thread
            result["error"] = error

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def mesh_vertices(obj) -> np.ndarray:
    coordinates = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", coordinates)
    return coordinates.reshape(-1, 3)


def test_cube_occlusion_solved_by_hand(blender_scene, blender_addon):
    bpy = blender_addon
    bpy.ops.mesh.primitive_cube_add(size=2.0)  # faces at +-1 on every axis
    cube = bpy.context.active_object
    world_to_camera = np.eye(4)
    world_to_camera[2, 3] = 5.0  # camera centre at z = -5, looking along +z
    inside = np.array([0.3, 0.2, 0.0])
    points = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, 1.0], inside, [0.5, -0.5, 1.0]])
    cast = visibility.ray_visibility_from_mesh(
        mesh_vertices(cube), visibility.mesh_triangles(cube), world_to_camera
    )
    visible, occluded_by = in_thread(cast, points)
    assert visible.tolist() == [True, True, False, False, False]
    # the segment enters the cube at z = -1, 4/5 of the way from the camera to `inside`
    inside_length = math.dist((0.0, 0.0, -5.0), inside)
    expected = [0.0, 0.0, 2.0, inside_length / 5.0, math.dist((0.0, 0.0, -5.0), (0.5, -0.5, 1.0)) / 3.0]
    assert np.allclose(occluded_by, expected, atol=1e-6)


def test_head_matches_blenders_own_bvh_of_the_evaluated_object(small_head, blender_addon):
    bpy = blender_addon
    from flame_blender.blender import head as blender_head
    from flame_blender.core.model.parameters import FlameParameters

    params = dataclasses.replace(
        FlameParameters.zeros(10, 5), shape=np.linspace(-1.0, 1.0, 10),
        expression=np.linspace(0.5, -0.5, 5), global_pose=np.array([0.1, 0.6, 0.0]),
        jaw_pose=np.array([0.2, 0.0, 0.0]),
    )
    blender_head.set_parameters(small_head, params)
    bpy.context.view_layer.update()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = small_head.evaluated_get(depsgraph).to_mesh()
    vertices = np.empty(len(evaluated.vertices) * 3, np.float32)
    evaluated.vertices.foreach_get("co", vertices)
    small_head.evaluated_get(depsgraph).to_mesh_clear()
    vertices = vertices.reshape(-1, 3)

    # off to the side, in front of the face (FLAME +z), in Blender's world (the head object's
    # matrix turns FLAME's y-up into Blender's z-up)
    object_to_world = np.array(small_head.matrix_world, np.float64)
    camera_position = (object_to_world @ np.array([0.35, 0.1, 0.5, 1.0]))[:3]
    world_to_camera = np.eye(4)
    world_to_camera[:3, 3] = -camera_position  # (a rotation would not move the centre)
    world_to_camera = world_to_camera @ object_to_world  # object (FLAME) space -> camera
    points = vertices[::7].astype(np.float64)
    expected_visible, expected_occluded = visibility.ray_visibility(small_head, camera_position, points)
    cast = visibility.ray_visibility_from_mesh(
        vertices, visibility.mesh_triangles(small_head), world_to_camera
    )
    visible, occluded_by = in_thread(cast, points)
    assert 0 < visible.sum() < len(points)  # some seen, some hidden: the comparison can fail
    assert np.array_equal(visible, expected_visible)
    assert np.allclose(occluded_by, expected_occluded, atol=1e-6)
