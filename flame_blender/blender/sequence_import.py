"""Import a tracked sequence onto a FLAME head: bulk keyframes, the tracked camera, the scene's
frame range and rate. Everything is checked before the scene changes; a failure afterwards
removes what was created, so a bad file leaves the scene as it was."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from .. import core
from ..core.errors import FlameFileError, FlameParameterError
from ..core.io.extra_blendshapes import KNOWN_EXTRA_BLENDSHAPES
from ..core.model.parameters import POSE_SIZES
from ..core.sequences import FlameSequence, load_sequence
from ..core.sequences.codes import parse_key_map
from . import head, head_import, pose_correction
from .keyframes import animate
from .sequence_camera import add_background_frames, continuous_quaternions, create_tracked_camera

#: FLAME's vertex count; VHAP's teeth add 120 more (5143), which a head without teeth ignores.
FLAME_VERTICES = 5023


@dataclass
class SequenceImport:
    """What :func:`import_sequence` did."""

    head: Any
    sequence: FlameSequence
    frame_start: int
    frame_end: int
    fps: float
    camera: Any = None
    curves: int = 0
    notes: list[str] = field(default_factory=list)


def _check_fits(obj: Any, sequence: FlameSequence) -> list[str]:
    notes = []
    for group, count, have in (("identity", sequence.n_shape, obj.flame.n_shape),
                               ("expression", sequence.n_expression, obj.flame.n_expression)):
        if count > have:
            raise FlameParameterError(
                f"the sequence has {count} {group} components, the head {obj.name!r} has {have}; "
                "import with target='NEW' or a head with more components"
            )
    for name in ("shape", "expression"):
        if np.any(np.abs(getattr(sequence, name)) > head.COEFFICIENT_LIMIT):
            raise FlameParameterError(f"{name} coefficients beyond ±{head.COEFFICIENT_LIMIT:g} (the shape-key range)")
    notes += _check_offsets(sequence, len(obj.data.vertices))
    if sequence.extra_params is not None and np.any(sequence.extra_params != 0):
        if _extra_directions(obj, sequence) is None:
            notes.append(
                f"{', '.join(sequence.extra_names)} are keyed as object properties only: the model folder has no "
                f"{'.npy, '.join(sequence.extra_names)}.npy blend shapes, so the mesh does not use them"
            )
        elif np.any(np.abs(sequence.extra_params) > head.COEFFICIENT_LIMIT):
            raise FlameParameterError(f"{', '.join(sequence.extra_names)} coefficients beyond "
                                      f"±{head.COEFFICIENT_LIMIT:g} (the shape-key range)")
    return notes


def _check_offsets(sequence: FlameSequence, head_vertices: int) -> list[str]:
    vertices = sequence.n_vertices
    if vertices is None:
        return []
    if vertices not in (FLAME_VERTICES, FLAME_VERTICES + 120) or head_vertices != FLAME_VERTICES:
        raise FlameFileError(
            sequence.source, f"offsets are for {vertices} vertices; the head has {head_vertices} "
            f"(expected {FLAME_VERTICES}, or {FLAME_VERTICES + 120} with VHAP's teeth)"
        )
    if sequence.dynamic_offset is not None and np.any(sequence.dynamic_offset != 0):
        # Offsets enter before joint regression: per-frame ones would need a per-frame basis,
        # which shape keys cannot express exactly. Refuse rather than play a different head.
        raise FlameFileError(
            sequence.source, "dynamic_offset: per-frame vertex offsets are not supported in Blender "
            "(only a constant static_offset is); use core.FlameNumpy(...)(offsets=...) for them"
        )
    return []


def _extra_directions(obj: Any, sequence: FlameSequence) -> dict[str, np.ndarray] | None:
    """The head model's blend shapes ``name -> (V, 3)`` for every extra coefficient of the
    sequence (``l_eyelid.npy``... beside the model), or None when one is missing."""
    if sequence.extra_params is None or not sequence.extra_names:
        return None
    found = core.find_extra_blendshapes(Path(obj.flame.model_path).parent)
    if not all(name in found for name in sequence.extra_names):
        return None
    return {name: found[name] for name in sequence.extra_names}


def _set_offset_key(obj: Any, offsets: np.ndarray | None) -> None:
    """Give the head ``head.OFFSETS_KEY`` = Basis + ``offsets (5023, 3)`` at value 1, or remove it
    (None or all zero). The pose key's update reads it into ``v_shaped``."""
    blocks = obj.data.shape_keys.key_blocks
    block = blocks.get(head.OFFSETS_KEY)
    if offsets is None or not np.any(offsets != 0):
        if block is not None:
            obj.shape_key_remove(block)
        return
    if block is None:
        block = obj.shape_key_add(name=head.OFFSETS_KEY, from_mix=False)
        block.slider_min, block.slider_max = 0.0, 1.0
    _set_relative_key(obj, block, offsets[:FLAME_VERTICES])  # VHAP's teeth rows move only the teeth
    block.value, block.mute = 1.0, False


