"""Keyframes in bulk: one F-curve per channel, filled with ``keyframe_points.add`` +
``foreach_set`` (never ``keyframe_insert`` per frame). Works with Blender 4.2's ``action.fcurves``
and 4.4+'s slotted actions."""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

#: ``Keyframe.interpolation`` enum values as ``foreach_set`` wants them.
INTERPOLATION = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}


def new_action(id_data: Any, name: str) -> bpy.types.Action:
    """A new action assigned to ``id_data`` (its previous action stays in the file)."""
    action = bpy.data.actions.new(name)
    if id_data.animation_data is None:
        id_data.animation_data_create()
    id_data.animation_data.action = action
    return action


def new_fcurve(action: bpy.types.Action, id_data: Any, data_path: str, index: int = 0, group: str = "") -> Any:
    """The F-curve of ``data_path[index]`` on ``id_data`` in ``action``, created if needed."""
    if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+: layered actions
        try:
            return action.fcurve_ensure_for_datablock(id_data, data_path, index=index, group_name=group)
        except TypeError:  # 4.4 and 4.5 take no group name
            return action.fcurve_ensure_for_datablock(id_data, data_path, index=index)
    return action.fcurves.new(data_path, index=index, action_group=group)


def write_curve(curve: Any, frames: np.ndarray, values: np.ndarray, interpolation: str = "LINEAR") -> None:
    """Fill ``curve`` with one key a frame: ``frames (F,)``, ``values (F,)``."""
    count = frames.shape[0]
    points = curve.keyframe_points
    points.add(count)
    co = np.empty(2 * count, dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.full(count, INTERPOLATION[interpolation], dtype=np.int32))
    curve.update()


def animate(id_data: Any, action: bpy.types.Action | None, action_name: str, channels: list[tuple[str, int, str, np.ndarray]],
            frames: np.ndarray, set_value) -> tuple[bpy.types.Action | None, int]:
    """Key every varying channel; set constant ones with ``set_value(data_path, index, value)``
    and give them no keys (constant-zero channels included).

    ``channels``: ``(data_path, index, group, values (F,))``. Returns the action (created on the
    first varying channel) and the number of F-curves written.
    """
    written = 0
    for data_path, index, group, values in channels:
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] == 0 or np.all(values == values[0]):
            set_value(data_path, index, float(values[0]) if values.shape[0] else 0.0)
            continue
        if action is None:
            action = new_action(id_data, action_name)
        write_curve(new_fcurve(action, id_data, data_path, index, group), frames, values)
        written += 1
    return action, written
