"""FLAME heads in Blender: import, parameters in and out, and the exact pose shape key.

A head is a mesh object whose data is in FLAME coordinates (y up); the object is rotated +90°
about X so the head stands up in Blender. Its shape keys are:

- ``Basis``: the FLAME template;
- ``shape_000``..., ``expr_000``...: one relative key per identity / expression component,
  ``Basis + shapedirs[..., i]``; the key's value IS the coefficient. Blender blends relative keys
  linearly, so their mix is FLAME's ``v_shaped`` exactly;
- ``flame_pose`` (value 1, last): ``Basis + (LBS(v_shaped, pose) + transl - v_shaped)``, computed
  by the core backend. With it, the evaluated mesh is FLAME's full forward pass, pose correctives
  included. It must be recomputed whenever a pose value or a coefficient changes:
  :func:`update_head` does that, called by the pose properties' update callbacks and by the
  handlers in :mod:`.handlers` (edits, animation, renders, undo, file load).

During playback the pose goes into the head's pose correction instead of ``flame_pose``
(:mod:`.pose_correction`: a small mesh a Geometry Nodes modifier adds to the evaluated vertices),
because writing a shape key makes Blender copy every key block for evaluation.

Tracked sequences may add (see :mod:`.sequence_import`):

- ``flame_offsets``: ``Basis + offsets``, per-vertex offsets added before joint regression
  (VHAP's ``static_offset``). Its delta times its value is part of ``v_shaped``, so the pose
  key's update passes it to the backend as ``offsets``;
- one key per extra blend shape (``l_eyelid``, ``r_eyelid``): ``Basis + direction``, value = the
  coefficient. Added after skinning (metrical-tracker), so the pose key ignores them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from .. import core
from ..core.errors import FlameParameterError
from . import landmark_empties, pose_correction, runtime
from .blas_threads import single_threaded_blas

BASIS_KEY = "Basis"
POSE_KEY = "flame_pose"
OFFSETS_KEY = "flame_offsets"
SHAPE_PREFIX = "shape_"
EXPRESSION_PREFIX = "expr_"
#: Shape-key slider range (Blender clamps values to it; its hard limit is ±10).
COEFFICIENT_LIMIT = 10.0
POSE_NAMES = ("global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")


def shape_key_name(index: int) -> str:
    return f"{SHAPE_PREFIX}{index:03d}"


def expression_key_name(index: int) -> str:
    return f"{EXPRESSION_PREFIX}{index:03d}"


_suspend_depth = 0


@contextmanager
def suspended_updates() -> Iterator[None]:
    """Within this block, pose property writes do not recompute heads (set many, update once)."""
    global _suspend_depth
    _suspend_depth += 1
    try:
        yield
    finally:
        _suspend_depth -= 1


def updates_suspended() -> bool:
    return _suspend_depth > 0


def is_head(obj: Any) -> bool:
    """True for a mesh object made by :func:`import_head` (and still having its shape keys)."""
    try:
        return (
            obj is not None
            and obj.type == "MESH"
            and obj.flame.is_head
            and obj.data.shape_keys is not None
        )
    except (ReferenceError, AttributeError):
        return False


def active_head(context) -> Any:
    """The context's active object when it is a FLAME head, else None."""
    obj = context.active_object
    return obj if is_head(obj) else None


def _set_key_points(block, data: np.ndarray) -> None:
    flat = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
    points = getattr(block, "points", None)  # Blender 4.1+: much faster than .data
    (points if points is not None else block.data).foreach_set("co", flat)


# ---------------------------------------------------------------------------------------------
# the pose key


@dataclass
class _HeadCache:
    """What was last written to one head's pose key, to skip work when nothing changed."""

    key_uid: int
    block_count: int
    coefficient_index: np.ndarray  # int64 (n_shape + n_expression,): key_blocks positions
    pose_index: int
    coefficients: np.ndarray | None = None  # float32, what v_shaped was computed from
    v_shaped: np.ndarray | None = None  # float32 (5023, 3)
    pose: np.ndarray | None = None  # float64 (18,), what the pose key was computed from
    value_buffer: np.ndarray | None = None
    mute_buffer: np.ndarray | None = None  # bool (blocks,): Blender leaves muted keys out
    positions: dict[str, int] | None = None  # FLAME shape-key name -> index in coefficients
    offsets_index: int | None = None  # key_blocks position of OFFSETS_KEY, if the head has one
    offsets_delta: np.ndarray | None = None  # float64 (V, 3): OFFSETS_KEY minus the reference key
    offsets_scale: float = 0.0  # the offsets key's value (0 when muted) v_shaped was computed with
    key_delta: np.ndarray | None = None  # float32 (V, 3): flame_pose minus Basis, as Blender mixes it
    correction_zero: bool = False  # the pose correction is known to be zero (False: unknown)
    #: Blender's shape-key mix is ``v_shaped`` plus the pose key, nothing else (no eyelid or
    #: user keys, which FLAME adds after skinning): the correction may then skin it
    skinnable: bool = False
    plans: dict | None = None  # "object" / "key" -> how playback samples the curves (playback._Plan)