def _set_relative_key(obj: Any, block: Any, delta: np.ndarray) -> None:
    reference = obj.data.shape_keys.reference_key
    base = np.empty(3 * len(reference.data), dtype=np.float32)
    reference.data.foreach_get("co", base)
    rows = np.zeros((len(reference.data), 3))
    rows[: delta.shape[0]] = delta  # a head with teeth: the teeth rows stay put
    block.data.foreach_set("co", (base.reshape(-1, 3) + rows).astype(np.float32).reshape(-1))
    head.forget_caches()  # the offsets key's delta is cached by the pose-key update


def _extra_keys(obj: Any, directions: dict[str, np.ndarray]) -> None:
    """One relative shape key per extra blend shape: Basis + direction; its value is the coefficient."""
    blocks = obj.data.shape_keys.key_blocks
    for name, direction in directions.items():
        block = blocks.get(name)
        if block is None:
            block = obj.shape_key_add(name=name, from_mix=False)
            block.slider_min, block.slider_max = -head.COEFFICIENT_LIMIT, head.COEFFICIENT_LIMIT
            block.value = 0.0
        _set_relative_key(obj, block, direction)


def _frame_numbers(sequence: FlameSequence, start_frame: int) -> np.ndarray:
    return (start_frame + (sequence.frame_ids - sequence.frame_ids[0])).astype(np.float64)


def _clear_action(id_data: Any) -> None:
    if id_data.animation_data is not None:
        id_data.animation_data.action = None


def apply_sequence(obj: Any, sequence: FlameSequence, frames: np.ndarray) -> int:
    """Key the head's coefficients, pose, extra coefficients and (NeRSemble) object transform.
    Returns the number of F-curves written.

    Static offsets become the ``flame_offsets`` shape key; extra coefficients (eyelids) key one
    shape key each when the model folder has their blend shapes, else object properties."""
    key = obj.data.shape_keys
    _clear_action(key)
    _clear_action(obj)
    _set_offset_key(obj, sequence.static_offset)
    directions = _extra_directions(obj, sequence)
    if directions is not None:
        _extra_keys(obj, directions)
    blocks = key.key_blocks
    for name in KNOWN_EXTRA_BLENDSHAPES:  # a previous sequence's eyelids: their keys are gone
        if name in blocks and (directions is None or name not in directions):
            blocks[name].value = 0.0
    channels = []
    for values, count, name_of in ((sequence.shape, obj.flame.n_shape, head.shape_key_name),
                                   (sequence.expression, obj.flame.n_expression, head.expression_key_name)):
        padded = np.zeros((len(sequence), count))
        padded[:, : values.shape[1]] = values  # FLAME's components are ordered: zero-padding is exact
        group = "Identity" if name_of is head.shape_key_name else "Expression"
        channels += [(f'key_blocks["{name_of(i)}"].value', 0, group, padded[:, i]) for i in range(count)]
    for i, name in enumerate(directions or ()):  # after skinning: the pose key does not read them
        channels.append((f'key_blocks["{name}"].value', 0, "Extra", sequence.extra_params[:, i]))

    def set_block(path: str, _index: int, value: float) -> None:
        blocks[path[12:-8]].value = value

    _, written = animate(key, None, f"{obj.name} Coefficients", channels, frames, set_block)

    channels = []
    for name in POSE_SIZES:
        values = getattr(sequence, name)
        channels += [(f"flame.{name}", i, "FLAME Pose", values[:, i]) for i in range(values.shape[1])]
    for i, name in enumerate(() if directions is not None else sequence.extra_names):
        obj[name] = 0.0
        channels.append((f'["{name}"]', 0, "FLAME Extra", sequence.extra_params[:, i]))
    if sequence.object_transform is not None:
        base = np.array(obj.matrix_basis)  # its own transform (matrix_world may not be evaluated yet)
        locations, quaternions, scales = continuous_quaternions(base @ sequence.object_transform)
        obj.rotation_mode = "QUATERNION"
        channels += [("location", i, "Object Transforms", locations[:, i]) for i in range(3)]
        channels += [("rotation_quaternion", i, "Object Transforms", quaternions[:, i]) for i in range(4)]
        channels += [("scale", i, "Object Transforms", scales[:, i]) for i in range(3)]

    def set_object(path: str, index: int, value: float) -> None:
        if path.startswith("flame."):
            getattr(obj.flame, path[6:])[index] = value
        elif path.startswith('["'):
            obj[path[2:-2]] = value
        else:
            getattr(obj, path)[index] = value

    with head.suspended_updates():
        _, more = animate(obj, None, f"{obj.name} Pose", channels, frames, set_object)
    return written + more


