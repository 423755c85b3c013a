"""Idempotent class registration: Blender half-registers on a second register() otherwise."""

from __future__ import annotations

from collections.abc import Iterable

import bpy


def register_classes(classes: Iterable[type]) -> None:
    for cls in classes:
        if not cls.is_registered:
            bpy.utils.register_class(cls)


def unregister_classes(classes: Iterable[type]) -> None:
    for cls in reversed(tuple(classes)):
        if cls.is_registered:
            bpy.utils.unregister_class(cls)


def register_scene_settings(name: str, settings_type: type) -> None:
    """``bpy.types.Scene.<name>``: a pointer to ``settings_type`` (registered first), once."""
    if not hasattr(bpy.types.Scene, name):
        setattr(bpy.types.Scene, name, bpy.props.PointerProperty(type=settings_type))


def unregister_scene_settings(name: str) -> None:
    if hasattr(bpy.types.Scene, name):
        delattr(bpy.types.Scene, name)


def addon_package() -> str:
    """The extension's top package: ``flame_blender`` or ``bl_ext.<repo>.flame_blender``."""
    return __package__.rpartition(".")[0]