_caches: dict[int, _HeadCache] = {}


def forget_caches() -> None:
    """Make the next update of every head recompute (after undo, file load, backend change)."""
    _caches.clear()
    landmark_empties.forget()
    pose_correction.forget()


def _cache_for(obj, key) -> _HeadCache | None:
    cache = _caches.get(obj.session_uid)
    blocks = key.key_blocks
    if cache is not None and cache.key_uid == key.session_uid and cache.block_count == len(blocks):
        return cache
    n_shape, n_expression = obj.flame.n_shape, obj.flame.n_expression
    positions = {block.name: i for i, block in enumerate(blocks)}
    wanted = [shape_key_name(i) for i in range(n_shape)]
    wanted += [expression_key_name(i) for i in range(n_expression)]
    missing = [name for name in (*wanted, POSE_KEY) if name not in positions]
    if missing:
        message = (
            f"{obj.name}: shape keys {missing[:3]}{'...' if len(missing) > 3 else ''} are missing; "
            "the head cannot be posed"
        )
        runtime.report_once(message)
        runtime.record_update_error(obj.name, message)
        return None
    cache = _HeadCache(
        key_uid=key.session_uid,
        block_count=len(blocks),
        coefficient_index=np.array([positions[name] for name in wanted], dtype=np.int64),
        pose_index=positions[POSE_KEY],
        offsets_index=positions.get(OFFSETS_KEY),
        value_buffer=np.empty(len(blocks), dtype=np.float32),
        mute_buffer=np.empty(len(blocks), dtype=bool),
        positions={name: i for i, name in enumerate(wanted)},
        skinnable=set(positions) <= {key.reference_key.name, *wanted, POSE_KEY, OFFSETS_KEY},
    )
    _caches[obj.session_uid] = cache
    return cache


