"""Add-on preferences: the FLAME folder, the forward-pass backend and default component counts."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .registration import addon_package, register_classes, unregister_classes
from .render.device import DEVICE_ITEMS

BACKEND_ITEMS = [
    ("AUTO", "Auto", "PyTorch on the CPU when PyTorch is installed, else NumPy (for one head the CPU beats a GPU)"),
    ("TORCH_CPU", "Torch CPU", "PyTorch on the CPU"),
    ("TORCH_CUDA", "Torch CUDA", "PyTorch on an NVIDIA GPU"),
    ("NUMPY", "NumPy", "NumPy only: works in a stock Blender without PyTorch"),
]
#: Preference enum value -> core.create_backend kind.
BACKEND_KINDS = {"AUTO": "auto", "TORCH_CPU": "torch_cpu", "TORCH_CUDA": "torch_cuda", "NUMPY": "numpy"}


def _on_backend_change(self, context) -> None:
    from . import runtime

    runtime.backend_settings_changed()


class FlamePreferences(bpy.types.AddonPreferences):
    bl_idname = addon_package()

    flame_dir: StringProperty(
        name="FLAME Folder",
        description="Folder with the FLAME model files (generic_model.pkl or flame2023.pkl, "
        "FLAME_masks.pkl, head_template_mesh.obj, ...). Empty: the built-in synthetic model",
        subtype="DIR_PATH",
    )
    backend: EnumProperty(
        name="Backend",
        description="What computes the FLAME pose (linear blend skinning with pose correctives)",
        items=BACKEND_ITEMS,
        default="AUTO",
        update=_on_backend_change,
    )
    default_n_shape: IntProperty(
        name="Identity Components",
        description="Identity (shape) components a new head gets; capped at what the model has",
        default=300, min=0, max=300,
    )
    default_n_expression: IntProperty(
        name="Expression Components",
        description="Expression components a new head gets; capped at what the model has",
        default=100, min=0, max=100,
    )
    cycles_device: EnumProperty(
        name="Cycles Device", description="Where flame.render renders; Auto: the best GPU, else the CPU",
        items=DEVICE_ITEMS, default="AUTO",
    )

    def draw(self, context) -> None:
        from . import runtime

        layout = self.layout
        layout.prop(self, "flame_dir")
        row = layout.row()
        row.prop(self, "backend")
        row.label(text=f"In use: {runtime.backend_in_use_label()}")
        row = layout.row()
        row.prop(self, "default_n_shape")
        row.prop(self, "default_n_expression")
        # Other modules add rows here (e.g. the render device); keep them last.
        for draw_extra in EXTRA_DRAW:
            draw_extra(self, context, layout)


#: Callables (preferences, context, layout) that other modules append to draw more rows.
EXTRA_DRAW: list = []


def get_preferences():
    """The add-on preferences, or None when the package was registered without addon_utils."""
    addon = bpy.context.preferences.addons.get(addon_package())
    return addon.preferences if addon is not None else None


def backend_kind() -> str:
    prefs = get_preferences()
    return BACKEND_KINDS[prefs.backend] if prefs is not None else "auto"


classes = (FlamePreferences,)


def register() -> None:
    register_classes(classes)


def unregister() -> None:
    unregister_classes(classes)
