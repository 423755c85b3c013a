"""3D View > Sidebar > FLAME: model, pose, coefficients, Reset/Randomize, Load/Save."""

from __future__ import annotations

import bpy

from . import diagnostics, head, landmark_empties, runtime
from .properties import RANDOMIZE_SETTINGS
from .registration import register_classes, unregister_classes


class FLAME_UL_coefficients(bpy.types.UIList):
    """Every identity and expression shape key, filterable by name (e.g. ``expr_01``)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        layout.prop(item, "value", text=item.name, slider=True, emboss=True)

    def filter_items(self, context, data, propname):
        blocks = getattr(data, propname)
        helpers = bpy.types.UI_UL_list
        flags = [self.bitflag_filter_item] * len(blocks)
        if self.filter_name:
            flags = helpers.filter_items_by_name(self.filter_name, self.bitflag_filter_item, blocks, "name")
        for i, block in enumerate(blocks):
            if not block.name.startswith((head.SHAPE_PREFIX, head.EXPRESSION_PREFIX)):
                flags[i] = 0
        return flags, []


class FlameSidebar:
    """Where every FLAME panel lives: 3D View > Sidebar > FLAME."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FLAME"


class FlameHeadSubPanel(FlameSidebar):
    """A sub-panel of the FLAME head panel, shown while a head is active."""

    bl_parent_id = "FLAME_PT_head"

    @classmethod
    def poll(cls, context) -> bool:
        return head.active_head(context) is not None


class FLAME_PT_head(FlameSidebar, bpy.types.Panel):
    bl_label = "FLAME Head"

    def draw(self, context) -> None:
        layout = self.layout
        layout.operator("flame.import_head", icon="IMPORT")
        obj = head.active_head(context)
        if obj is None:
            layout.label(text="Select a FLAME head, or import one")
            return
        flame = obj.flame
        box = layout.box()
        box.label(text=f"Model: {bpy.path.basename(flame.model_path) or '?'}", icon="MESH_DATA")
        box.label(text=f"{flame.n_shape} identity, {flame.n_expression} expression components")
        box.label(text=f"Backend: {runtime.head_backend_label(flame.model_path, flame.n_shape, flame.n_expression, flame.teeth)}")
        for problem in diagnostics.head_problems(obj):
            col = box.column()
            col.alert = True
            for start in range(0, min(len(problem.message), 240), 60):
                col.label(text=problem.message[start:start + 60], icon="ERROR" if start == 0 else "BLANK1")
            if problem.operator:
                col.operator(problem.operator, icon="UNLINKED")
        error = runtime.model_error(flame.model_path)
        if error:
            col = box.column()
            col.alert = True
            col.label(text="Model not loaded: the head keeps its saved shape", icon="ERROR")
            for start in range(0, min(len(error), 240), 60):
                col.label(text=error[start:start + 60])
            box.operator("flame.reload_model", icon="FILE_REFRESH")
        row = layout.row(align=True)
        row.operator("flame.reset_parameters", icon="LOOP_BACK")
        row = layout.row(align=True)
        row.operator("flame.load_parameters", icon="FILEBROWSER")
        row.operator("flame.save_parameters", icon="FILE_TICK")
        box = layout.box()
        count = len(landmark_empties.landmark_empties(obj))
        box.label(text=f"Landmark empties: {count}", icon="EMPTY_DATA")
        row = box.row(align=True)
        for name, (label, _) in landmark_empties.LANDMARK_SETS.items():
            row.operator("flame.add_landmarks", text=label).landmark_set = name
        if count:
            box.operator("flame.remove_landmarks", icon="X")


class FLAME_PT_pose(FlameHeadSubPanel, bpy.types.Panel):
    bl_label = "Pose"

    def draw(self, context) -> None:
        flame = context.active_object.flame
        col = self.layout.column()
        for name in ("global_pose", "neck_pose", "jaw_pose"):
            col.prop(flame, name)
        col.label(text="Eye Pose (left, right)")
        sub = col.grid_flow(columns=3, align=True)
        for i in range(6):
            sub.prop(flame, "eye_pose", index=i, text=("Left ", "Right ")[i // 3] + "XYZ"[i % 3])
        col.prop(flame, "transl")


class FLAME_PT_coefficients(FlameHeadSubPanel, bpy.types.Panel):
    bl_label = "Identity and Expression"

    def draw(self, context) -> None:
        layout = self.layout
        obj = context.active_object
        settings = context.scene.flame_settings
        blocks = obj.data.shape_keys.key_blocks
        layout.prop(settings, "visible_sliders")
        count = settings.visible_sliders
        for title, names in (
            ("Identity", [head.shape_key_name(i) for i in range(min(count, obj.flame.n_shape))]),
            ("Expression", [head.expression_key_name(i) for i in range(min(count, obj.flame.n_expression))]),
        ):
            if not names:
                continue
            col = layout.column(align=True)
            col.label(text=title)
            for name in names:
                block = blocks.get(name)
                if block is not None:
                    col.prop(block, "value", text=name, slider=True)
        layout.label(text="All components (filter by name):")
        layout.template_list(
            "FLAME_UL_coefficients", "", obj.data.shape_keys, "key_blocks",
            obj.flame, "active_coefficient_index", rows=6,
        )


class FLAME_PT_randomize(FlameHeadSubPanel, bpy.types.Panel):
    bl_label = "Randomize"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context) -> None:
        layout = self.layout
        settings = context.scene.flame_settings
        col = layout.column()
        for name in ("seed", "shape_sigma", "expression_sigma", "pose_scale"):
            col.prop(settings, name)
        row = col.row(align=True)
        for name in ("random_shape", "random_expression", "random_pose"):
            row.prop(settings, name, toggle=True)
        op = layout.operator("flame.randomize_parameters", icon="MOD_NOISE")
        for name in RANDOMIZE_SETTINGS:
            setattr(op, name, getattr(settings, name))


classes = (FLAME_UL_coefficients, FLAME_PT_head, FLAME_PT_pose, FLAME_PT_coefficients, FLAME_PT_randomize)


def register() -> None:
    register_classes(classes)


def unregister() -> None:
    unregister_classes(classes)