def _read_state(obj, key, cache: _HeadCache, depsgraph=None) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (float32) and the 18 pose values, evaluated ones when a depsgraph is given."""
    source_obj, source_key = obj, key
    if depsgraph is not None:
        source_obj = obj.evaluated_get(depsgraph)
        source_key = key.evaluated_get(depsgraph)
    source_key.key_blocks.foreach_get("value", cache.value_buffer)
    coefficients = cache.value_buffer[cache.coefficient_index]
    # A muted key adds nothing to Blender's mix: its coefficient is zero, whatever its value.
    source_key.key_blocks.foreach_get("mute", cache.mute_buffer)
    muted = cache.mute_buffer[cache.coefficient_index]
    if muted.any():
        coefficients = np.where(muted, np.float32(0.0), coefficients)
    flame = source_obj.flame
    pose = np.array(
        [*flame.global_pose, *flame.neck_pose, *flame.jaw_pose, *flame.eye_pose, *flame.transl],
        dtype=np.float64,
    )
    return coefficients, pose


_POSE_SLICES = (
    ("global_pose", 0, 3), ("neck_pose", 3, 6), ("jaw_pose", 6, 9), ("eye_pose", 9, 15), ("transl", 15, 18),
)


def update_head(obj: bpy.types.Object, depsgraph=None, force: bool = True) -> bool:
    """Recompute the head's pose shape key from its coefficients and pose.

    Args:
        obj: the head (original object).
        depsgraph: read the evaluated (e.g. animated) values from it; None: the original values.
        force: recompute even if nothing changed since the last update.

    Returns True if the pose key was written. Raises ``FlameFileError`` when the model cannot be
    loaded (the mesh then keeps its last shape).
    """
    obj = getattr(obj, "original", obj)
    key = obj.data.shape_keys
    if key is None or not obj.flame.is_head:
        return False
    cache = _cache_for(obj, key)
    if cache is None:
        return False
    coefficients, pose = _read_state(obj, key, cache, depsgraph)
    coefficients_changed = cache.coefficients is None or not np.array_equal(coefficients, cache.coefficients)
    if cache.offsets_index is not None:
        # Blender adds value * delta of the offsets key; v_shaped must hold the same offsets
        scale = 0.0 if cache.mute_buffer[cache.offsets_index] else float(cache.value_buffer[cache.offsets_index])
        if scale != cache.offsets_scale:
            cache.offsets_scale = scale
            coefficients_changed = True
    pose_key_ok = cache.value_buffer[cache.pose_index] == 1.0 and not cache.mute_buffer[cache.pose_index]
    # the pose is partly in the correction, but its modifier was turned off (or it went away)
    correction_lost = not cache.correction_zero and pose_correction.claim(obj) is None
    if not force and not coefficients_changed and pose_key_ok and not correction_lost and np.array_equal(pose, cache.pose):
        return False
    cache.plans = None  # the values differ from what playback predicted: read the curves anew
    _write_pose_key(obj, key, cache, coefficients, pose, coefficients_changed)
    return True


def settle_pose(obj: bpy.types.Object) -> bool:
    """Move a head's pose from its pose correction back into the pose key (when playback stops,
    before a save), so its shape keys alone hold the pose again: for exporters that skip
    modifiers and for older versions of the extension. Returns True if it wrote the pose key."""
    obj = getattr(obj, "original", obj)
    cache = _caches.get(obj.session_uid)
    if cache is None or cache.correction_zero:
        return False
    return safe_update(obj, force=True)


def _pose_delta(obj, key, cache: _HeadCache, coefficients: np.ndarray, pose: np.ndarray, coefficients_changed: bool) -> tuple[np.ndarray, np.ndarray]:
    """The posed vertices and ``LBS(v_shaped) - v_shaped`` (float32 ``(V, 3)``) for these values;
    recomputes ``v_shaped`` only when the coefficients changed."""
    path = obj.flame.model_path
    teeth = obj.flame.teeth
    backend = runtime.get_backend(path, obj.flame.n_shape, obj.flame.n_expression, teeth)
    with single_threaded_blas():  # one head: threads only wait for Blender's busy cores
        if coefficients_changed or cache.v_shaped is None:
            n_shape = obj.flame.n_shape
            offsets = _offsets(key, cache)
            cache.v_shaped = np.asarray(
                backend.shaped(coefficients[:n_shape], coefficients[n_shape:], offsets=offsets), dtype=np.float32
            )
            cache.coefficients = coefficients
        vertices, _ = backend.posed(cache.v_shaped, pose[0:3], pose[3:6], pose[6:9], pose[9:15], pose[15:18])
    return vertices, np.subtract(vertices, cache.v_shaped, dtype=np.float32)


def _write_pose_key(obj, key, cache: _HeadCache, coefficients: np.ndarray, pose: np.ndarray, coefficients_changed: bool) -> None:
    vertices, delta = _pose_delta(obj, key, cache, coefficients, pose, coefficients_changed)
    template = runtime.template(obj.flame.model_path, obj.flame.teeth)
    data = delta
    data += template
    block = key.key_blocks[cache.pose_index]
    _set_key_points(block, data)
    if block.value != 1.0 or block.mute:
        block.mute = False
        block.value = 1.0
    key.update_tag()  # (points.foreach_set tags too, but that is not documented)
    # what Blender's mix adds for the pose key: (key - Basis) in float32
    cache.key_delta = np.subtract(data, template, dtype=np.float32)
    for other in _caches.values():  # heads sharing these shape keys (linked duplicates)
        if other is not cache and other.key_uid == cache.key_uid:
            other.key_delta = None  # their next frame writes the pose key, not a correction
    if not cache.correction_zero:  # the pose key is the whole pose again
        # zeroed even with the modifier off: turned on again, it must not add a stale pose
        mesh = pose_correction.claim(obj, active_only=False)
        if mesh is not None:
            pose_correction.write(mesh, np.zeros_like(data))
        cache.correction_zero = mesh is not None or pose_correction.correction_object(obj) is None
    cache.pose = pose
    landmark_empties.follow(obj, vertices, pose)  # the head's landmark empties, if it has any


def _offsets(key, cache: _HeadCache) -> np.ndarray | None:
    """The offsets ``(V, 3)`` Blender's mix adds through the offsets key, or None without one."""
    if cache.offsets_index is None or cache.offsets_scale == 0.0:
        return None
    if cache.offsets_delta is None:
        block, reference = key.key_blocks[cache.offsets_index], key.reference_key
        count = 3 * len(block.data)
        co, base = np.empty(count, dtype=np.float32), np.empty(count, dtype=np.float32)
        block.data.foreach_get("co", co)
        reference.data.foreach_get("co", base)
        # float32 key points minus float32 basis: exactly the delta Blender's mix adds
        cache.offsets_delta = (co.astype(np.float64) - base).reshape(-1, 3)
    return cache.offsets_scale * cache.offsets_delta


