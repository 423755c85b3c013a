"""``flame.setup_studio``, ``flame.apply_albedo`` and ``flame.render``: thin wrappers that turn errors into reports.

The work is in plain functions (:func:`setup_studio_for_head`, :func:`apply_albedo`,
:func:`render_still`) that scripts call headless.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    StringProperty,
)

from ... import core
from ...core.errors import FlameFileError, FlameParameterError
from .. import head as blender_head
from ..registration import (
    register_classes,
    register_scene_settings,
    unregister_classes,
    unregister_scene_settings,
)
from . import device as cycles_device
from . import material, passes, studio

USER_ERRORS = (FlameFileError, FlameParameterError, OSError)


class FlameRenderSettings(bpy.types.PropertyGroup):
    """``scene.flame_render``: what the Studio and Render buttons use."""

    focal_length: FloatProperty(
        name="Focal Length", description="Camera focal length (36 mm wide sensor)",
        default=50.0, min=1.0, soft_max=300.0, unit="CAMERA",
    )
    distance: FloatProperty(
        name="Distance", description="Camera distance from the head's centre",
        default=0.6, min=0.05, soft_max=5.0, unit="LENGTH",
    )
    azimuth: FloatProperty(
        name="Azimuth", description="Camera angle around the head; 0 = in front, positive = the "
        "head's left (degrees)", default=0.0, soft_min=-180.0, soft_max=180.0,
    )
    elevation: FloatProperty(
        name="Elevation", description="Camera angle above the head's centre (degrees)",
        default=0.0, min=-89.0, max=89.0,
    )
    light_power: FloatProperty(
        name="Key Light", description="Key light power; fill and rim follow it",
        default=40.0, min=0.0, soft_max=500.0, unit="POWER",
    )
    transparent: BoolProperty(
        name="Transparent Background", description="Render the background transparent",
        default=False,
    )
    samples: IntProperty(name="Samples", description="Cycles samples per pixel", default=64, min=1)
    filepath: StringProperty(
        name="Output", description="Where flame.render saves the still (empty: not saved)",
        default="//flame_render.png", subtype="FILE_PATH",
    )
    last_device: StringProperty(name="Last Device", description="The device of the last render")


def _target_head(context) -> bpy.types.Object | None:
    obj = context.active_object
    if blender_head.is_head(obj):
        return obj
    return next((o for o in context.scene.objects if blender_head.is_head(o)), None)


def setup_studio_for_head(
    scene: bpy.types.Scene, head: bpy.types.Object, settings: studio.StudioSettings
) -> bpy.types.Object:
    """Material (albedo from the model's folder, if any), camera, lights and world; returns the camera."""
    texture_file = material.find_texture_model_file(Path(head.flame.model_path).parent)
    texture_model = core.load_texture_model(texture_file) if texture_file else None  # may raise
    problem = material.albedo_problem(head, texture_model) if texture_model is not None else None
    if problem is not None:
        print(f"FLAME: {problem}; plain skin colour")
        texture_model = None
    material.ensure_head_material(head, texture_model, pack=True)
    scene.render.engine = "CYCLES"
    return studio.setup_studio(scene, head, settings)


def apply_albedo(head: bpy.types.Object, seed: int = 0, sigma: float = 0.0) -> str | None:
    """Shade ``head`` with the albedo of the texture model beside its FLAME model.

    Coefficients are ``sigma * N(0, 1)`` drawn from ``seed`` (sigma 0: the mean albedo). Returns
    the texture file's name, or None when the folder has none (the head gets a plain skin
    colour). Raises ``FlameFileError`` for a broken texture file and ``FlameParameterError`` when
    the head has no UVs or the texture is laid out for other UVs, before anything changes.
    """
    texture_file = material.find_texture_model_file(Path(head.flame.model_path).parent)
    if texture_file is None:
        material.ensure_head_material(head, None)
        return None
    texture_model = core.load_texture_model(texture_file)
    problem = material.albedo_problem(head, texture_model)
    if problem is not None:
        raise FlameParameterError(f"{head.name}: {problem}")
    rng = np.random.default_rng(seed)
    coefficients = sigma * rng.standard_normal(texture_model.n_components)
    material.ensure_head_material(head, texture_model, coefficients, pack=True)
    return texture_file.name


def render_still(
    scene: bpy.types.Scene, filepath: str | None, samples: int, device: str = "AUTO"
) -> cycles_device.DeviceChoice:
    """Render the scene camera's view with Cycles; save it to ``filepath`` when given."""
    if scene.camera is None:
        raise FlameParameterError("the scene has no camera: run Studio Setup first")
    scene.render.engine = "CYCLES"
    choice = cycles_device.select_cycles_device(scene, device)
    scene.cycles.samples = samples
    if filepath:
        path = Path(bpy.path.abspath(filepath))
        path.parent.mkdir(parents=True, exist_ok=True)
        passes.render_picture(scene, path, samples, scene.render.film_transparent)
    else:
        bpy.ops.render.render()
    return choice


def preferred_device() -> str:
    from ..preferences import get_preferences

    prefs = get_preferences()
    return getattr(prefs, "cycles_device", "AUTO") if prefs is not None else "AUTO"


class FLAME_OT_setup_studio(bpy.types.Operator):
    """Camera framing the head, a key, fill and rim light, a plain world and the skin material"""

    bl_idname = "flame.setup_studio"
    bl_label = "Studio Setup"
    bl_options = {"REGISTER", "UNDO"}

    focal_length: FloatProperty(name="Focal Length", default=50.0, min=1.0, unit="CAMERA")
    distance: FloatProperty(name="Distance", default=0.6, min=0.05, unit="LENGTH")
    azimuth: FloatProperty(name="Azimuth", default=0.0)
    elevation: FloatProperty(name="Elevation", default=0.0, min=-89.0, max=89.0)
    light_power: FloatProperty(name="Key Light", default=40.0, min=0.0, unit="POWER")
    transparent: BoolProperty(name="Transparent Background", default=False)

    @classmethod
    def poll(cls, context) -> bool:
        return _target_head(context) is not None

    def invoke(self, context, event):
        settings = context.scene.flame_render
        for name in ("focal_length", "distance", "azimuth", "elevation", "light_power", "transparent"):
            setattr(self, name, getattr(settings, name))
        return self.execute(context)

    def execute(self, context):
        head = _target_head(context)
        if head is None:
            self.report({"ERROR"}, "No FLAME head in the scene: import one first")
            return {"CANCELLED"}
        try:
            setup_studio_for_head(
                context.scene,
                head,
                studio.StudioSettings(
                    focal_length=self.focal_length,
                    distance=self.distance,
                    azimuth=self.azimuth,
                    elevation=self.elevation,
                    light_power=self.light_power,
                    transparent=self.transparent,
                ),
            )
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


class FLAME_OT_apply_albedo(bpy.types.Operator):
    """Shade the head with its texture model's albedo on the UVs (random with a seed, or the mean)"""

    bl_idname = "flame.apply_albedo"
    bl_label = "Apply Albedo"
    bl_options = {"REGISTER", "UNDO"}

    seed: IntProperty(name="Seed", default=0, min=0)
    sigma: FloatProperty(
        name="Sigma", description="Spread of the albedo coefficients; 0 gives the mean albedo",
        default=0.0, min=0.0, soft_max=3.0,
    )

    @classmethod
    def poll(cls, context) -> bool:
        return _target_head(context) is not None

    def execute(self, context):
        try:
            source = apply_albedo(_target_head(context), self.seed, self.sigma)  # poll: a head
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if source is None:
            self.report({"WARNING"}, "No texture model beside the FLAME model: plain skin colour")
        else:
            self.report({"INFO"}, f"Albedo from {source}")
        return {"FINISHED"}


OUTPUT_CHOICES = [
    ("ASK", "Ask", "In an unsaved file a relative output path has no folder: ask (from Python: refuse)"),
    ("TEMP", "Temporary Folder", "Save into the system's temporary folder, under the same file name"),
]


def resolve_output(filepath: str, choice: str = "ASK") -> tuple[Path | None, str | None]:
    """Where a still goes: ``(absolute path, None)``, ``(None, None)`` for no file, or
    ``(None, why not)`` for a relative (``//``) path in a file that was never saved."""
    if not filepath:
        return None, None
    if filepath.startswith("//") and not bpy.data.filepath:
        if choice == "TEMP":
            import tempfile

            return Path(tempfile.gettempdir()) / (Path(filepath[2:]).name or "flame_render.png"), None
        return None, (
            f"This .blend file is not saved, so the output {filepath!r} has no folder: save the "
            "file, choose an absolute output path, or render into the temporary folder"
        )
    return Path(bpy.path.abspath(filepath)).resolve(), None


def prepare_still(scene: bpy.types.Scene, samples: int, device: str) -> cycles_device.DeviceChoice:
    """Cycles on the chosen device with the picture settings of :func:`passes.render_picture`
    (8-bit RGBA PNG), for a render that Blender runs itself (the panel's modal render)."""
    if scene.camera is None:
        raise FlameParameterError("the scene has no camera: run Studio Setup first")
    scene.render.engine = "CYCLES"
    choice = cycles_device.select_cycles_device(scene, device)
    scene.cycles.samples = samples
    passes.use_png_rgba8(scene.render.image_settings)
    return choice


# Blender 4.5+ warns about "//" in an operator's path unless the property says it supports it.
_BLEND_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()


class FLAME_OT_render(bpy.types.Operator):
    """Render a still with Cycles on the preferred device (GPU when available) and save it"""

    bl_idname = "flame.render"
    bl_label = "Render Still"
    bl_options = {"REGISTER"}

    filepath: StringProperty(
        name="Output", subtype="FILE_PATH", default="", options=_BLEND_RELATIVE,
        description="Where the picture is saved; unset: the panel's output path",
    )
    samples: IntProperty(name="Samples", default=64, min=1, description="Unset: the panel's samples")
    device: StringProperty(
        name="Device", default="", description="AUTO, OPTIX, CUDA, HIP, ONEAPI, METAL or CPU; "
        "empty: the add-on preference",
    )
    output_choice: EnumProperty(
        name="Unsaved File", items=OUTPUT_CHOICES, default="ASK",
        description="What to do when the file is unsaved and the output path is relative",
    )

    @classmethod
    def poll(cls, context) -> bool:
        return context.scene is not None

    def _settings_from_panel(self, context) -> None:
        settings = context.scene.flame_render
        if not self.properties.is_property_set("filepath"):
            self.filepath = settings.filepath
        if not self.properties.is_property_set("samples"):
            self.samples = settings.samples

    def _device(self) -> str | None:
        device = (self.device or preferred_device()).upper()
        if device not in cycles_device.DEVICE_NAMES:
            self.report({"ERROR"}, f"Unknown device {device!r}; expected one of {', '.join(cycles_device.DEVICE_NAMES)}")
            return None
        return device

    def invoke(self, context, event):
        self._settings_from_panel(context)
        _, problem = resolve_output(self.filepath, self.output_choice)
        if problem and not bpy.app.background:
            self.output_choice = "TEMP"
            return context.window_manager.invoke_props_dialog(self, width=420)
        if bpy.app.background or context.window is None:
            return self.execute(context)
        return self._start_render_job(context)

    def draw(self, context) -> None:
        layout = self.layout
        if resolve_output(self.filepath)[1] is None:  # (the Adjust Last Operation panel)
            for name in ("filepath", "samples", "device"):
                layout.prop(self, name)
            return
        col = layout.column(align=True)
        col.label(text="This .blend file is not saved yet,", icon="ERROR")
        col.label(text=f"so the output {self.filepath or '//'} has no folder.")
        layout.prop(self, "output_choice", expand=True)
        layout.prop(self, "filepath", text="Or save to")
        col = layout.column(align=True)
        col.label(text="An absolute path above is used as it is.")

    def execute(self, context):
        """Blocking render (Python, background, or after the unsaved-file dialog in a GUI)."""
        self._settings_from_panel(context)
        device = self._device()
        if device is None:
            return {"CANCELLED"}
        path, problem = resolve_output(self.filepath, self.output_choice)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        if not bpy.app.background and context.window is not None and self.options.is_invoke:
            # After the unsaved-file dialog: Blender's render job for the path now chosen.
            bpy.ops.flame.render("INVOKE_DEFAULT", filepath=str(path) if path else "",
                                 samples=self.samples, device=device)
            return {"FINISHED"}
        try:
            choice = render_still(context.scene, str(path) if path else None, self.samples, device)
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        context.scene.flame_render.last_device = choice.label
        self.report({"WARNING"} if choice.fell_back else {"INFO"}, choice.message)
        if path is not None:
            self.report({"INFO"}, f"Saved {path}")
        return {"FINISHED"}

    # -- in a running Blender: Blender's own render job, with its progress bar and Esc --------

    def _start_render_job(self, context):
        device = self._device()
        path, problem = resolve_output(self.filepath, self.output_choice)
        if device is None or problem:
            if problem:
                self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        try:
            choice = prepare_still(context.scene, self.samples, device)
        except USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        context.scene.flame_render.last_device = choice.label
        self._path, self._choice, self._state = path, choice, []
        bpy.app.handlers.render_complete.append(self._on_complete)
        bpy.app.handlers.render_cancel.append(self._on_cancel)
        if bpy.ops.render.render("INVOKE_DEFAULT") != {"RUNNING_MODAL"}:
            self._remove_handlers()
            self.report({"ERROR"}, "Blender could not start the render")
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _on_complete(self, *args) -> None:
        self._state.append("done")

    def _on_cancel(self, *args) -> None:
        self._state.append("cancelled")

    def _remove_handlers(self) -> None:
        for handlers, function in ((bpy.app.handlers.render_complete, self._on_complete),
                                   (bpy.app.handlers.render_cancel, self._on_cancel)):
            if function in handlers:
                handlers.remove(function)

    def modal(self, context, event):
        if event.type != "TIMER" or not self._state:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._remove_handlers()
        if self._state[0] == "cancelled":
            self.report({"WARNING"}, "Render cancelled: nothing saved")
            return {"CANCELLED"}
        self.report({"WARNING"} if self._choice.fell_back else {"INFO"}, self._choice.message)
        if self._path is not None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                bpy.data.images["Render Result"].save_render(str(self._path), scene=context.scene)
            except (OSError, RuntimeError) as error:
                self.report({"ERROR"}, f"Rendered, but could not save {self._path}: {error}")
                return {"CANCELLED"}
            self.report({"INFO"}, f"Saved {self._path}")
        return {"FINISHED"}


classes = (FlameRenderSettings, FLAME_OT_setup_studio, FLAME_OT_apply_albedo, FLAME_OT_render)


def register() -> None:
    register_classes(classes)
    register_scene_settings("flame_render", FlameRenderSettings)


def unregister() -> None:
    unregister_scene_settings("flame_render")
    unregister_classes(classes)
