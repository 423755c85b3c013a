"""Operators: thin wrappers around :mod:`.head` that turn errors into reports."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import core
from ..core.errors import FlameFileError, FlameParameterError
from ..core.parameters import POSE_SIZES
from . import head, runtime
from .properties import RandomizeSettings
from .registration import register_classes, unregister_classes

#: What operators catch and report; anything else is a bug and should show its traceback.
USER_ERRORS = (FlameFileError, FlameParameterError, OSError)


class HeadOperator:
    """Operators on the active head: available only while one is active."""

    @classmethod
    def poll(cls, context) -> bool:
        return head.active_head(context) is not None


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
    n_shape: IntProperty(
        name="Identity Components", default=-1, min=-1, max=300,
        description="-1: the preference default (capped at what the model has)",
    )
    n_expression: IntProperty(
        name="Expression Components", default=-1, min=-1, max=100,
        description="-1: the preference default (capped at what the model has)",
    )
    name: StringProperty(name="Name", default="FLAME")
    teeth: BoolProperty(
        name="Teeth", default=False,
        description="Add VHAP's teeth: 120 vertices inside the mouth, the upper row following the "
        "neck, the lower the jaw",
    )

    def invoke(self, context, event):
        from .preferences import get_preferences

        prefs = get_preferences()
        if not self.filepath and prefs is not None and prefs.flame_dir:
            self.filepath = prefs.flame_dir
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        from .preferences import get_preferences

        source = self.filepath
        if not source:
            prefs = get_preferences()
            source = prefs.flame_dir if prefs is not None and prefs.flame_dir else ""
        if not source:
            source = str(core.builtin_flame_dir())
            self.report({"INFO"}, "No FLAME folder set: using the built-in synthetic model")
        try:
            obj = head.import_head(
                context, source, n_shape=self.n_shape, n_expression=self.n_expression, name=self.name,
                teeth=self.teeth,
            )
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"FLAME import failed: {error}")
            return {"CANCELLED"}
        self.report(
            {"INFO"}, f"Imported {obj.name}: {obj.flame.n_shape} identity, "
            f"{obj.flame.n_expression} expression components ({runtime.backend_in_use_label()})",
        )
        return {"FINISHED"}


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
