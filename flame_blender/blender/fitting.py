"""``flame.fit``: fit the active head to another selected mesh or to its moved landmark empties.

The operator gathers the target from Blender (in the head's object space, the target's own
object transform applied), runs :mod:`..core.fitting` on a worker thread while a modal timer
shows progress in the status bar and the panel, and writes the result back with
:func:`.head.set_parameters` in one step (one undo step). Esc stops the fit; the head keeps the
parameters it had. Called from a script (``bpy.ops.flame.fit()``), it runs to the end at once.
"""

from __future__ import annotations

import threading
from typing import Any

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from ..core.errors import FlameParameterError
from ..core.fitting.problem import DEFAULT_WEIGHTS
from . import head, landmark_empties
from .operators import USER_ERRORS, HeadOperator
from .registration import (
    register_classes,
    register_scene_settings,
    unregister_classes,
    unregister_scene_settings,
)

TARGETS = [
    ("SELECTED", "Selected Mesh", "The other selected mesh: FLAME topology (5023 vertices) or any scan"),
    ("LANDMARKS", "Landmarks", "The head's landmark empties, where you moved them"),
]
UNITS = [
    ("AUTO", "Auto", "From the target's size"),
    ("m", "Metres", ""),
    ("cm", "Centimetres", ""),
    ("mm", "Millimetres", ""),
]
#: landmark empty set -> core embedding name (iBUG 68 uses what the empties use)
_EMPTY_EMBEDDINGS = {"mediapipe": "mediapipe"}
_models: dict[tuple, Any] = {}


class FitSettings:
    """What the fit uses: declared once, shared by the scene's panel settings and the operator."""

    target: EnumProperty(name="Target", items=TARGETS, default="SELECTED")
    fit_shape: BoolProperty(name="Identity", default=True)
    fit_expression: BoolProperty(name="Expression", default=True)
    fit_pose: BoolProperty(name="Pose", default=True, description="Neck, jaw and eyes (the head's rotation always)")
    default_priors: BoolProperty(
        name="Default Priors", default=True,
        description="The fitting's own priors for the target's kind (a registered mesh needs almost none, "
                    "landmarks the strongest); off: the two weights below")
    shape_prior: FloatProperty(name="Identity Prior", default=DEFAULT_WEIGHTS["shape_prior"], min=0.0, soft_max=1.0,
                               precision=6, description="Weight pulling identity toward the average head")
    expression_prior: FloatProperty(name="Expression Prior", default=DEFAULT_WEIGHTS["expression_prior"], min=0.0,
                                    soft_max=1.0, precision=6, description="Weight pulling expression toward neutral")
    fit_scale: BoolProperty(name="Fit Scale", default=False,
                            description="Also fit a free scale (else the units' scale is exact)")
    units: EnumProperty(name="Units", items=UNITS, default="AUTO")


FIT_SETTINGS = tuple(FitSettings.__annotations__)


class FlameFitState(FitSettings, bpy.types.PropertyGroup):
    """The panel's fit settings and the last fit's outcome (``scene.flame_fit``)."""

    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    running: BoolProperty(default=False)
    last_residual_mm: FloatProperty(name="Residual", default=-1.0, description="Last fit's residual, mm")
    last_message: StringProperty(default="")


def _fit_model(obj) -> Any:
    """A cached :class:`~..core.fitting.FitModel` for the head's model and component counts."""
    from ..core.fitting import FitModel
    from .preferences import backend_kind
    from .runtime import model_key

    kind = backend_kind()
    backend = {"numpy": "numpy", "torch_cpu": "torch", "torch_cuda": "torch"}.get(kind, "auto")
    device = "cuda" if kind == "torch_cuda" else "cpu"
    key = (model_key(obj.flame.model_path), obj.flame.n_shape, obj.flame.n_expression, backend, device)
    if key not in _models:
        try:
            _models[key] = FitModel(key[0], n_shape=key[1], n_expression=key[2], backend=backend, device=device)
        except FlameParameterError:  # the preferred torch kind is not available here
            _models[key] = FitModel(key[0], n_shape=key[1], n_expression=key[2], backend="numpy")
    return _models[key]


