"""Make Rig and Export operators, and the sidebar's FLAME Export panel."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from . import head, rig, rig_export
from .operators import USER_ERRORS
from .panel import FlameSidebar
from .registration import register_classes, unregister_classes


class FLAME_OT_make_rig(bpy.types.Operator):
    """Turn the active FLAME head and its animation into an armature with shape keys: exact,
    and playable, renderable and exportable without this extension"""

    bl_idname = "flame.make_rig"
    bl_label = "Make Rig"
    bl_options = {"REGISTER", "UNDO"}

    bake: EnumProperty(
        name="Bake",
        items=(
            ("FRAME_RANGE", "Frame Range", "Key every frame of the scene's frame range"),
            ("CURRENT", "Current Frame", "Pose the rig as the head is now, without keys"),
        ),
        default="FRAME_RANGE",
    )
    keep_live: BoolProperty(
        name="Keep Live Head", default=False,
        description="Keep the live head beside the rig (else the rigged mesh replaces it)",
    )
    identity_as_shape_keys: BoolProperty(
        name="Identity as Shape Keys", default=False,
        description="Keep identity as shape keys shape_000... instead of baking it into the mesh",
    )

    @classmethod
    def poll(cls, context) -> bool:
        return head.active_head(context) is not None

    def execute(self, context):
        try:
            armature, mesh = rig.make_rig(
                context, head.active_head(context), bake=self.bake, keep_live=self.keep_live,
                identity_as_shape_keys=self.identity_as_shape_keys,
            )
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"Make Rig failed: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Made {armature.name} and {mesh.name}")
        return {"FINISHED"}


class FLAME_OT_export_rig(bpy.types.Operator, ExportHelper):
    """Export the active FLAME rig with Blender's own exporters"""

    bl_idname = "flame.export_rig"
    bl_label = "Export FLAME Rig"

    filename_ext = ".glb"
    check_extension = None  # the extension follows the format
    filter_glob: StringProperty(default="*.glb;*.gltf;*.fbx;*.abc;*.usd;*.usdc", options={"HIDDEN"})
    format: EnumProperty(
        name="Format",
        items=[(key, label, label) for key, (label, _) in rig_export.FORMATS.items()],
        default="GLB",
    )

    @classmethod
    def poll(cls, context) -> bool:
        return rig.rig_objects(context.active_object) is not None

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        extension = rig_export.FORMATS[self.format][1]
        if path.suffix.lower() != extension:
            path = path.with_suffix(extension)
        armature, _ = rig.rig_objects(context.active_object)
        try:
            written = rig_export.export_rig(armature, path, self.format)
        except (*USER_ERRORS, RuntimeError, ValueError) as error:
            self.report({"ERROR"}, f"Export failed: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {written}")
        return {"FINISHED"}


class FLAME_PT_export(FlameSidebar, bpy.types.Panel):
    bl_label = "FLAME Export"

    @classmethod
    def poll(cls, context) -> bool:
        obj = context.active_object
        return head.is_head(obj) or rig.rig_objects(obj) is not None

    def draw(self, context) -> None:
        layout = self.layout
        box = layout.box()
        box.label(text="Export", icon="EXPORT")
        if head.is_head(context.active_object):
            box.label(text="Native rig: plays without the extension")
            row = box.row(align=True)
            row.operator(FLAME_OT_make_rig.bl_idname, text="Make Rig (animation)").bake = "FRAME_RANGE"
            row.operator(FLAME_OT_make_rig.bl_idname, text="Current Frame").bake = "CURRENT"
            return
        col = box.column(align=True)
        for key, (label, _) in rig_export.FORMATS.items():
            if key == "USD" and not rig_export.usd_available():
                continue
            col.operator(FLAME_OT_export_rig.bl_idname, text=label).format = key


classes = (FLAME_OT_make_rig, FLAME_OT_export_rig, FLAME_PT_export)


def register() -> None:
    register_classes(classes)


def unregister() -> None:
    unregister_classes(classes)
