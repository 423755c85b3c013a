"""The Blender layer: preferences, the ``obj.flame`` properties, operators, the sidebar panel and
the handlers that keep every FLAME head exact.

Scripts (and the batch renderer) use the plain functions re-exported here; the operators are thin
wrappers around them::

    from flame_blender.blender import import_head, set_parameters, get_parameters, update_head
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .head import get_parameters, is_head, set_parameters, update_head
from .head_import import import_head

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
    "sequence_operators",
    "fitting",
    "rig_operators",
)


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f".{name}", __name__) for name in SUBMODULES]


def register() -> None:
    for module in _modules():
        module.register()
    _unregister_at_exit(True)
    import bpy

    from . import runtime

    if not bpy.app.background:  # (a script or render farm has no UI to keep responsive)
        runtime.start_torch_preload()  # a background import: the first slider move does not wait


def unregister() -> None:
    from . import runtime

    runtime.wait_for_torch_preload(60.0)  # never leave a thread half-way through an import
    _unregister_at_exit(False)
    for module in reversed(_modules()):
        module.unregister()


def _unregister_at_exit(wanted: bool) -> None:
    """Under the bpy *module* (a Python script, no Blender binary), unregister at interpreter
    exit: the bpy 4.2 module crashes and the 4.5 module hangs at exit while an operator class
    is still registered (measured with one trivial operator). Blender itself exits normally."""
    import atexit

    import bpy

    atexit.unregister(_exit_unregister)
    if wanted and not bpy.app.binary_path:
        atexit.register(_exit_unregister)


def _exit_unregister() -> None:
    import contextlib

    with contextlib.suppress(Exception):  # never turn a finished script's exit into a failure
        unregister()
