"""The pose correction: a small per-head mesh that playback writes instead of the pose key.

Rewriting the pose shape key makes Blender copy the head's whole shape-key datablock (one key
block per coefficient: 401 x 5023 x 12 bytes = 24 MB) for evaluation on every frame, which costs
more than the animation itself. During playback (``frame_change_pre``) the head's pose therefore
goes elsewhere: into a points-only mesh, one point per head vertex, owned by an object that is
linked to no collection. A Geometry Nodes modifier on the head, first in its stack, maps each
evaluated vertex ``p`` to ``p + c + D p``: ``c`` the correction's position at the same index,
``D`` the 3 x 3 map whose columns are its point attributes :data:`COLUMN_ATTRIBUTES` (zero when
absent). Only that small mesh is tagged, so Blender evaluates what it evaluates for the
shape-key animation alone, plus this modifier.

Blender's mix is ``Basis + Σ value·(key − Basis)``. Playback (:mod:`.playback`) either skins it
(``D`` the blended ``G − I`` of the skinning, ``c`` the rest: the head's keys are FLAME's own) or
adds an offset (``D = 0``, ``c`` = forward pass minus the mix: the head has keys FLAME adds after
skinning); both give FLAME's forward pass, as the pose key alone does after an edit. Every write
of the pose key (edits, undo, file load, a frame whose prediction was wrong) sets the correction
back to zero; between the last played frame and the next such write, pose key and correction
together hold the pose (a file saved then reopens exactly). A head without the modifier (files
saved by earlier versions, before they are migrated on load) or with it turned off plays
through the pose key.
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

MODIFIER_NAME = "FLAME pose correction"
NODE_GROUP_NAME = "FLAME pose correction"
#: Custom property marking our node group, correction objects and the head that owns them.
MARKER = "flame_pose_correction"
#: The node group's version (its marker's value): 1 added an offset, 2 also a per-vertex linear
#: map (the skinning's ``G - I`` blended by the weights), see :func:`write`.
VERSION = 2
#: Point attributes of the correction: the map's columns (what x, y and z of a vertex add).
COLUMN_ATTRIBUTES = ("flame_skin_x", "flame_skin_y", "flame_skin_z")
_SOCKET_NAME = "Correction"

#: correction object session_uid -> the head's session_uid that writes it (this session).
_owners: dict[int, int] = {}


def forget() -> None:
    """After undo and file load: session ids changed, claims are made again."""
    _owners.clear()


def _node_group() -> bpy.types.NodeTree:
    for tree in bpy.data.node_groups:
        if tree.get(MARKER) == VERSION and tree.bl_idname == "GeometryNodeTree" and tree.library is None:
            return tree
    tree = bpy.data.node_groups.new(NODE_GROUP_NAME, "GeometryNodeTree")
    tree[MARKER] = VERSION
    interface = tree.interface
    interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    interface.new_socket(_SOCKET_NAME, in_out="INPUT", socket_type="NodeSocketObject")
    interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    info = nodes.new("GeometryNodeObjectInfo")
    info.transform_space = "ORIGINAL"  # the correction's raw coordinates, in the head's space
    index = nodes.new("GeometryNodeInputIndex")

    def sampled(value_socket, row: int):
        """``value_socket``, a field on the correction's points, at the head vertex's index."""
        sample = nodes.new("GeometryNodeSampleIndex")
        sample.data_type, sample.domain = "FLOAT_VECTOR", "POINT"
        links.new(info.outputs["Geometry"], sample.inputs["Geometry"])
        links.new(value_socket, _vector_socket(sample.inputs, "Value"))
        links.new(index.outputs["Index"], sample.inputs["Index"])
        sample.location = (400.0, -200.0 * row)
        return _vector_socket(sample.outputs, "Value")

    # offset = t + x·column_x + y·column_y + z·column_z, (x, y, z) the vertex's position
    offset = sampled(nodes.new("GeometryNodeInputPosition").outputs["Position"], 0)
    position = nodes.new("GeometryNodeInputPosition")
    separate = nodes.new("ShaderNodeSeparateXYZ")
    links.new(position.outputs["Position"], separate.inputs[0])
    for row, axis in enumerate("xyz", start=1):
        attribute = nodes.new("GeometryNodeInputNamedAttribute")
        attribute.data_type = "FLOAT_VECTOR"
        attribute.inputs["Name"].default_value = COLUMN_ATTRIBUTES[row - 1]
        attribute.location = (200.0, -200.0 * row)
        add = nodes.new("ShaderNodeVectorMath")
        add.operation = "MULTIPLY_ADD"
        add.location = (600.0, -200.0 * row)
        links.new(sampled(_vector_socket(attribute.outputs, "Attribute"), row), add.inputs[0])
        links.new(separate.outputs[axis.upper()], add.inputs[1])
        links.new(offset, add.inputs[2])
        offset = add.outputs["Vector"]
    set_position = nodes.new("GeometryNodeSetPosition")
    links.new(group_in.outputs[1], info.inputs["Object"])
    links.new(group_in.outputs[0], set_position.inputs["Geometry"])
    links.new(offset, set_position.inputs["Offset"])
    links.new(set_position.outputs[0], group_out.inputs[0])
    for x, node in ((0, group_in), (1, info), (4, set_position), (5, group_out)):
        node.location = (200.0 * x, 200.0)
    return tree


def _vector_socket(sockets, name: str):
    """The vector socket called ``name``: older Blenders keep one hidden socket per data type
    under the same name, newer ones only the active type's."""
    for socket in sockets:
        if socket.name == name and socket.type == "VECTOR" and socket.enabled:
            return socket
    return sockets[name]