def other_selected_mesh(context, obj) -> Any:
    found = [o for o in context.selected_objects if o is not obj and o.type == "MESH"]
    return found[0] if found else None


def gather_target(context, obj, target: str) -> dict[str, Any]:
    """What to fit, read from Blender on the main thread: ``kind`` ("registered", "scan",
    "landmarks") and arrays in the head's object space (its own transform undone)."""
    to_head = np.array(obj.matrix_world.inverted(), dtype=np.float64)
    if target == "LANDMARKS":
        for landmark_set in ("ibug68", "mediapipe"):
            empties = landmark_empties.landmark_empties(obj, landmark_set)
            if empties:
                break
        else:
            raise FlameParameterError(f"{obj.name} has no landmark empties: add some, move them, then fit")
        world = np.array([e.matrix_world.translation[:] for e in empties], dtype=np.float64)
        embedding = _EMPTY_EMBEDDINGS.get(landmark_set) or landmark_empties._evaluator(obj.flame.model_path, landmark_set).output
        return {"kind": "landmarks", "points": world @ to_head[:3, :3].T + to_head[:3, 3], "embedding": embedding}
    other = other_selected_mesh(context, obj)
    if other is None:
        raise FlameParameterError("select a target mesh as well as the head (the head active)")
    depsgraph = context.evaluated_depsgraph_get()
    evaluated = other.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        count = len(mesh.vertices)
        if count == 0:
            raise FlameParameterError(f"{other.name} has no vertices")
        co = np.empty(count * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        mesh.calc_loop_triangles()
        triangles = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", triangles)
    finally:
        evaluated.to_mesh_clear()
    transform = to_head @ np.array(other.matrix_world, dtype=np.float64)
    points = co.reshape(-1, 3).astype(np.float64) @ transform[:3, :3].T + transform[:3, 3]
    if count == obj.data.vertices.__len__():
        return {"kind": "registered", "points": points}
    faces = triangles.reshape(-1, 3).astype(np.int64) if len(triangles) else None
    return {"kind": "scan", "points": points, "faces": faces}


def run_fit(model: Any, target: dict[str, Any], settings: Any, callback: Any = None) -> Any:
    """The core fit for a gathered target; ``settings`` has the :class:`FitSettings` names."""
    from ..core import fitting

    groups = [g for g, on in (("shape", settings.fit_shape), ("expression", settings.fit_expression),
                              ("pose", settings.fit_pose)) if on]
    options = dict(fit=groups, fit_scale=settings.fit_scale, callback=callback,
                   units="auto" if settings.units == "AUTO" else settings.units)
    # default priors: None lets each fit take its own (core is their one source)
    priors = None if settings.default_priors else {
        "shape_prior": settings.shape_prior, "expression_prior": settings.expression_prior}
    if target["kind"] == "registered":
        return fitting.fit_registered(model, target["points"], weights=priors, **options)
    if target["kind"] == "landmarks":
        return fitting.fit_landmarks(model, target["points"], target["embedding"], weights=priors, **options)
    return fitting.fit_scan(model, target["points"], faces=target["faces"], weights=priors, **options)


def apply_result(obj, result: Any) -> str:
    """Write a fit into the head (sliders, pose; a scale other than 1 goes to the object's
    scale, since the head's object space is FLAME's metres). Returns a summary."""
    params = result.parameters
    limit = head.COEFFICIENT_LIMIT
    params.shape = np.clip(params.shape, -limit, limit)
    params.expression = np.clip(params.expression, -limit, limit)
    head.set_parameters(obj, params)
    if abs(result.scale - 1.0) > 1e-9:
        obj.scale = [s * result.scale for s in obj.scale]
    term = next(iter(result.residuals))
    return f"{term} residual {result.residual_mm(term):.3f} mm ({result.units}, {result.seconds:.1f} s)"


class FLAME_OT_fit(HeadOperator, FitSettings, bpy.types.Operator):
    """Fit the active head to the other selected mesh (FLAME topology or a scan) or to its moved landmark empties"""

    bl_idname = "flame.fit"
    bl_label = "Fit FLAME"
    bl_options = {"REGISTER", "UNDO"}

    def _start(self, context) -> bool:
        obj = head.active_head(context)
        try:
            target = gather_target(context, obj, self.target)
            model = _fit_model(obj)
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"FLAME fit: {error}")
            return False
        self._obj_name = obj.name
        self._job = {"target": target, "model": model, "cancel": False, "iteration": 0, "stage": None, "result": None, "error": None}
        return True

    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        self._work()
        return self._finish(context)

    def invoke(self, context, event):
        if not self._start(context):
            return {"CANCELLED"}
        state = context.scene.flame_fit
        state.running, state.progress = True, 0.0
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _work(self) -> None:
        job = self._job

        def callback(progress) -> bool:
            job["iteration"] += 1
            job["stage"] = progress.stage
            return not job["cancel"]

        try:
            job["result"] = run_fit(job["model"], job["target"], self, callback)
        except USER_ERRORS as error:
            job["error"] = str(error)

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC":
            job["cancel"] = True
        if self._thread.is_alive():
            state = context.scene.flame_fit
            # fits take from a few solver steps (a registered mesh) to ~150 (a scan without
            # landmarks), unknown in advance: a bar that keeps moving and never fills early
            steps = job["iteration"]
            state.progress = min(steps / (steps + 40.0), 0.99)
            if context.workspace is not None:
                stage = job.get("stage") or "starting"
                context.workspace.status_text_set(f"Fitting FLAME: {stage}, step {steps} (Esc to stop)")
            for area in context.screen.areas if context.screen else ():
                area.tag_redraw()
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        return self._finish(context)

    def _finish(self, context):
        job = self._job
        state = context.scene.flame_fit
        state.running, state.progress = False, 1.0
        if job["error"] is not None:
            state.last_message = job["error"][:200]
            self.report({"ERROR"}, f"FLAME fit: {job['error']}")
            return {"CANCELLED"}
        if job["cancel"] or job["result"] is None or job["result"].stopped:
            state.last_message = "stopped; parameters unchanged"
            self.report({"WARNING"}, "FLAME fit stopped: the head keeps its parameters")
            return {"CANCELLED"}
        obj = bpy.data.objects.get(self._obj_name)
        if obj is None:
            self.report({"ERROR"}, "FLAME fit: the head was deleted during the fit")
            return {"CANCELLED"}
        result = job["result"]
        try:
            summary = apply_result(obj, result)
        except USER_ERRORS as error:
            self.report({"ERROR"}, f"FLAME fit not applied: {error}")
            return {"CANCELLED"}
        term = next(iter(result.residuals))
        state.last_residual_mm = result.residual_mm(term)
        state.last_message = summary
        self.report({"INFO"}, f"FLAME fit: {summary}")
        return {"FINISHED"}


