"""Rendering: the studio (camera, lights, world), Cycles device choice, the albedo material,
ground-truth passes, the batch renderer behind ``scripts/render_batch.py``, and the Render
sub-panel with ``flame.setup_studio`` and ``flame.render``.

Importing this package is cheap (the preferences import :mod:`.device` for the device menu);
the operators and the panel are imported when registered.
"""

from __future__ import annotations


def _draw_preferences(preferences, context, layout) -> None:
    if hasattr(preferences, "cycles_device"):
        layout.prop(preferences, "cycles_device")


def register() -> None:
    from .. import preferences
    from . import operators, panel

    operators.register()
    panel.register()
    if _draw_preferences not in preferences.EXTRA_DRAW:
        preferences.EXTRA_DRAW.append(_draw_preferences)


def unregister() -> None:
    from .. import preferences
    from . import operators, panel

    if _draw_preferences in preferences.EXTRA_DRAW:
        preferences.EXTRA_DRAW.remove(_draw_preferences)
    panel.unregister()
    operators.unregister()
