"""The studio: a camera framing the head, a three-light rig and a plain world.

Placement is computed in FLAME model space (metres, y up, the face looking along +z) around the
head's centre and then carried into Blender's world by the head object's matrix, so it follows
the head wherever the object stands. The camera orbits the centre: azimuth 0 is in front of the
face, positive azimuth towards the head's left (+x), positive elevation above.

Objects are found again by name and updated, never duplicated: ``FLAME Camera``,
``FLAME Key Light``, ``FLAME Fill Light``, ``FLAME Rim Light`` (in a ``FLAME Studio``
collection) and the world ``FLAME Studio World``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

COLLECTION_NAME = "FLAME Studio"
CAMERA_NAME = "FLAME Camera"
KEY_LIGHT_NAME = "FLAME Key Light"
FILL_LIGHT_NAME = "FLAME Fill Light"
RIM_LIGHT_NAME = "FLAME Rim Light"
WORLD_NAME = "FLAME Studio World"
SENSOR_SIZE = 36.0  # mm across the image's shorter side (a full-frame width)
LIGHT_DISTANCE = 1.0  # metres from the head's centre
LIGHT_SIZE = 0.5  # metres: large soft boxes read well on skin
WORLD_COLOUR = (0.62, 0.64, 0.68)
RIM_RATIO = 0.6  # rim light power relative to the key


@dataclass(frozen=True)
class StudioSettings:
    """Camera and lights of a studio (degrees, millimetres, metres, watts)."""

    focal_length: float = 50.0
    distance: float = 0.6
    azimuth: float = 0.0
    elevation: float = 0.0
    light_azimuth: float = 40.0
    light_elevation: float = 30.0
    light_power: float = 40.0
    fill_ratio: float = 0.35
    world_strength: float = 0.35
    transparent: bool = False


def orbit_direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector (FLAME space) from the head's centre towards a point at these angles (degrees)."""
    a, e = math.radians(azimuth), math.radians(elevation)
    return np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])