class FLAME_PT_fit(bpy.types.Panel):
    bl_label = "Fit"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FLAME"
    bl_parent_id = "FLAME_PT_head"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context) -> bool:
        return head.active_head(context) is not None

    def draw(self, context) -> None:
        layout = self.layout
        state = context.scene.flame_fit
        box = layout.box()
        box.prop(state, "target")
        row = box.row(align=True)
        for name in ("fit_shape", "fit_expression", "fit_pose"):
            row.prop(state, name, toggle=True)
        col = box.column(align=True)
        col.prop(state, "default_priors")
        sub = col.column(align=True)
        sub.enabled = not state.default_priors
        sub.prop(state, "shape_prior")
        sub.prop(state, "expression_prior")
        box.prop(state, "units")
        box.prop(state, "fit_scale")
        if state.running:
            box.prop(state, "progress", text="Fitting (Esc stops)", slider=True)
        else:
            op = box.operator("flame.fit", icon="MOD_SHRINKWRAP")
            for name in FIT_SETTINGS:
                setattr(op, name, getattr(state, name))
        if state.last_residual_mm >= 0:
            box.label(text=f"Last residual: {state.last_residual_mm:.3f} mm")
        if state.last_message:
            box.label(text=state.last_message)


classes = (FlameFitState, FLAME_OT_fit, FLAME_PT_fit)


def register() -> None:
    register_classes(classes)
    register_scene_settings("flame_fit", FlameFitState)


def unregister() -> None:
    unregister_scene_settings("flame_fit")
    unregister_classes(classes)
    _models.clear()
