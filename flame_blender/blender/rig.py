"""A FLAME head as a native Blender rig: armature, vertex groups, shape keys, drivers, keyframes.

The rig evaluates to FLAME's vertices with nothing but Blender's own data (see
:mod:`..core.rig` for the maths): it plays, renders and exports where this extension is not
installed. Layout:

- ``<name>_rig``: an armature object with the head's transform; bones ``root``, ``neck``,
  ``jaw``, ``left_eye``, ``right_eye`` at the shaped joints, pointing along FLAME's +y with no
  roll, so their rest orientation is the identity and a bone rotation IS FLAME's rotation
  (quaternions); expression-driven joint motion and ``transl`` are bone location keys;
- ``<name>`` (the rigged mesh, child of the armature): base mesh = template + identity, an
  Armature modifier, one vertex group per bone with FLAME's skinning weights, shape keys
  ``expr_000``... (value = coefficient), optionally ``shape_000``..., and the 36 correctives
  ``pose_<joint>_<row><column>`` whose value is entry (row, column) of ``R - I``;
- each corrective has a driver on its bone's quaternion with a simple expression (no Python, so
  it runs with auto-run scripts off and on farms), and the same values as keyframes: exporters
  read the keyframes while :func:`baked_correctives` mutes the drivers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import bpy
import numpy as np

from ..core import rig as rig_math
from ..core.errors import FlameParameterError
from . import head as head_module
from . import pose_correction, runtime
from .head_animation import head_frames
from .keyframes import new_fcurve

#: Bone length (metres): only for display; FLAME joints are points.
BONE_LENGTH = 0.03
RIG_PROPERTY = "flame_rig"  # custom property on both rig objects (plain data: no extension needed)
MASK_PREFIX = "mask_"


# ---------------------------------------------------------------------------------------------
# building


def make_rig(
    context,
    head,
    bake: str = "FRAME_RANGE",
    keep_live: bool = False,
    identity_as_shape_keys: bool = False,
) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Turn ``head`` (with its animation) into an armature and a rigged mesh; returns both.

    ``keep_live``: keep the live head too (else it is removed and the rigged mesh takes its
    name). Raises ``FlameParameterError`` / ``FlameFileError`` with the scene unchanged.
    """
    if not head_module.is_head(head):
        raise FlameParameterError(f"{getattr(head, 'name', head)!r} is not a FLAME head; select one")
    scene = context.scene
    if head.name not in context.view_layer.objects:
        raise FlameParameterError(f"{head.name} is not in the active view layer")
    # FlameFileError when it is missing. A head with teeth (where supported) rigs the model
    # with the tooth vertices, as its mesh has them.
    if getattr(head.flame, "teeth", False):
        model = runtime.get_model(head.flame.model_path, teeth=True)
    else:
        model = runtime.get_model(head.flame.model_path)
    if np.asarray(model["v_template"]).shape[0] != len(head.data.vertices):
        raise FlameParameterError(
            f"{head.name} has {len(head.data.vertices)} vertices but its model "
            f"{np.asarray(model['v_template']).shape[0]}; expected the mesh import_head made"
        )
    frames = head_frames(head, scene, bake)
    if not identity_as_shape_keys and np.ptp(frames.shape, axis=0).max(initial=0.0) > 0.0:
        raise FlameParameterError(
            "the identity coefficients are animated; make the rig with identity as shape keys"
        )
    n_shape = frames.shape.shape[1]
    rig = rig_math.build_rig_model(
        model, shape=frames.shape[0], n_expression=frames.expression.shape[1],
        identity_keys=n_shape if identity_as_shape_keys else 0,
    )
    pose = frames.pose
    animation = rig_math.rig_animation(
        rig, pose[:, 0:3], pose[:, 3:6], pose[:, 6:9], pose[:, 9:15], pose[:, 15:18], frames.expression,
        frames.shape if identity_as_shape_keys else None,
    )
    return _create(context, head, rig, animation, frames.frames, bake, keep_live)


