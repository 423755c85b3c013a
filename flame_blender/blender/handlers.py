"""Handlers that keep every head's pose key in step with its coefficients and pose.

- ``depsgraph_update_post``: shape-key values edited (Shape Keys panel, Python, drivers).
- ``frame_change_pre``: writes the pose for the values the F-curves will give, so playback
  needs one evaluation per frame (a frame_change_post write costs a second one). It goes into
  the head's pose correction (:mod:`.pose_correction`), not the pose key: a shape-key write
  makes Blender copy every key block for evaluation.
- ``frame_change_post``: animation, in the viewport and in ``render(animation=True)``; values are
  read from the handler's depsgraph (the original datablock is stale during animation renders).
- ``undo_post`` / ``redo_post``: data came back from the undo stack, caches are stale.
- ``load_post``: models reload from the stored paths; a missing model leaves the saved shape.
  Heads from files saved before the pose correction existed get it here.
- ``animation_playback_post`` / ``save_pre``: the played pose moves from the pose correction
  back into the pose key, so a stopped or saved head's shape keys alone hold its pose.

Writing the pose key inside these handlers tags the shape keys; Blender then evaluates once more,
without running the handlers again, so the evaluated mesh is exact when the update returns.
All handlers are persistent (they survive file loads) and never raise.
"""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import head, playback, pose_correction, runtime

_busy = False


@persistent
def on_depsgraph_update_post(scene, depsgraph) -> None:
    global _busy
    if _busy:
        return
    _busy = True
    try:
        for update in depsgraph.updates:
            if not update.is_updated_geometry:
                continue
            obj = update.id
            if not isinstance(obj, bpy.types.Object):
                continue
            original = obj.original
            if head.is_head(original):
                if pose_correction.shared(original):  # a copied head: give it its own correction
                    _ensure_correction(original)
                head.safe_update(original, depsgraph=depsgraph, force=False)
    except ReferenceError:
        pass
    finally:
        _busy = False


@persistent
def on_frame_change_post(scene, depsgraph) -> None:
    global _busy
    if _busy:
        return
    _busy = True
    try:
        if depsgraph is None:
            depsgraph = bpy.context.evaluated_depsgraph_get()
        head.update_all_heads(force=False, depsgraph=depsgraph, objects=scene.objects)
    except ReferenceError:
        pass
    finally:
        _busy = False


@persistent
def on_frame_change_pre(scene, depsgraph=None) -> None:
    """Write the pose key for the coming frame's F-curve values before Blender evaluates it,
    so playback needs one evaluation per frame; ``on_frame_change_post`` checks the result."""
    global _busy
    if _busy:
        return
    _busy = True
    try:
        frame = scene.frame_current + scene.frame_subframe
        for obj in head.heads(scene.objects):
            try:
                playback.predict_frame(obj, frame)
            except ReferenceError:
                pass
            except Exception as error:  # post corrects; never raise from a handler
                runtime.report_once(f"{obj.name}: cannot predict the frame ({error})")
    except ReferenceError:
        pass
    finally:
        _busy = False


@persistent
def on_undo_redo_post(scene, *args) -> None:
    head.forget_caches()
    head.update_all_heads(force=True)


def _ensure_correction(obj) -> None:
    try:
        pose_correction.ensure(obj)
    except ReferenceError:
        pass
    except Exception as error:  # without it the head plays through the pose key: still exact
        runtime.report_once(f"{obj.name}: no pose correction ({error}); playback is slower")


def migrate_heads() -> None:
    """Give heads from files saved before the pose correction existed (or by a copy) theirs."""
    for obj in head.heads():
        _ensure_correction(obj)


@persistent
def on_load_post(*args) -> None:
    head.forget_caches()
    runtime.forget_errors()
    migrate_heads()
    head.update_all_heads(force=True)


@persistent
def on_settle(*args) -> None:
    """Playback stopped, or the file is about to be saved: the played pose goes back into the
    pose key (``head.settle_pose``)."""
    try:
        for obj in head.heads():
            head.settle_pose(obj)
    except ReferenceError:
        pass


HANDLERS = (
    ("depsgraph_update_post", on_depsgraph_update_post),
    ("animation_playback_post", on_settle),
    ("save_pre", on_settle),
    ("frame_change_pre", on_frame_change_pre),
    ("frame_change_post", on_frame_change_post),
    ("undo_post", on_undo_redo_post),
    ("redo_post", on_undo_redo_post),
    ("load_post", on_load_post),
)


def _matches(existing, handler) -> bool:
    # A reloaded module makes new function objects: match by qualified name too.
    return existing is handler or (
        getattr(existing, "__module__", None) == handler.__module__
        and getattr(existing, "__qualname__", None) == handler.__qualname__
    )


def register_handlers() -> None:
    for event, handler in HANDLERS:
        handlers = getattr(bpy.app.handlers, event)
        if not any(_matches(existing, handler) for existing in handlers):
            handlers.append(handler)


def unregister_handlers() -> None:
    for event, handler in HANDLERS:
        handlers = getattr(bpy.app.handlers, event)
        for existing in [h for h in handlers if _matches(h, handler)]:
            handlers.remove(existing)


def _update_heads_after_enable() -> None:
    """Heads already in the open file when the extension is enabled (no load_post then)."""
    try:
        migrate_heads()
        head.update_all_heads(force=False)
    except Exception as error:  # a timer must not raise
        runtime.report_once(f"cannot update heads after enabling: {error}")


def _data_available() -> bool:
    """False while Blender registers add-ons at start-up (``bpy.data`` is restricted then)."""
    return isinstance(getattr(bpy.data, "objects", None), bpy.types.bpy_prop_collection)


def register() -> None:
    register_handlers()
    if bpy.app.background:
        # No event loop runs a timer in a background process or a bpy-module script: a timer
        # registered here never fires, and the bpy 4.2 module then crashes (4.5: hangs) at
        # exit. Update at once; at start-up (data restricted) load_post covers the file.
        if _data_available():
            _update_heads_after_enable()
        return
    # bpy.data is not available while add-ons register at start-up: run once the UI is idle.
    if not bpy.app.timers.is_registered(_update_heads_after_enable):
        bpy.app.timers.register(_update_heads_after_enable, first_interval=0.0)


def unregister() -> None:
    if bpy.app.timers.is_registered(_update_heads_after_enable):
        bpy.app.timers.unregister(_update_heads_after_enable)
    unregister_handlers()
    head.forget_caches()
    runtime.clear()
