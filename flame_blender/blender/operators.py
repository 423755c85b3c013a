"""Operators: thin wrappers around :mod:`.head` that turn errors into reports."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import core
from ..core.errors import FlameFileError, FlameParameterError
from ..core.model.parameters import POSE_SIZES
from . import head, head_import, runtime
from .properties import RandomizeSettings
from .registration import register_classes, unregister_classes

#: What operators catch and report; anything else is a bug and should show its traceback.
USER_ERRORS = (FlameFileError, FlameParameterError, OSError)


class HeadOperator:
    """Operators on the active head: available only while one is active."""

    @classmethod
    def poll(cls, context) -> bool:
        return head.active_head(context) is not None


#: Bytes one shape key adds to a saved .blend: 5023 float32 xyz points.
SHAPE_KEY_BYTES = 5023 * 3 * 4


def shape_key_size_note(n_shape: int, n_expression: int) -> str:
    """``"402 shape keys, about 24 MB in the .blend"`` (Basis and the pose key included)."""
    keys = n_shape + n_expression + 2
    return f"{keys} shape keys, about {keys * SHAPE_KEY_BYTES / 1e6:.0f} MB in the .blend"


class FLAME_OT_import_head(bpy.types.Operator, ImportHelper):
    """Import a FLAME head: mesh, UVs, masks and shape keys for identity, expression and pose"""

    bl_idname = "flame.import_head"
    bl_label = "Import FLAME Head"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".pkl"
    filter_glob: StringProperty(default="*.pkl", options={"HIDDEN"})
    filepath: StringProperty(
        name="File Path", subtype="FILE_PATH",
        description="FLAME model file or folder. Empty: the preferences' FLAME folder, "
        "else the built-in synthetic model",
    )
    use_builtin: BoolProperty(
        name="Built-in Synthetic Model",
        description="Import the generated stand-in head that ships with the extension (same "
        "file formats as FLAME) instead of the chosen file",
        default=False,
    )
    n_shape: IntProperty(
        name="Identity Components", default=-1, min=-1, max=300,
        description="Shape keys for identity; -1: the preference default (capped at what the model has)",
    )
    n_expression: IntProperty(
        name="Expression Components", default=-1, min=-1, max=100,
        description="Shape keys for expression; -1: the preference default (capped at what the model has)",
    )
    name: StringProperty(name="Name", default="FLAME")
    teeth: BoolProperty(
        name="Teeth", default=False,
        description="Add VHAP's teeth: 120 vertices inside the mouth, the upper row following the "
        "neck, the lower the jaw",
    )

    def invoke(self, context, event):
        from .preferences import get_preferences

        if self.filepath and Path(bpy.path.abspath(self.filepath)).is_file():
            # Dropped on the viewport (FileHandler): confirm the counts, no file browser.
            return context.window_manager.invoke_props_dialog(self, width=360)
        prefs = get_preferences()
        if not self.filepath and prefs is not None and prefs.flame_dir:
            self.filepath = prefs.flame_dir
        return ImportHelper.invoke(self, context, event)

    def _effective_counts(self) -> tuple[int, int]:
        from .preferences import get_preferences

        prefs = get_preferences()
        n_shape = self.n_shape if self.n_shape >= 0 else (prefs.default_n_shape if prefs else 300)
        n_expression = self.n_expression if self.n_expression >= 0 else (
            prefs.default_n_expression if prefs else 100)
        return n_shape, n_expression

    def draw(self, context) -> None:
        layout = self.layout
        layout.prop(self, "use_builtin")
        if self.filepath and not self.use_builtin:
            layout.label(text=bpy.path.basename(self.filepath.rstrip("/\\")) or self.filepath, icon="FILE")
        col = layout.column(align=True)
        col.prop(self, "n_shape")
        col.prop(self, "n_expression")
        col = layout.column(align=True)
        col.label(text=shape_key_size_note(*self._effective_counts()), icon="INFO")
        col.label(text="(-1: the preference default; fewer keys make a smaller file)")
        layout.prop(self, "name")

    def execute(self, context):
        from . import builtin_model
        from .preferences import get_preferences

        source = "" if self.use_builtin else self.filepath
        if not source and not self.use_builtin:
            prefs = get_preferences()
            source = prefs.flame_dir if prefs is not None and prefs.flame_dir else ""
        try:
            if not source:
                first_use = not builtin_model.is_generated()
                if first_use:
                    self.report({"INFO"}, "Generating the built-in synthetic model (first use, a few seconds)")
                source = str(builtin_model.builtin_model_dir(context.window_manager))
                if not self.use_builtin:
                    self.report({"INFO"}, "No FLAME folder set: using the built-in synthetic model")
            obj = head_import.import_head(
                context, source, n_shape=self.n_shape, n_expression=self.n_expression, name=self.name,
                teeth=self.teeth,
            )
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"FLAME import failed: {error}")
            return {"CANCELLED"}
        self.report(
            {"INFO"}, f"Imported {obj.name}: {obj.flame.n_shape} identity, "
            f"{obj.flame.n_expression} expression components "
            f"({runtime.head_backend_label(obj.flame.model_path, obj.flame.n_shape, obj.flame.n_expression)})",
        )
        return {"FINISHED"}


class FLAME_FH_import_head(bpy.types.FileHandler):
    """Drop a FLAME model ``.pkl`` onto the 3D viewport to import it (Blender 4.1+)."""

    bl_idname = "FLAME_FH_import_head"
    bl_label = "FLAME Head"
    bl_import_operator = "flame.import_head"
    bl_file_extensions = ".pkl"

    @classmethod
    def poll_drop(cls, context) -> bool:
        return context.area is not None and context.area.type == "VIEW_3D"


class FLAME_OT_reset_parameters(HeadOperator, bpy.types.Operator):
    """Set every coefficient and pose value of the active head to zero"""

    bl_idname = "flame.reset_parameters"
    bl_label = "Reset"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            head.reset_parameters(head.active_head(context))
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


class FLAME_OT_randomize_parameters(HeadOperator, RandomizeSettings, bpy.types.Operator):
    """Draw random identity, expression and pose values for the active head"""

    bl_idname = "flame.randomize_parameters"
    bl_label = "Randomize"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = head.active_head(context)
        groups = [
            group for group, wanted in (
                ("shape", self.random_shape), ("expression", self.random_expression),
                ("pose", self.random_pose),
            ) if wanted
        ]
        current = head.get_parameters(obj)
        params = core.FlameParameters.random(
            np.random.default_rng(self.seed), obj.flame.n_shape, obj.flame.n_expression,
            shape_sigma=self.shape_sigma, expression_sigma=self.expression_sigma,
            pose_scale=self.pose_scale, groups=groups,
        )
        # Groups not drawn keep their current values.
        if "shape" not in groups:
            params.shape = current.shape
        if "expression" not in groups:
            params.expression = current.expression
        if "pose" not in groups:
            for name in POSE_SIZES:
                setattr(params, name, getattr(current, name))
        params.shape = np.clip(params.shape, -head.COEFFICIENT_LIMIT, head.COEFFICIENT_LIMIT)
        params.expression = np.clip(params.expression, -head.COEFFICIENT_LIMIT, head.COEFFICIENT_LIMIT)
        try:
            head.set_parameters(obj, params)
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


class FLAME_OT_load_parameters(HeadOperator, bpy.types.Operator, ImportHelper):
    """Load identity, expression and pose from a .npz or .json parameter file"""

    bl_idname = "flame.load_parameters"
    bl_label = "Load Parameters"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz;*.json", options={"HIDDEN"})

    def execute(self, context):
        try:
            params = core.load_parameters(Path(bpy.path.abspath(self.filepath)))
            head.set_parameters(head.active_head(context), params)
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


class FLAME_OT_save_parameters(HeadOperator, bpy.types.Operator, ExportHelper):
    """Save the active head's identity, expression and pose to a .npz or .json file"""

    bl_idname = "flame.save_parameters"
    bl_label = "Save Parameters"

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz;*.json", options={"HIDDEN"})
    check_extension = None  # accept .json as well as .npz

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if path.suffix.lower() not in (".npz", ".json"):
            path = path.with_suffix(".npz")
        try:
            core.save_parameters(head.get_parameters(head.active_head(context)), path)
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {path}")
        return {"FINISHED"}


