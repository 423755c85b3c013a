"""Operators that add and remove a head's landmark empties (see :mod:`.landmark_empties`)."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from . import head, landmark_empties
from .operators import USER_ERRORS, HeadOperator
from .registration import register_classes, unregister_classes

_SET_ITEMS = [(name, label, description) for name, (label, description) in landmark_empties.LANDMARK_SETS.items()]


class FLAME_OT_add_landmarks(HeadOperator, bpy.types.Operator):
    """Add landmark empties that stay on the active head's deforming surface"""

    bl_idname = "flame.add_landmarks"
    bl_label = "Add Landmarks"
    bl_options = {"REGISTER", "UNDO"}

    landmark_set: EnumProperty(name="Landmarks", items=_SET_ITEMS, default="mediapipe")

    def execute(self, context):
        obj = head.active_head(context)
        try:
            empties = landmark_empties.add_landmark_empties(obj, self.landmark_set)
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"FLAME landmarks not added: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Added {len(empties)} {landmark_empties.LANDMARK_SETS[self.landmark_set][0]} empties")
        return {"FINISHED"}


class FLAME_OT_remove_landmarks(HeadOperator, bpy.types.Operator):
    """Delete the active head's landmark empties"""

    bl_idname = "flame.remove_landmarks"
    bl_label = "Remove Landmarks"
    bl_options = {"REGISTER", "UNDO"}

    landmark_set: EnumProperty(
        name="Landmarks", items=[("ALL", "All", "Every landmark set of the head"), *_SET_ITEMS], default="ALL"
    )

    def execute(self, context):
        which = None if self.landmark_set == "ALL" else self.landmark_set
        count = landmark_empties.remove_landmark_empties(head.active_head(context), which)
        self.report({"INFO"}, f"Removed {count} landmark empties")
        return {"FINISHED"}


classes = (FLAME_OT_add_landmarks, FLAME_OT_remove_landmarks)


def register() -> None:
    register_classes(classes)


def unregister() -> None:
    unregister_classes(classes)
    landmark_empties.clear()
