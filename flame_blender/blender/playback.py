"""Playback: before Blender evaluates a frame, the pose for the values the head's F-curves will
give there, written once (``frame_change_pre``, see :mod:`.handlers`).

Which F-curve drives which FLAME value is worked out once per head and kept while the curves'
(data path, index) pairs stay the same; each frame then evaluates the curves into one array.
The result goes into the head's pose correction (:mod:`.pose_correction`): the pose's skinning of
Blender's own shape-key mix, or an offset; else the pose key.
"""

from __future__ import annotations

from typing import NamedTuple

import bpy
import numpy as np

from . import landmark_empties, pose_correction, runtime
from .blas_threads import single_threaded_blas
from .fcurve_sampling import CurveSampler
from .head import (
    _POSE_SLICES,
    COEFFICIENT_LIMIT,
    _cache_for,
    _curve_collection,
    _HeadCache,
    _offsets,
    _pose_delta,
    _write_pose_key,
)


def predict_frame(obj: bpy.types.Object, frame: float) -> bool:
    """Before Blender evaluates a new frame, write the pose (into the pose correction, else the
    pose key) for the values the head's F-curves will give at ``frame``, so one evaluation
    suffices (``frame_change_pre``).

    Returns False (and writes nothing) when the animation is not plain F-curves; the
    ``frame_change_post`` handler then corrects the pose key after the evaluation, as it does
    whenever a prediction turns out different from the evaluated values.
    """
    key = obj.data.shape_keys
    if key is None or not obj.flame.is_head:
        return False
    object_curves, key_curves = _curve_collection(obj), _curve_collection(key)
    if object_curves is None or key_curves is None or not (len(object_curves) or len(key_curves)):
        return False
    cache = _cache_for(obj, key)
    if cache is None or cache.coefficients is None or cache.pose is None:
        return False
    coefficients = cache.coefficients.copy()
    pose = cache.pose.copy()
    if len(object_curves):
        plan = _plan(cache, "object", object_curves, _pose_target)
        if plan.chosen:
            pose[plan.targets] = plan.sampler.values(object_curves, plan.chosen, frame)
    if len(key_curves):
        positions = cache.positions
        plan = _plan(cache, "key", key_curves, lambda path, _index: _key_target(positions, path))
        if plan.chosen:
            values = plan.sampler.values(key_curves, plan.chosen, frame)
            coefficients[plan.targets] = np.clip(values, -COEFFICIENT_LIMIT, COEFFICIENT_LIMIT)
    coefficients_changed = not np.array_equal(coefficients, cache.coefficients)
    if not coefficients_changed and np.array_equal(pose, cache.pose):
        return True
    _write_correction(obj, key, cache, coefficients, pose, coefficients_changed)
    return True


def _write_correction(obj, key, cache: _HeadCache, coefficients: np.ndarray, pose: np.ndarray, coefficients_changed: bool) -> None:
    """Playback: put the pose into the head's pose correction instead of the pose key, which
    Blender would copy whole (every key block) to evaluate. Falls back to the pose key for a
    head without its own correction (old files, a duplicate not yet given one).

    When Blender's shape-key mix is ``v_shaped`` plus the pose key (``cache.skinnable``), the
    correction is the pose's skinning map (:meth:`FlameBackend.skinning`), applied by the
    modifier to that mix: no shape direction is blended here. Otherwise it is the posed
    vertices minus the mix, an offset."""
    mesh = pose_correction.claim(obj)
    if mesh is None or cache.key_delta is None:
        _write_pose_key(obj, key, cache, coefficients, pose, coefficients_changed)
        return
    if cache.skinnable:
        _write_skinning(obj, key, cache, mesh, coefficients, pose)
        if coefficients_changed:
            cache.coefficients, cache.v_shaped = coefficients, None  # v_shaped: on demand
        if landmark_empties.following(obj):
            vertices, _ = _pose_delta(obj, key, cache, coefficients, pose, False)
            landmark_empties.follow(obj, vertices, pose)
    else:
        vertices, delta = _pose_delta(obj, key, cache, coefficients, pose, coefficients_changed)
        delta -= cache.key_delta
        pose_correction.write(mesh, delta)
        landmark_empties.follow(obj, vertices, pose)
    cache.correction_zero = False
    cache.pose = pose