def _create(context, head, rig, animation, frames, bake, keep_live):
    name = head.name
    collection = head.users_collection[0] if head.users_collection else context.scene.collection
    created: list = []
    actions_before = {action.as_pointer() for action in bpy.data.actions}
    try:
        armature_data = bpy.data.armatures.new(f"{name}_rig")
        created.append(armature_data)
        armature = bpy.data.objects.new(f"{name}_rig", armature_data)
        created.append(armature)
        collection.objects.link(armature)
        # matrix_basis, not matrix_world: the latter is stale until the depsgraph runs
        armature.parent = head.parent
        armature.parent_type = head.parent_type
        armature.parent_bone = head.parent_bone
        armature.matrix_parent_inverse = head.matrix_parent_inverse.copy()
        armature.rotation_mode = head.rotation_mode
        armature.matrix_basis = head.matrix_basis.copy()
        armature[RIG_PROPERTY] = 1
        _add_bones(context, armature, rig)
        mesh_obj = _rigged_mesh(head, armature, rig, collection, created)
        _add_drivers(mesh_obj, armature)
        if bake == "CURRENT":
            _set_channels(armature, mesh_obj, animation)
        else:
            _keyframe_channels(armature, mesh_obj, animation, frames, name)
            _copy_transform_curves(head, armature)
    except BaseException:
        _remove(created)
        for action in [a for a in bpy.data.actions if a.as_pointer() not in actions_before]:
            bpy.data.actions.remove(action)
        raise
    if not keep_live:
        old_mesh = head.data
        pose_correction.remove(head)
        bpy.data.objects.remove(head)
        if old_mesh.users == 0:
            bpy.data.meshes.remove(old_mesh)  # its shape keys go with it
        mesh_obj.name = name
        mesh_obj.data.name = name
    view_layer = context.view_layer
    for other in list(view_layer.objects.selected):
        if other is not None:
            other.select_set(False)
    armature.select_set(True)
    view_layer.objects.active = armature
    return armature, mesh_obj


def _remove(created: list) -> None:
    """Undo a half-made rig: objects, then their data (a mesh takes its shape keys along)."""
    for kind, collection in (
        (bpy.types.Object, bpy.data.objects), (bpy.types.Mesh, bpy.data.meshes),
        (bpy.types.Armature, bpy.data.armatures),
    ):
        for block in created:
            if isinstance(block, kind):
                with suppress(ReferenceError):
                    collection.remove(block)


def _add_bones(context, armature, rig) -> None:
    """Bones need edit mode; the override makes mode_set act on the armature whatever the
    caller's context (an operator's context holds the head as its active object)."""
    view_layer = context.view_layer
    active = view_layer.objects.active
    if active is not None and active.mode != "OBJECT":
        with context.temp_override(active_object=active, object=active):
            bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = armature
    override = {"active_object": armature, "object": armature, "edit_object": armature,
                "selected_objects": [armature], "selected_editable_objects": [armature]}
    with context.temp_override(**override):
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            bones = []
            for j, bone_name in enumerate(rig_math.BONE_NAMES):
                bone = armature.data.edit_bones.new(bone_name)
                head_position = rig.joints[j]
                bone.head = head_position.tolist()
                bone.tail = (head_position + (0.0, BONE_LENGTH, 0.0)).tolist()  # +y, no roll: identity
                bone.roll = 0.0
                bone.use_connect = False
                parent = rig.parents[j]
                if parent >= 0:
                    bone.parent = bones[parent]
                bones.append(bone)
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = active
    if len(armature.data.bones) != len(rig_math.BONE_NAMES):
        raise RuntimeError(f"{armature.name}: the bones were not created (edit mode unavailable?)")
    for pose_bone in armature.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"


def _rigged_mesh(head, armature, rig, collection, created: list):
    # The head's mesh without its shape keys (UVs, materials, mask weights kept); the object
    # copy keeps the head's vertex group names, materials and settings.
    mesh = bpy.data.meshes.new_from_object(head, preserve_all_data_layers=True)
    created.append(mesh)
    obj = head.copy()
    created.append(obj)
    obj.data = mesh
    obj.animation_data_clear()
    if hasattr(obj, "flame"):
        obj.flame.is_head = False  # a plain mesh now: the extension leaves it alone
    obj[RIG_PROPERTY] = 1
    pose_correction.remove(obj)  # plain data: the rig does the posing
    collection.objects.link(obj)
    obj.parent = armature
    obj.matrix_parent_inverse.identity()
    obj.matrix_basis.identity()
    mesh.vertices.foreach_set("co", rig.base.astype(np.float32).reshape(-1))
    mesh.update()
    bone_names = set(rig_math.BONE_NAMES)
    for group in obj.vertex_groups:
        if group.name in bone_names:
            group.name = MASK_PREFIX + group.name  # FLAME's "neck" mask would skin to the bone
    for j, bone_name in enumerate(rig_math.BONE_NAMES):
        group = obj.vertex_groups.new(name=bone_name)
        weights = rig.weights[:, j]
        for index in np.flatnonzero(weights):
            group.add([int(index)], float(weights[index]), "REPLACE")
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    if obj.modifiers.find(modifier.name) > 0:  # skinning first, as on the live head
        _move_first(obj, modifier)
    _add_keys(obj, rig)
    return obj