def look_at(position: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """``(4, 4)`` pose of a Blender camera or light at ``position`` looking at ``target``.

    Blender cameras and lights look along their local -Z with local +Y up.
    """
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-8:  # looking straight up or down
        right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, -forward, position
    return pose


def head_centre(vertices: np.ndarray) -> np.ndarray:
    """Centre of the ``(V, 3)`` vertices' bounding box (FLAME space)."""
    vertices = np.asarray(vertices, np.float64)
    return (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0


def evaluated_vertices(obj: bpy.types.Object, depsgraph=None) -> np.ndarray:
    """The evaluated mesh's vertex positions in object (FLAME) space, ``(V, 3)`` float64."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        coordinates = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", coordinates)
    finally:
        evaluated.to_mesh_clear()
    return coordinates.reshape(-1, 3).astype(np.float64)


def setup_studio(
    scene: bpy.types.Scene,
    head: bpy.types.Object,
    settings: StudioSettings = StudioSettings(),
    centre: np.ndarray | None = None,
) -> bpy.types.Object:
    """Create or update the studio around ``head``; make its camera the scene camera.

    ``centre`` (FLAME space) defaults to the centre of the evaluated head's bounding box.
    Returns the camera object; its ``matrix_world`` is up to date (the view layer is updated).
    """
    if centre is None:
        centre = head_centre(evaluated_vertices(head))
    to_world = np.array(head.matrix_world)
    collection = _studio_collection(scene)

    camera = _ensure_object(collection, CAMERA_NAME, lambda: bpy.data.cameras.new(CAMERA_NAME))
    camera.data.lens = settings.focal_length
    # The sensor spans the image's shorter side, so the head is framed at any aspect ratio
    # (a 16:9 frame with a horizontal fit would crop the chin and crown).
    render = scene.render
    landscape = (
        render.resolution_x * render.pixel_aspect_x >= render.resolution_y * render.pixel_aspect_y
    )
    camera.data.sensor_fit = "VERTICAL" if landscape else "HORIZONTAL"
    camera.data.sensor_width = camera.data.sensor_height = SENSOR_SIZE
    camera.data.shift_x = camera.data.shift_y = 0.0
    camera.data.clip_start = 0.01
    camera.data.clip_end = 100.0
    position = centre + settings.distance * orbit_direction(settings.azimuth, settings.elevation)
    _place(camera, to_world @ look_at(position, centre))
    scene.camera = camera

    key_direction = orbit_direction(
        settings.azimuth + settings.light_azimuth, settings.light_elevation
    )
    fill_direction = orbit_direction(settings.azimuth - 0.8 * settings.light_azimuth, 5.0)
    rim_direction = orbit_direction(settings.azimuth + 180.0 - 0.5 * settings.light_azimuth, 45.0)
    for name, direction, power in (
        (KEY_LIGHT_NAME, key_direction, settings.light_power),
        (FILL_LIGHT_NAME, fill_direction, settings.light_power * settings.fill_ratio),
        (RIM_LIGHT_NAME, rim_direction, settings.light_power * RIM_RATIO),
    ):
        light = _ensure_object(collection, name, lambda name=name: _new_area_light(name))
        light.data.energy = power
        light_position = centre + LIGHT_DISTANCE * direction
        _place(light, to_world @ look_at(light_position, centre))

    _setup_world(scene, settings.world_strength)
    scene.render.film_transparent = settings.transparent
    scene.view_layers[0].update()
    return camera


def _place(obj: bpy.types.Object, pose: np.ndarray) -> None:
    """Put ``obj`` (no parent) at a rigid ``(4, 4)`` pose.

    Through a quaternion, not ``matrix_world``: Blender turns an assigned matrix into Euler
    angles that depend on the previous ones, so the same pose would come out slightly
    differently after different histories, and samples must not depend on render order.
    """
    matrix = Matrix(pose.tolist())
    obj.parent = None
    obj.rotation_mode = "QUATERNION"
    obj.location = matrix.to_translation()
    obj.rotation_quaternion = matrix.to_quaternion()
    obj.scale = (1.0, 1.0, 1.0)


def _studio_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    collection = bpy.data.collections.get(COLLECTION_NAME)
    if collection is None:
        collection = bpy.data.collections.new(COLLECTION_NAME)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection


def _ensure_object(collection: bpy.types.Collection, name: str, make_data) -> bpy.types.Object:
    obj = bpy.data.objects.get(name)
    if obj is None:
        obj = bpy.data.objects.new(name, make_data())
    if obj.name not in collection.objects:
        collection.objects.link(obj)
    obj.hide_render = False
    return obj


def _new_area_light(name: str) -> bpy.types.Light:
    light = bpy.data.lights.new(name, "AREA")
    light.shape = "DISK"
    light.size = LIGHT_SIZE
    return light


def _setup_world(scene: bpy.types.Scene, strength: float) -> None:
    world = bpy.data.worlds.get(WORLD_NAME)
    if world is None:
        world = bpy.data.worlds.new(WORLD_NAME)
    if bpy.app.version < (5, 0, 0) and not world.use_nodes:
        world.use_nodes = True  # Blender < 5.0; 5.0 always uses nodes
    background = next(
        (node for node in world.node_tree.nodes if node.type == "BACKGROUND"), None
    )
    if background is None:
        background = world.node_tree.nodes.new("ShaderNodeBackground")
        output = next(
            (node for node in world.node_tree.nodes if node.type == "OUTPUT_WORLD"), None
        ) or world.node_tree.nodes.new("ShaderNodeOutputWorld")
        world.node_tree.links.new(background.outputs["Background"], output.inputs["Surface"])
    background.inputs["Color"].default_value = (*WORLD_COLOUR, 1.0)
    background.inputs["Strength"].default_value = strength
    scene.world = world
