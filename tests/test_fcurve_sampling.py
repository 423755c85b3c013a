"""Playback samples linear F-curves with NumPy: every value must be Blender's own
``FCurve.evaluate`` bit for bit, at keys, between them, beyond them and at sub-frames."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender.blender.fcurve_sampling import CurveSampler  # noqa: E402
from flame_blender.blender.head import _fcurves  # noqa: E402


def _curves(interpolation: str, seed: int, count: int = 6):
    """``count`` F-curves of an action on a fresh object, keyed at the same irregular frames."""
    bpy.ops.wm.read_homefile(use_empty=True)
    obj = bpy.data.objects.new("keys", None)
    bpy.context.scene.collection.objects.link(obj)
    action = bpy.data.actions.new("keys")
    obj.animation_data_create().action = action
    rng = np.random.default_rng(seed)
    frames = np.cumsum(rng.integers(1, 4, size=40)).astype(np.float32) + np.float32(0.25)
    for index in range(count):
        obj[f"value_{index}"] = 0.0
        obj.keyframe_insert(f'["value_{index}"]', frame=1.0)
    for curve in _fcurves(obj):
        points = curve.keyframe_points
        points.clear()
        points.add(len(frames))
        values = (rng.normal(size=len(frames)) * 3.0).astype(np.float32)
        points.foreach_set("co", np.column_stack([frames, values]).reshape(-1))
        for point in points:
            point.interpolation = interpolation
        curve.update()
    return obj, _fcurves(obj), frames


@pytest.mark.parametrize("interpolation", ["LINEAR", "CONSTANT"])
def test_linear_and_constant_keys_equal_blender_bit_for_bit(interpolation):
    _, curves, frames = _curves(interpolation, seed=1)
    chosen = list(range(len(curves)))
    sampler = CurveSampler(curves)
    assert not sampler.evaluated  # all sampled from the table
    rng = np.random.default_rng(2)
    times = np.concatenate([
        frames, frames + 0.00005, frames - 0.00005, frames + 0.5, rng.uniform(frames[0] - 5, frames[-1] + 5, 300),
        [frames[0] - 1.0, frames[-1] + 1.0],
    ])
    for time in times.tolist():
        got = sampler.values(curves, chosen, time)
        want = np.array([curve.evaluate(time) for curve in curves], np.float32)
        assert np.array_equal(got.view(np.int32), want.view(np.int32)), time


def test_other_curves_are_evaluated_by_blender():
    obj, curves, frames = _curves("BEZIER", seed=3, count=3)
    curves[1].keyframe_points[0].interpolation = "LINEAR"  # still Bézier segments after it
    linear = curves[2]
    for point in linear.keyframe_points:
        point.interpolation = "LINEAR"
    linear.modifiers.new("NOISE")  # a modifier: Blender's evaluation only
    sampler = CurveSampler(curves)
    assert sorted(sampler.evaluated) == [0, 1, 2]
    for time in (frames[3] + 0.3, frames[10]):
        got = sampler.values(curves, [0, 1, 2], float(time))
        assert np.array_equal(got, np.array([c.evaluate(float(time)) for c in curves], np.float32))