def _fcurves(id_data) -> list | None:
    """The F-curves animating ``id_data``, or None when its animation is more than one action
    (NLA tracks, drivers): then the values cannot be predicted from the curves alone."""
    curves = _curve_collection(id_data)
    return None if curves is None else list(curves)


def _curve_collection(id_data) -> Any:
    """:func:`_fcurves` as Blender's own collection (nothing copied), [] or None."""
    animation = id_data.animation_data
    if animation is None or animation.action is None:
        return []
    if len(animation.nla_tracks) or len(animation.drivers):
        return None
    action = animation.action
    if hasattr(animation, "action_slot"):  # Blender 4.4+: layered actions, one slot per user
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(action, animation.action_slot)
        return bag.fcurves if bag is not None else []
    return action.fcurves  # Blender 4.2, 4.3


def heads(objects=None) -> list[bpy.types.Object]:
    objects = bpy.data.objects if objects is None else objects
    return [obj for obj in objects if is_head(obj)]


def update_all_heads(force: bool = False, depsgraph=None, objects=None) -> None:
    """Update every head; a head whose model cannot be loaded keeps its shape (reason recorded)."""
    for obj in heads(objects):
        safe_update(obj, depsgraph=depsgraph, force=force)


def safe_update(obj, depsgraph=None, force: bool = False) -> bool:
    """:func:`update_head` for handlers: never raises; problems are recorded for the panel,
    printed once and shown in the status bar."""
    try:
        written = update_head(obj, depsgraph=depsgraph, force=force)
        if written:
            runtime.clear_update_error(obj.name)
        return written
    except ReferenceError:
        return False  # the head was deleted meanwhile
    except Exception as error:  # a handler must not raise: Blender would print it every frame
        try:
            name = obj.name
        except ReferenceError:
            return False
        runtime.record_update_error(name, str(error))
        runtime.report_once(f"{name}: cannot update the pose ({error})")
        return False


# ---------------------------------------------------------------------------------------------
# parameters in and out


def get_parameters(obj: bpy.types.Object) -> core.FlameParameters:
    """The head's current parameters (original values: shape keys and ``obj.flame``)."""
    if not is_head(obj):
        raise FlameParameterError(f"{getattr(obj, 'name', obj)!r} is not a FLAME head")
    blocks = obj.data.shape_keys.key_blocks
    n_shape, n_expression = obj.flame.n_shape, obj.flame.n_expression
    shape = np.array([blocks[shape_key_name(i)].value for i in range(n_shape)], dtype=np.float64)
    expression = np.array(
        [blocks[expression_key_name(i)].value for i in range(n_expression)], dtype=np.float64
    )
    flame = obj.flame
    return core.FlameParameters(
        shape=shape,
        expression=expression,
        **{name: np.array(getattr(flame, name)[:], dtype=np.float64) for name in POSE_NAMES},
    )


def set_parameters(obj: bpy.types.Object, params: core.FlameParameters) -> None:
    """Set the head's coefficients and pose, then update it once.

    Missing coefficients become zero; extra ones are accepted only when zero. Raises
    ``FlameParameterError`` for coefficients outside the shape keys' ±10 range or non-zero
    coefficients the head has no shape key for.
    """
    if not is_head(obj):
        raise FlameParameterError(f"{getattr(obj, 'name', obj)!r} is not a FLAME head")
    n_shape, n_expression = obj.flame.n_shape, obj.flame.n_expression
    for group, values, count in (("shape", params.shape, n_shape), ("expression", params.expression, n_expression)):
        if np.any(values[count:] != 0.0):
            raise FlameParameterError(
                f"{group} has {values.shape[0]} coefficients with non-zero values past the "
                f"{count} this head has; import the head with more components"
            )
        if np.any(np.abs(values) > COEFFICIENT_LIMIT):
            raise FlameParameterError(
                f"{group} coefficients must lie within ±{COEFFICIENT_LIMIT:g} (shape-key range)"
            )
    params = params.resized(n_shape, n_expression)
    key = obj.data.shape_keys
    blocks = key.key_blocks
    cache = _cache_for(obj, key)
    if cache is None:
        raise FlameParameterError(f"{obj.name}: its FLAME shape keys are missing")
    values = np.empty(len(blocks), dtype=np.float32)
    blocks.foreach_get("value", values)
    values[cache.coefficient_index] = np.concatenate([params.shape, params.expression])
    blocks.foreach_set("value", values)
    with suspended_updates():
        for name in POSE_NAMES:
            setattr(obj.flame, name, getattr(params, name).tolist())
    update_head(obj)


def reset_parameters(obj: bpy.types.Object) -> None:
    set_parameters(obj, core.FlameParameters.zeros(obj.flame.n_shape, obj.flame.n_expression))