class FLAME_OT_reload_model(bpy.types.Operator):
    """Try again to load the FLAME models of all heads (e.g. after restoring a missing file)"""

    bl_idname = "flame.reload_model"
    bl_label = "Reload Model"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        runtime.forget_errors()
        head.forget_caches()
        head.update_all_heads(force=True)
        obj = head.active_head(context)
        error = runtime.model_error(obj.flame.model_path) if obj is not None else None
        if error:
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        return {"FINISHED"}


class FLAME_OT_make_single_user(HeadOperator, bpy.types.Operator):
    """Give the active head its own mesh: a linked duplicate (Alt+D) shares one pose key"""

    bl_idname = "flame.make_single_user"
    bl_label = "Make Single User"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import diagnostics

        obj = head.active_head(context)
        if not diagnostics.make_single_user(obj):
            self.report({"INFO"}, f"{obj.name} already has its own mesh")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name} now has its own mesh {obj.data.name}")
        return {"FINISHED"}


class FLAME_OT_report_problem(bpy.types.Operator):
    """Show a problem found while updating heads in the status bar (handlers cannot report)"""

    bl_idname = "flame.report_problem"
    bl_label = "Report FLAME Problem"
    bl_options = {"INTERNAL"}

    message: StringProperty(name="Message", options={"SKIP_SAVE"})

    def execute(self, context):
        self.report({"WARNING"}, f"FLAME: {self.message}")
        return {"FINISHED"}


def menu_import(self, context) -> None:
    self.layout.operator(FLAME_OT_import_head.bl_idname, text="FLAME Head (.pkl)")


classes = (
    FLAME_OT_import_head,
    FLAME_FH_import_head,
    FLAME_OT_reset_parameters,
    FLAME_OT_randomize_parameters,
    FLAME_OT_load_parameters,
    FLAME_OT_save_parameters,
    FLAME_OT_reload_model,
    FLAME_OT_make_single_user,
    FLAME_OT_report_problem,
)


def register() -> None:
    register_classes(classes)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)  # no duplicate entry on a second call
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    unregister_classes(classes)