def _socket_identifier(tree) -> str:
    for item in tree.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == _SOCKET_NAME:
            return item.identifier
    raise KeyError(_SOCKET_NAME)


def _modifier(obj) -> Any:
    modifier = obj.modifiers.get(MODIFIER_NAME)
    if modifier is None or modifier.type != "NODES" or modifier.node_group is None:
        return None
    return modifier


def correction_object(obj) -> Any:
    """The correction object ``obj``'s modifier points at, or None."""
    modifier = _modifier(obj)
    if modifier is None:
        return None
    try:
        target = modifier[_socket_identifier(modifier.node_group)]
    except (KeyError, TypeError):
        return None
    if not isinstance(target, bpy.types.Object) or target.type != "MESH":
        return None
    return target


def claim(obj, active_only: bool = True) -> Any:
    """The correction mesh ``obj`` may write, or None: no modifier, a modifier turned off (with
    ``active_only``), a point count that differs from the head's, or a correction another head
    already writes (a copy of the head points at the same one until :func:`ensure` gives it
    its own)."""
    modifier = _modifier(obj)
    target = correction_object(obj)
    if target is None or (active_only and not (modifier.show_viewport and modifier.show_render)):
        return None
    if target.library is not None or not _usable_by(obj, target):
        return None
    _owners[target.session_uid] = obj.session_uid
    return target.data


def _usable_by(obj, target) -> bool:
    if len(target.data.vertices) != len(obj.data.vertices):
        return False
    owner = _owners.setdefault(target.session_uid, obj.session_uid)
    return owner == obj.session_uid or not _still_owns(owner, target)


def _still_owns(owner_uid: int, target) -> bool:
    for other in bpy.data.objects:
        if other.session_uid == owner_uid:
            return correction_object(other) == target
    return False


def shared(obj) -> bool:
    """True when ``obj``'s correction is written by another head (a duplicate made by copying)."""
    target = correction_object(obj)
    return target is not None and not _usable_by(obj, target)


def ensure(obj) -> bool:
    """Give the head ``obj`` the modifier and its own correction object (zero), first in its
    modifier stack; a modifier the user turned off stays off. Returns False when it cannot
    (linked data)."""
    if obj.library is not None or obj.data.library is not None:
        return False
    modifier = _modifier(obj)
    target = correction_object(obj)
    if target is not None and target.library is None and _usable_by(obj, target):
        if modifier.node_group.get(MARKER) != VERSION:  # from a file saved by an earlier version
            modifier.node_group = _node_group()
            modifier[_socket_identifier(modifier.node_group)] = target
            obj.update_tag()
        _owners[target.session_uid] = obj.session_uid
        return True
    if modifier is None:
        existing = obj.modifiers.get(MODIFIER_NAME)
        if existing is not None:  # same name, not ours (no node group): make room
            obj.modifiers.remove(existing)
        modifier = obj.modifiers.new(MODIFIER_NAME, "NODES")
        modifier.node_group = _node_group()
        modifier.show_expanded = False
        _move_first(obj, modifier)
    elif modifier.node_group.get(MARKER) != VERSION:
        modifier.node_group = _node_group()
    mesh = bpy.data.meshes.new(f"{obj.name} pose correction")
    mesh.vertices.add(len(obj.data.vertices))
    target = bpy.data.objects.new(mesh.name, mesh)
    target[MARKER] = 1
    target.hide_render = True
    modifier[_socket_identifier(modifier.node_group)] = target
    obj.update_tag()
    _owners[target.session_uid] = obj.session_uid
    return True


def _move_first(obj, modifier) -> None:
    index = obj.modifiers.find(modifier.name)
    if index <= 0:
        return
    if hasattr(obj.modifiers, "move"):  # Blender 4.3+
        obj.modifiers.move(index, 0)
    else:
        with bpy.context.temp_override(object=obj):
            bpy.ops.object.modifier_move_to_index(modifier=modifier.name, index=0)


def remove(obj) -> None:
    """Remove the modifier from ``obj`` and its correction object when nothing else uses it
    (a head being deleted, the native rig's copy of a head)."""
    target = correction_object(obj)
    modifier = obj.modifiers.get(MODIFIER_NAME)
    if modifier is not None:
        obj.modifiers.remove(modifier)
    if target is not None and target.users == 0 and target.get(MARKER) == 1:
        mesh = target.data
        _owners.pop(target.session_uid, None)
        bpy.data.objects.remove(target)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)


def write(mesh, offset: np.ndarray, columns: np.ndarray | None = None) -> None:
    """Set the correction and tag the small mesh (not the head): each evaluated vertex ``p``
    becomes ``p + offset + columns @ p``.

    ``offset (V, 3)`` float32; ``columns (3, V, 3)`` float32, what a vertex's x, y and z add
    (the map's columns), None for zero. Zero for both leaves the head's mesh exactly as it is.
    """
    attributes = mesh.attributes
    attributes["position"].data.foreach_set("vector", np.ascontiguousarray(offset, np.float32).reshape(-1))
    for axis, name in enumerate(COLUMN_ATTRIBUTES):
        attribute = attributes.get(name)
        if columns is None:
            if attribute is not None:
                attributes.remove(attribute)  # a missing attribute reads as zero: nothing to write next time
            continue
        if attribute is None:
            attribute = attributes.new(name, "FLOAT_VECTOR", "POINT")
        attribute.data.foreach_set("vector", np.ascontiguousarray(columns[axis], np.float32).reshape(-1))
    mesh.update_tag()
