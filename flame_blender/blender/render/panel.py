"""The Render sub-panel of the FLAME sidebar tab: studio set-up and a Cycles still."""

from __future__ import annotations

import bpy

from ..panel import FlameHeadSubPanel
from ..registration import register_classes, unregister_classes
from .operators import _target_head, preferred_device


class FLAME_PT_render(FlameHeadSubPanel, bpy.types.Panel):
    bl_label = "Render"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context) -> bool:
        return context.scene is not None and hasattr(context.scene, "flame_render")

    def draw(self, context) -> None:
        layout = self.layout
        settings = context.scene.flame_render
        col = layout.column(align=True)
        col.label(text="Studio")
        for name in ("focal_length", "distance", "azimuth", "elevation", "light_power"):
            col.prop(settings, name)
        col.prop(settings, "transparent")
        row = layout.row()
        row.enabled = _target_head(context) is not None
        row.operator("flame.setup_studio", icon="LIGHT_AREA")
        row.operator("flame.apply_albedo", icon="TEXTURE")
        col = layout.column(align=True)
        col.label(text="Cycles Still")
        col.prop(settings, "samples")
        col.prop(settings, "filepath", text="")
        col.label(text=f"Device preference: {preferred_device().title()}")
        if settings.last_device:
            col.label(text=f"Last render on: {settings.last_device}", icon="INFO")
        layout.operator("flame.render", icon="RENDER_STILL")


classes = (FLAME_PT_render,)


def register() -> None:
    register_classes(classes)


def unregister() -> None:
    unregister_classes(classes)