def _write_skinning(obj, key, cache: _HeadCache, mesh, coefficients: np.ndarray, pose: np.ndarray) -> None:
    """The correction that maps Blender's mix ``m = v_shaped + key_delta`` to FLAME's vertices:
    ``v = m - key_delta + pose_offsets`` is skinned to ``v + D v + t``, that is
    ``m + D m + (I + D)(pose_offsets - key_delta) + t`` (``D`` the blended ``G - I``)."""
    flame = obj.flame
    backend = runtime.get_backend(flame.model_path, flame.n_shape, flame.n_expression, flame.teeth)
    n_shape = flame.n_shape
    with single_threaded_blas():
        skinning = backend.skinning(
            coefficients[:n_shape], coefficients[n_shape:], pose[0:3], pose[3:6], pose[6:9], pose[9:15],
            pose[15:18], offsets=_offsets(key, cache),
        )
    columns = skinning.blended  # (4, V, 3): D's columns, then t
    before = skinning.pose_offsets - cache.key_delta  # (V, 3)
    offset = np.einsum("cvi,vc->vi", columns[:3], before)  # D (P - k), per vertex
    offset += before
    offset += columns[3]
    offset += skinning.transl.astype(np.float32)
    pose_correction.write(mesh, offset, columns[:3])


_POSE_STARTS = {name: start for name, start, _ in _POSE_SLICES}


def _pose_target(path: str, index: int) -> int | None:
    """Position in the 18 pose values of the F-curve ``flame.<pose name>[index]``, or None."""
    if path.startswith("flame.") and path[6:] in _POSE_STARTS:
        return _POSE_STARTS[path[6:]] + index
    return None


def _key_target(positions: dict[str, int], path: str) -> int | None:
    """Position in the coefficients of the F-curve ``key_blocks["<name>"].value``, or None."""
    if path.startswith('key_blocks["') and path.endswith('"].value'):
        return positions.get(path[12:-8])
    return None


class _Plan(NamedTuple):
    """How one head's curves (of the object, or of its shape keys) are sampled."""

    quick: tuple[int, int]  # (the curves' owner's pointer, curve count): checked every frame
    signature: list[tuple[str, int]]  # (data path, index) of every curve: checked when quick differs
    chosen: list[int]  # the curves that drive a FLAME value
    targets: np.ndarray  # int64: where each chosen curve's value goes
    sampler: CurveSampler


def _plan(cache: _HeadCache, which: str, curves, target) -> _Plan:
    """Which of ``curves`` (Blender's collection) drive a FLAME value, where it goes, and how to
    sample them: remembered per head. The (data path, index) pairs are compared only when the
    action or the number of curves changed; an edit that keeps both (a renamed path, moved or
    edited keys) is caught by ``frame_change_post``, which then forgets the plans
    (:func:`.head.update_head`). The curve objects themselves are never kept (they may be freed)."""
    plans = cache.plans
    if plans is None:
        plans = cache.plans = {}
    plan = plans.get(which)
    quick = (curves.id_data.as_pointer(), len(curves))
    if plan is not None and plan.quick == quick:
        return plan
    signature = [(curve.data_path, curve.array_index) for curve in curves]
    if plan is None or plan.signature != signature:
        chosen = [i for i, (path, index) in enumerate(signature) if target(path, index) is not None]
        targets = np.array([target(*signature[i]) for i in chosen], dtype=np.int64)
        plan = _Plan(quick, signature, chosen, targets, CurveSampler([curves[i] for i in chosen]))
    plan = plans[which] = plan._replace(quick=quick)
    return plan
