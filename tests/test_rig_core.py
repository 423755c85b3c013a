"""The rig maths (core.rig, no bpy) against FLAME: the textbook forward pass of test_forward
(Rodrigues, explicit 4x4 chain, per-vertex blend) and textbook rotation formulas."""

from __future__ import annotations

import numpy as np
import pytest
from test_forward import random_parameters, reference_flame, rodrigues_reference

from flame_blender.core import find_flame_model_file, load_flame
from flame_blender.core.rig import (
    build_rig_model,
    corrective_expression,
    corrective_key_names,
    quaternion_to_matrix,
    rig_animation,
    rig_vertices,
)


@pytest.fixture(scope="module")
def model(flame_dir):
    return load_flame(find_flame_model_file(flame_dir))


def _sequence(rng, count: int) -> list[dict]:
    frames = []
    shape = rng.normal(size=300)
    for _ in range(count):
        p = random_parameters(rng)
        p["shape_params"] = shape  # identity is constant over a sequence
        p["transl"] = rng.normal(scale=0.1, size=3)
        frames.append(p)
    return frames


def _animation(rig, frames, with_shape=False):
    stack = {name: np.stack([p[name] for p in frames]) for name in frames[0]}
    return rig_animation(
        rig, stack["global_pose"], stack["neck_pose"], stack["jaw_pose"], stack["eye_pose"],
        stack["transl"], stack["expression_params"], stack["shape_params"] if with_shape else None,
    )


@pytest.mark.parametrize("identity_keys", [0, 300])
def test_rig_reproduces_flame(model, identity_keys):
    rng = np.random.default_rng(3)
    frames = _sequence(rng, 12)
    rig = build_rig_model(model, frames[0]["shape_params"], 100, identity_keys=identity_keys)
    vertices = rig_vertices(rig, _animation(rig, frames, with_shape=bool(identity_keys)))
    for i, p in enumerate(frames):
        expected, _ = reference_flame(model, p)
        assert np.abs(vertices[i] - expected).max() < 1e-9


def test_each_part_matters(model):
    """Without the joint-motion translations or the correctives the rig is visibly wrong."""
    rng = np.random.default_rng(4)
    frames = _sequence(rng, 4)
    rig = build_rig_model(model, frames[0]["shape_params"], 100)
    expected = np.stack([reference_flame(model, p)[0] for p in frames])
    animation = _animation(rig, frames)
    animation.locations[:, 1:] = 0.0
    assert np.abs(rig_vertices(rig, animation) - expected).max() > 1e-4
    animation = _animation(rig, frames)
    animation.corrective_values[:] = 0.0
    assert np.abs(rig_vertices(rig, animation) - expected).max() > 1e-4


def test_quaternions_and_driver_expressions_match_rodrigues(model):
    rng = np.random.default_rng(5)
    frames = _sequence(rng, 6)
    rig = build_rig_model(model, frames[0]["shape_params"], 100)
    animation = _animation(rig, frames)
    names = corrective_key_names()
    assert len(names) == 36 and len(set(names)) == 36
    for i, p in enumerate(frames):
        axis_angles = [p["global_pose"], p["neck_pose"], p["jaw_pose"], p["eye_pose"][:3], p["eye_pose"][3:]]
        for j, r in enumerate(axis_angles):
            expected = rodrigues_reference(r)
            assert np.abs(quaternion_to_matrix(animation.quaternions[i, j]) - expected).max() < 1e-12
            if j == 0:
                continue
            w, x, y, z = animation.quaternions[i, j]
            for row in range(3):
                for column in range(3):
                    # The driver text, evaluated as Blender's simple-expression evaluator would.
                    text = corrective_expression(row, column)
                    assert set(text) <= set("wxyz+-*2() ")
                    value = eval(text, {"__builtins__": {}}, {"w": w, "x": x, "y": y, "z": z})
                    entry = expected[row, column] - (row == column)
                    assert value == pytest.approx(entry, abs=1e-12)
                    index = 9 * (j - 1) + 3 * row + column
                    assert animation.corrective_values[i, index] == pytest.approx(entry, abs=1e-12)