def _move_first(obj, modifier) -> None:
    if hasattr(obj.modifiers, "move"):
        obj.modifiers.move(obj.modifiers.find(modifier.name), 0)
    else:
        with bpy.context.temp_override(object=obj):
            bpy.ops.object.modifier_move_to_index(modifier=modifier.name, index=0)


def _add_keys(obj, rig) -> None:
    obj.shape_key_add(name=head_module.BASIS_KEY, from_mix=False)
    groups = (
        ([head_module.shape_key_name(i) for i in range(rig.n_shape_keys)], rig.shape_directions, head_module.COEFFICIENT_LIMIT),
        ([head_module.expression_key_name(i) for i in range(rig.n_expression)], rig.expression_directions, head_module.COEFFICIENT_LIMIT),
        (rig_math.corrective_key_names(), rig.corrective_directions, rig_math.CORRECTIVE_LIMIT),
    )
    base = rig.base
    for names, directions, limit in groups:
        for key_name, direction in zip(names, directions, strict=True):
            block = obj.shape_key_add(name=key_name, from_mix=False)
            block.slider_min = -limit
            block.slider_max = limit
            block.value = 0.0
            head_module._set_key_points(block, base + direction)
    obj.active_shape_key_index = 0


def _add_drivers(obj, armature) -> None:
    blocks = obj.data.shape_keys.key_blocks
    for joint in range(1, 5):
        bone_name = rig_math.BONE_NAMES[joint]
        for row in range(3):
            for column in range(3):
                block = blocks[rig_math.corrective_key_name(joint, row, column)]
                curve = block.driver_add("value")
                for modifier in list(curve.modifiers):
                    curve.modifiers.remove(modifier)
                driver = curve.driver
                driver.type = "SCRIPTED"
                for variable_name, channel in (("w", "ROT_W"), ("x", "ROT_X"), ("y", "ROT_Y"), ("z", "ROT_Z")):
                    variable = driver.variables.new()
                    variable.name = variable_name
                    variable.type = "TRANSFORMS"
                    target = variable.targets[0]
                    target.id = armature
                    target.bone_target = bone_name
                    target.transform_type = channel
                    target.rotation_mode = "QUATERNION"
                    target.transform_space = "LOCAL_SPACE"
                driver.expression = rig_math.corrective_expression(row, column)


def _corrective_paths() -> list[str]:
    return [f'key_blocks["{name}"].value' for name in rig_math.corrective_key_names()]


@contextmanager
def baked_correctives(mesh_obj) -> Iterator[None]:
    """Mute the corrective drivers so the keyframed values are used (exporters read keyframes)."""
    animation = mesh_obj.data.shape_keys.animation_data if mesh_obj.data.shape_keys else None
    drivers = list(animation.drivers) if animation is not None else []
    states = [curve.mute for curve in drivers]
    for curve in drivers:
        curve.mute = True
    try:
        yield
    finally:
        for curve, state in zip(drivers, states, strict=True):
            curve.mute = state


# ---------------------------------------------------------------------------------------------
# channels


