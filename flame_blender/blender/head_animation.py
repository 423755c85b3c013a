"""A live head's parameters on every frame (read from its F-curves), and keying a head from a
parameter sequence: what Make Rig bakes and what ``scripts/export_head.py`` feeds it."""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..core.errors import FlameParameterError
from . import head as head_module
from .keyframes import new_fcurve

BAKE_MODES = ("FRAME_RANGE", "CURRENT")


@dataclass
class HeadFrames:
    """A head's parameters on each frame to bake (float64)."""

    frames: np.ndarray  # (N,) frame numbers
    shape: np.ndarray  # (N, n_shape)
    expression: np.ndarray  # (N, n_expression)
    pose: np.ndarray  # (N, 18): global, neck, jaw, eyes (6), transl


def head_frames(head, scene, bake: str = "FRAME_RANGE") -> HeadFrames:
    """Read the head's parameters on every frame of the scene's range (or the current frame).

    Plain F-curves are evaluated directly (no frame changes); other animation (NLA, drivers)
    goes through ``frame_set`` and the evaluated values.
    """
    if bake not in BAKE_MODES:
        raise FlameParameterError(f"bake={bake!r}: expected one of {BAKE_MODES}")
    if bake == "CURRENT":
        frames = np.array([scene.frame_current], dtype=np.float64)
    else:
        if scene.frame_end < scene.frame_start:
            raise FlameParameterError(f"the scene's frame range {scene.frame_start}..{scene.frame_end} is empty")
        frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.float64)
    params = head_module.get_parameters(head)
    n_shape, n_expression = params.shape.size, params.expression.size
    current = np.concatenate([params.shape, params.expression, *(getattr(params, n) for n in head_module.POSE_NAMES)])
    values = np.tile(current, (frames.size, 1))
    object_curves = head_module._fcurves(head)
    key_curves = head_module._fcurves(head.data.shape_keys)
    if object_curves is None or key_curves is None or _driven(head) or _driven(head.data.shape_keys):
        values = _values_by_frame_set(head, scene, frames)
    else:
        columns = _columns(n_shape, n_expression)
        limit = head_module.COEFFICIENT_LIMIT
        for curve in list(object_curves) + list(key_curves):
            column = columns.get((curve.data_path, curve.array_index))
            if column is None:
                continue
            sampled = np.fromiter((curve.evaluate(f) for f in frames), dtype=np.float64, count=frames.size)
            if column < n_shape + n_expression:
                sampled = np.clip(sampled, -limit, limit)  # what the shape-key slider range does
            values[:, column] = np.float32(sampled)  # Blender's properties are float32
    count = n_shape + n_expression
    return HeadFrames(frames, values[:, :n_shape], values[:, n_shape:count], values[:, count:])


def _driven(id_data) -> bool:
    """Drivers or NLA strips: values the F-curves alone do not give."""
    animation = id_data.animation_data
    return animation is not None and (len(animation.drivers) > 0 or len(animation.nla_tracks) > 0)


def _columns(n_shape: int, n_expression: int) -> dict[tuple[str, int], int]:
    columns: dict[tuple[str, int], int] = {}
    for i in range(n_shape):
        columns[(f'key_blocks["{head_module.shape_key_name(i)}"].value', 0)] = i
    for i in range(n_expression):
        columns[(f'key_blocks["{head_module.expression_key_name(i)}"].value', 0)] = n_shape + i
    column = n_shape + n_expression
    for name, size in (("global_pose", 3), ("neck_pose", 3), ("jaw_pose", 3), ("eye_pose", 6), ("transl", 3)):
        for index in range(size):
            columns[(f"flame.{name}", index)] = column
            column += 1
    return columns


def _values_by_frame_set(head, scene, frames: np.ndarray) -> np.ndarray:
    original = scene.frame_current
    rows = []
    try:
        for frame in frames:
            scene.frame_set(int(frame))
            depsgraph = bpy.context.evaluated_depsgraph_get()
            key = head.data.shape_keys.evaluated_get(depsgraph)
            flame = head.evaluated_get(depsgraph).flame
            names = [head_module.shape_key_name(i) for i in range(head.flame.n_shape)]
            names += [head_module.expression_key_name(i) for i in range(head.flame.n_expression)]
            coefficients = [key.key_blocks[n].value for n in names]
            pose = [*flame.global_pose, *flame.neck_pose, *flame.jaw_pose, *flame.eye_pose, *flame.transl]
            rows.append(coefficients + pose)
    finally:
        scene.frame_set(original)
    return np.asarray(rows, dtype=np.float64)


def animate_head(head, sequence, first_frame: int = 1) -> None:
    """Key a live head with one parameter set a frame (``FlameParameters`` list), from
    ``first_frame``; the scene's frame range is left alone. Used by ``scripts/export_head.py``."""
    count = len(sequence)
    if count == 0:
        raise FlameParameterError("the sequence is empty; expected at least one parameter set")
    n_shape, n_expression = head.flame.n_shape, head.flame.n_expression
    resized = [params.resized(n_shape, n_expression) for params in sequence]
    head_module.set_parameters(head, sequence[0])  # checks ranges and counts
    for params in sequence[1:]:
        for group, values in (("shape", params.shape), ("expression", params.expression)):
            if np.any(np.abs(values) > head_module.COEFFICIENT_LIMIT):
                raise FlameParameterError(f"{group} coefficients must lie within ±{head_module.COEFFICIENT_LIMIT:g}")
    columns = _columns(n_shape, n_expression)
    table = np.array(
        [np.concatenate([p.shape, p.expression, *(getattr(p, n) for n in head_module.POSE_NAMES)]) for p in resized]
    )
    frames = np.arange(first_frame, first_frame + count, dtype=np.float32)
    key = head.data.shape_keys
    for id_data in (head, key):
        if id_data.animation_data is None or id_data.animation_data.action is None:
            id_data.animation_data_create().action = bpy.data.actions.new(f"{head.name}_{'pose' if id_data is head else 'keys'}")
    co = np.empty(2 * count, dtype=np.float32)
    co[0::2] = frames
    for (path, index), column in columns.items():
        id_data = key if path.startswith("key_blocks") else head
        curve = new_fcurve(id_data.animation_data.action, id_data, path, index, "FLAME")
        curve.keyframe_points.clear()
        co[1::2] = table[:, column]
        curve.keyframe_points.add(count)
        curve.keyframe_points.foreach_set("co", co)
        curve.update()
    head_module.forget_caches()
