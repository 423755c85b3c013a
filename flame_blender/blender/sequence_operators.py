"""Tracked sequences in the UI: ``flame.import_sequence``, ``flame.export_sequence``, the
per-head ``obj.flame_sequence`` record and the sidebar's Animation box."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.errors import FlameFileError, FlameParameterError
from ..core.sequences import FORMATS
from . import head
from .panel import FlameSidebar
from .registration import register_classes, unregister_classes
from .sequence_export import export_sequence
from .sequence_import import import_sequence

USER_ERRORS = (FlameFileError, FlameParameterError, OSError)

FORMAT_ITEMS = [("AUTO", "Auto", "Detect the format and report which one was found")] + [
    (name, name.replace("_", " ").title(), text) for name, (_, text) in FORMATS.items()
]
ROTATION_ITEMS = [
    ("AXIS_ANGLE", "Axis-Angle", "Rodrigues vectors, radians"),
    ("6D", "6D", "First two rows of the rotation matrix (pytorch3d)"),
    ("MATRIX", "Matrix", "3x3 rotation matrices"),
    ("EULER", "Euler XYZ", "Intrinsic XYZ Euler angles, radians"),
]


class FlameSequenceInfo(bpy.types.PropertyGroup):
    """Where a head's animation came from (set by Import Sequence)."""

    source: StringProperty(name="Source", subtype="FILE_PATH")
    format: StringProperty(name="Format")
    frames: IntProperty(name="Frames", default=0)
    frame_start: IntProperty(name="Start")
    frame_end: IntProperty(name="End")
    first_frame_id: IntProperty(name="First Frame Id")
    fps: FloatProperty(name="Frame Rate")
    camera: PointerProperty(name="Tracked Camera", type=bpy.types.Object)


class FLAME_OT_import_sequence(bpy.types.Operator, ImportHelper):
    """Import a tracked FLAME sequence (VHAP, metrical-tracker, EMOCA, ...) as keyframes, with the tracker's camera"""

    bl_idname = "flame.import_sequence"
    bl_label = "Import Sequence"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz;*.npy;*.pt;*.frame;*.json;*.jsonl", options={"HIDDEN"})
    filepath: StringProperty(name="File Path", subtype="FILE_PATH", description="A sequence file or a folder of per-frame files")
    format: EnumProperty(name="Format", items=FORMAT_ITEMS, default="AUTO")
    start_frame: IntProperty(name="Start Frame", default=1, description="Blender frame of the first frame id")
    fps: FloatProperty(name="Frame Rate", default=0.0, min=0.0, description="0: the file's rate when it has one, else the scene's")
    target: EnumProperty(name="Target", items=[
        ("ACTIVE", "Active Head", "Animate the active head"),
        ("NEW", "New Head", "Import a head with the file's component counts first"),
    ], default="ACTIVE")
    key_map: StringProperty(name="Key Mapping", default="",
                            description='Another layout: JSON object FLAME name -> file key, e.g. {"expression": "exp_coeffs"}')
    rotation: EnumProperty(name="Rotations", items=ROTATION_ITEMS, default="AXIS_ANGLE",
                           description="How a key mapping's pose keys are written")
    frames_dir: StringProperty(name="Source Frames", subtype="DIR_PATH",
                               description="Folder of the tracker's source frames (names ending in the frame id): "
                               "the tracked camera's background")
    flame_dir: StringProperty(name="FLAME Model", subtype="FILE_PATH",
                              description="For target New: the model (empty: the preferences' folder, else the built-in one)")

    def execute(self, context):
        rotation = {"AXIS_ANGLE": "axis_angle", "6D": "6d", "MATRIX": "matrix", "EULER": "euler"}[self.rotation]
        try:
            result = import_sequence(context, self.filepath, self.format, self.start_frame, self.fps, self.target,
                                     self.key_map, rotation, self.flame_dir, self.frames_dir)
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"Sequence import failed: {error}")
            return {"CANCELLED"}
        camera = f", camera {result.camera.name}" if result.camera else ""
        self.report({"INFO"}, f"Imported {len(result.sequence)} frames of format {result.sequence.format} onto "
                    f"{result.head.name} (frames {result.frame_start}-{result.frame_end} at {result.fps:g} fps, "
                    f"{result.curves} F-curves{camera})")
        for note in result.notes:
            self.report({"WARNING"}, note)
        return {"FINISHED"}


class FLAME_OT_export_sequence(bpy.types.Operator, ExportHelper):
    """Export the active head's animation: VHAP-layout npz, this project's .jsonl, or per-frame vertices"""

    bl_idname = "flame.export_sequence"
    bl_label = "Export Sequence"
    bl_options = {"REGISTER"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz;*.jsonl", options={"HIDDEN"})
    format: EnumProperty(name="Format", items=[
        ("VHAP", "VHAP npz", "tracked_flame_params layout (GaussianAvatars reads it too)"),
        ("JSONL", "Parameters .jsonl", "One parameter set a line, with frame ids"),
        ("NPZ_VERTICES", "Vertices npz", "Per-frame vertices (F, V, 3) float32 and landmarks"),
    ], default="VHAP")

    @classmethod
    def poll(cls, context) -> bool:
        return head.active_head(context) is not None

    def execute(self, context):
        path = self.filepath
        if self.format == "JSONL" and path.endswith(".npz"):
            path = path[:-4] + ".jsonl"
        try:
            written, count = export_sequence(head.active_head(context), context.scene, path, self.format)
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"Sequence export failed: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {count} frames to {written}")
        return {"FINISHED"}


class FLAME_PT_animation(FlameSidebar, bpy.types.Panel):
    bl_label = "Animation"
    bl_parent_id = "FLAME_PT_head"

    def draw(self, context) -> None:
        layout = self.layout
        obj = head.active_head(context)
        row = layout.row(align=True)
        row.operator(FLAME_OT_import_sequence.bl_idname, icon="IMPORT")
        row.operator(FLAME_OT_export_sequence.bl_idname, icon="EXPORT")
        if obj is None or not obj.flame_sequence.frames:
            return
        info = obj.flame_sequence
        column = layout.column(align=True)
        column.label(text=f"Format: {info.format}")
        column.label(text=f"Frames {info.frame_start}-{info.frame_end} ({info.frames} keyed, {info.fps:g} fps)")
        if info.camera is not None:
            column.label(text=f"Camera: {info.camera.name}", icon="CAMERA_DATA")


def menu_import(self, context) -> None:
    self.layout.operator(FLAME_OT_import_sequence.bl_idname, text="FLAME Sequence")


def menu_export(self, context) -> None:
    self.layout.operator(FLAME_OT_export_sequence.bl_idname, text="FLAME Sequence")


classes = (FlameSequenceInfo, FLAME_OT_import_sequence, FLAME_OT_export_sequence, FLAME_PT_animation)


def register() -> None:
    register_classes(classes)
    bpy.types.Object.flame_sequence = PointerProperty(type=FlameSequenceInfo)
    for menu, entry in ((bpy.types.TOPBAR_MT_file_import, menu_import), (bpy.types.TOPBAR_MT_file_export, menu_export)):
        menu.remove(entry)
        menu.append(entry)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    if hasattr(bpy.types.Object, "flame_sequence"):
        del bpy.types.Object.flame_sequence
    unregister_classes(classes)
