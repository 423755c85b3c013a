"""The Blender layer: preferences, the ``obj.flame`` properties, operators, the sidebar panel and
the handlers that keep every FLAME head exact.

Scripts (and the batch renderer) use the plain functions re-exported here; the operators are thin
wrappers around them::

    from flame_blender.blender import import_head, set_parameters, get_parameters, update_head
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .head import get_parameters, import_head, is_head, set_parameters, update_head

__all__ = ["get_parameters", "import_head", "is_head", "register", "set_parameters", "unregister", "update_head"]

# Registered in this order, unregistered in reverse. Each module has register() and unregister(),
# both safe to call twice. Add new submodules (e.g. "render") at the end of the tuple.
SUBMODULES: tuple[str, ...] = (
    "preferences",
    "properties",
    "handlers",
    "operators",
    "panel",
    "render",
    "landmark_operators",
    "rig_operators",
)


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f".{name}", __name__) for name in SUBMODULES]


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
