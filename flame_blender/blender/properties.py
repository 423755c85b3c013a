"""``obj.flame``: a head's pose and model, and ``scene.flame_settings`` for the panel.

The pose lives here and nowhere else; identity and expression coefficients are the values of the
shape keys ``shape_000``... and ``expr_000``... (see :mod:`.head`).
"""

from __future__ import annotations

import math

import bpy
from bpy.props import (
    BoolProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .registration import register_classes, unregister_classes


def _on_pose_change(self, context) -> None:
    from . import head

    obj = self.id_data
    if head.updates_suspended() or not self.is_head:
        return
    head.safe_update(obj, force=True)  # never raises: a missing model is shown in the panel


def _pose(name: str, size: int, description: str):
    return FloatVectorProperty(
        name=name, description=description, size=size, subtype="NONE", unit="ROTATION",
        soft_min=-math.pi, soft_max=math.pi, step=100, precision=3, update=_on_pose_change,
    )


class FlameObjectProperties(bpy.types.PropertyGroup):
    is_head: BoolProperty(name="FLAME Head", description="This object is a FLAME head", default=False)
    model_path: StringProperty(
        name="Model", description="The FLAME model file this head was made from", subtype="FILE_PATH"
    )
    n_shape: IntProperty(name="Identity Components", min=0, default=0)
    n_expression: IntProperty(name="Expression Components", min=0, default=0)
    teeth: BoolProperty(name="Teeth", description="The head has VHAP's 120 tooth vertices", default=False)

    global_pose: _pose("Global Pose", 3, "Root rotation, axis-angle (radians)")
    neck_pose: _pose("Neck Pose", 3, "Neck rotation, axis-angle (radians)")
    jaw_pose: _pose("Jaw Pose", 3, "Jaw rotation, axis-angle (radians)")
    eye_pose: _pose("Eye Pose", 6, "Left eye then right eye, axis-angle (radians)")
    transl: FloatVectorProperty(
        name="Translation", description="Translation in FLAME coordinates (metres, y up)",
        size=3, subtype="TRANSLATION", unit="LENGTH", step=1, precision=4, update=_on_pose_change,
    )

    # Panel state only.
    active_coefficient_index: IntProperty(name="Active Coefficient", default=0)


class RandomizeSettings:
    """What Randomize draws: declared once, shared by the panel's settings and the operator."""

    seed: IntProperty(name="Seed", default=0, min=0)
    shape_sigma: FloatProperty(name="Identity Sigma", default=1.0, min=0.0, soft_max=3.0)
    expression_sigma: FloatProperty(name="Expression Sigma", default=1.0, min=0.0, soft_max=3.0)
    pose_scale: FloatProperty(name="Pose Scale", default=1.0, min=0.0, soft_max=3.0)
    random_shape: BoolProperty(name="Identity", default=True)
    random_expression: BoolProperty(name="Expression", default=True)
    random_pose: BoolProperty(name="Pose", default=True)


#: The names above, in panel order.
RANDOMIZE_SETTINGS = tuple(RandomizeSettings.__annotations__)


class FlameSceneSettings(RandomizeSettings, bpy.types.PropertyGroup):
    """Panel settings (not per head): how many sliders to show, randomize options."""

    visible_sliders: IntProperty(
        name="Sliders", description="How many identity and expression sliders the panel shows",
        default=10, min=0, max=100,
    )


classes = (FlameObjectProperties, FlameSceneSettings)


def register() -> None:
    register_classes(classes)
    if not hasattr(bpy.types.Object, "flame"):
        bpy.types.Object.flame = PointerProperty(type=FlameObjectProperties)
    if not hasattr(bpy.types.Scene, "flame_settings"):
        bpy.types.Scene.flame_settings = PointerProperty(type=FlameSceneSettings)


def unregister() -> None:
    for owner, name in ((bpy.types.Object, "flame"), (bpy.types.Scene, "flame_settings")):
        if hasattr(owner, name):
            delattr(owner, name)
    unregister_classes(classes)