def import_sequence(
    context: Any,
    filepath: str | Path,
    format: str = "AUTO",
    start_frame: int = 1,
    fps: float = 0.0,
    target: str = "ACTIVE",
    key_map: str = "",
    rotation: str = "axis_angle",
    flame_dir: str | Path = "",
    frames_dir: str = "",
) -> SequenceImport:
    """Read ``filepath`` and animate a head with it (see the operator for the arguments).

    ``frames_dir``: a folder of the source frames (names ending in the frame id), shown behind
    the head in the tracked camera's view. Raises ``FlameFileError`` / ``FlameParameterError``
    with the scene unchanged.
    """
    scene = context.scene
    path = Path(bpy.path.abspath(str(filepath))).expanduser()
    sequence = load_sequence(path, format.lower(), key_map=parse_key_map(key_map) or None, rotation=rotation.lower())
    target = target.upper()
    if target == "ACTIVE":
        obj = head.active_head(context)
        if obj is None:
            raise FlameParameterError("no active FLAME head; select one or import with target='NEW'")
        notes = _check_fits(obj, sequence)
    elif target == "NEW":
        _check_offsets(sequence, FLAME_VERTICES)
    else:
        raise FlameParameterError(f"target {target!r}: expected 'ACTIVE' or 'NEW'")
    rate = float(fps) if fps > 0 else (sequence.fps or scene.render.fps / scene.render.fps_base)
    frames = _frame_numbers(sequence, int(start_frame))
    created = []
    try:
        if target == "NEW":
            source = str(flame_dir) or _default_flame_dir()
            obj = head_import.import_head(context, source, n_shape=sequence.n_shape, n_expression=sequence.n_expression,
                                   name=f"FLAME {sequence.format.title().replace('_', ' ')}")
            created.append(obj)
            notes = _check_fits(obj, sequence)
        curves = apply_sequence(obj, sequence, frames)
        camera = None
        if sequence.cameras is not None:
            camera = create_tracked_camera(scene, obj, sequence.cameras, frames)
            created.append(camera)
            if frames_dir:
                add_background_frames(camera, frames_dir, sequence.frame_ids, frames)
    except BaseException:
        for item in reversed(created):
            _remove_object(item)
        if created:
            context.view_layer.update()  # drop the removed objects' bases from the view layer
        raise
    _record(obj, sequence, frames, rate, camera)
    scene.frame_start, scene.frame_end = int(frames[0]), int(frames[-1])
    scene.render.fps = max(1, int(round(rate)))
    scene.render.fps_base = scene.render.fps / rate
    scene.frame_set(int(frames[0]))
    head.update_head(obj, depsgraph=context.evaluated_depsgraph_get())
    return SequenceImport(obj, sequence, int(frames[0]), int(frames[-1]), rate, camera, curves, notes)


def _remove_object(obj: Any) -> None:
    """Remove an object this import created, with its data, shape keys and actions."""
    data = obj.data
    owners = [obj, data, getattr(data, "shape_keys", None)]
    actions = [o.animation_data.action for o in owners if o is not None and o.animation_data and o.animation_data.action]
    key = owners[2]
    if obj.type == "MESH":
        pose_correction.remove(obj)
    bpy.data.objects.remove(obj)
    if key is not None and key.users == 0:
        bpy.data.shape_keys.remove(key)
    if data is not None and data.users == 0:
        (bpy.data.meshes if isinstance(data, bpy.types.Mesh) else bpy.data.cameras).remove(data)
    for action in actions:
        if action.users == 0:
            bpy.data.actions.remove(action)


def _default_flame_dir() -> str:
    from .preferences import get_preferences

    prefs = get_preferences()
    if prefs is not None and prefs.flame_dir:
        return prefs.flame_dir
    return str(core.builtin_flame_dir())


def _record(obj: Any, sequence: FlameSequence, frames: np.ndarray, rate: float, camera: Any) -> None:
    info = obj.flame_sequence
    info.source = str(sequence.source or "")
    info.format = sequence.format
    info.frame_start, info.frame_end = int(frames[0]), int(frames[-1])
    info.frames = len(sequence)
    info.first_frame_id = int(sequence.frame_ids[0])
    info.fps = rate
    info.camera = camera


def camera_world_matrix(obj: Any, world_to_camera: np.ndarray) -> Matrix:
    """The Blender camera matrix_world that sees ``obj`` as the OpenCV ``world_to_camera``
    (FLAME space) does (for scripts that place their own camera)."""
    from .sequence_camera import camera_local_matrices

    return obj.matrix_world @ Matrix(camera_local_matrices(world_to_camera[None])[0].tolist())