def _channel_table(armature, mesh_obj, animation) -> list[tuple[object, str, int, str, np.ndarray]]:
    """(id, data path, index, group, values (N,)) for every animated channel."""
    table = []
    for j, bone_name in enumerate(rig_math.BONE_NAMES):
        base = f'pose.bones["{bone_name}"]'
        for i in range(4):
            table.append((armature, f"{base}.rotation_quaternion", i, bone_name, animation.quaternions[:, j, i]))
        for i in range(3):
            table.append((armature, f"{base}.location", i, bone_name, animation.locations[:, j, i]))
    key = mesh_obj.data.shape_keys
    for i in range(animation.shape.shape[1]):
        table.append((key, f'key_blocks["{head_module.shape_key_name(i)}"].value', 0, "identity", animation.shape[:, i]))
    for i in range(animation.expression.shape[1]):
        table.append((key, f'key_blocks["{head_module.expression_key_name(i)}"].value', 0, "expression", animation.expression[:, i]))
    for path, values in zip(_corrective_paths(), animation.corrective_values.T, strict=True):
        table.append((key, path, 0, "correctives", values))
    return table


def _set_channels(armature, mesh_obj, animation) -> None:
    for id_data, path, index, _, values in _channel_table(armature, mesh_obj, animation):
        owner, _, prop = path.rpartition(".")
        target = id_data.path_resolve(owner)
        if prop in ("rotation_quaternion", "location"):
            vector = getattr(target, prop)
            vector[index] = float(values[0])
        else:
            setattr(target, prop, float(values[0]))


def _keyframe_channels(armature, mesh_obj, animation, frames: np.ndarray, name: str) -> None:
    actions = {}
    for id_data in (armature, mesh_obj.data.shape_keys):
        action = bpy.data.actions.new(f"{name}_rig_{'pose' if id_data is armature else 'keys'}")
        id_data.animation_data_create().action = action
        actions[id_data.as_pointer()] = action
    count = frames.size
    co = np.empty(2 * count, dtype=np.float32)
    co[0::2] = frames
    linear = _enum_value("LINEAR")
    for id_data, path, index, group, values in _channel_table(armature, mesh_obj, animation):
        action = actions[id_data.as_pointer()]
        curve = new_fcurve(action, id_data, path, index, group)
        co[1::2] = values
        points = curve.keyframe_points
        points.add(count)
        points.foreach_set("co", co)
        points.foreach_set("interpolation", np.full(count, linear, dtype=np.int32))
        curve.update()


def _copy_transform_curves(head, armature) -> None:
    """The head's own object animation (location, rotation, scale...) moves the armature."""
    curves = head_module._fcurves(head) or []
    action = armature.animation_data.action
    for source in curves:
        if source.data_path.startswith("flame."):
            continue
        target = new_fcurve(action, armature, source.data_path, source.array_index, "Object Transforms")
        count = len(source.keyframe_points)
        target.keyframe_points.add(count)
        for attribute, width, dtype in (
            ("co", 2, np.float32), ("handle_left", 2, np.float32), ("handle_right", 2, np.float32),
            ("interpolation", 1, np.int32), ("handle_left_type", 1, np.int32), ("handle_right_type", 1, np.int32),
        ):
            buffer = np.empty(count * width, dtype=dtype)
            source.keyframe_points.foreach_get(attribute, buffer)
            target.keyframe_points.foreach_set(attribute, buffer)
        target.extrapolation = source.extrapolation
        target.update()


_ENUM_CACHE: dict[str, int] = {}


def _enum_value(name: str) -> int:
    """Integer of a keyframe interpolation enum item (foreach_set takes integers)."""
    if name not in _ENUM_CACHE:
        items = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items
        _ENUM_CACHE[name] = items[name].value
    return _ENUM_CACHE[name]


def rig_objects(obj) -> tuple[bpy.types.Object, bpy.types.Object] | None:
    """(armature, rigged mesh) for either object of a rig made by :func:`make_rig`, else None."""
    if obj is None or RIG_PROPERTY not in obj:
        return None
    armature = obj if obj.type == "ARMATURE" else obj.parent
    if armature is None or armature.type != "ARMATURE":
        return None
    meshes = [child for child in armature.children if child.type == "MESH" and RIG_PROPERTY in child]
    return (armature, meshes[0]) if meshes else None


def rig_frame_range(armature) -> tuple[int, int]:
    """First and last keyed frame of the rig (the scene's current frame when it has no keys)."""
    animation = armature.animation_data
    if animation is None or animation.action is None:
        frame = bpy.context.scene.frame_current
        return frame, frame
    start, end = animation.action.frame_range
    return int(math.floor(start)), int(math.ceil(end))

