"""bpy.ops.flame.fit in the real Blender: targets built from known heads, checked in world space.

The target mesh's world vertices come from Blender (its object transform applied by Blender's
own matrix); the fitted head is read back as Blender evaluates it. Ground truth is the public
forward pass of known parameters.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from flame_blender.blender import get_parameters, landmark_empties
from flame_blender.core import FlameParameters
from tests.conftest import read_evaluated_vertices
from tests.fitting_targets import random_rotation


def known_params(seed: int) -> FlameParameters:
    rng = np.random.default_rng(seed)
    params = FlameParameters.zeros(10, 5)
    params.shape = np.clip(rng.standard_normal(10), -2, 2)
    params.expression = np.clip(rng.standard_normal(5), -2, 2)
    params.jaw_pose = np.array([0.3, 0.0, 0.0])
    params.neck_pose = np.array([0.1, -0.3, 0.0])
    return params


def world_vertices(obj) -> np.ndarray:
    local = read_evaluated_vertices(obj)
    matrix = np.array(obj.matrix_world)
    return local @ matrix[:3, :3].T + matrix[:3, 3]


def add_target(name: str, local: np.ndarray, faces: np.ndarray, matrix: np.ndarray):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(local.tolist(), [], faces.tolist())
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(matrix.tolist())
    return obj


def select(head, target) -> None:
    for obj in bpy.context.scene.objects:
        obj.select_set(False)
    target.select_set(True)
    head.select_set(True)
    bpy.context.view_layer.objects.active = head


def test_fit_to_a_selected_mesh_with_a_transform(small_head, flame_reference):
    truth = flame_reference(known_params(1))
    rotation = random_rotation(np.random.default_rng(2))
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = (0.3, -0.2, 0.1)
    # the target's own vertices are the truth moved back by its transform
    faces = np.array([p.vertices[:] for p in small_head.data.polygons])
    target = add_target("Registered", (truth - matrix[:3, 3]) @ rotation, faces, matrix)
    expected = world_vertices(target)
    select(small_head, target)
    assert bpy.ops.flame.fit(target="SELECTED") == {"FINISHED"}
    error = np.linalg.norm(world_vertices(small_head) - expected, axis=1)
    assert error.max() <= 1e-4, error.max()  # 0.1 mm
    assert bpy.context.scene.flame_fit.last_residual_mm <= 0.05


def test_fit_to_moved_landmark_empties(small_head, flame_dir):
    from flame_blender.core import FlameNumpy

    params = known_params(3)
    wanted = FlameNumpy(flame_dir, n_shape=10, n_expression=5).run(**params.forward_kwargs()).landmarks["static_68"]
    bpy.context.view_layer.objects.active = small_head
    bpy.ops.flame.add_landmarks(landmark_set="ibug68")
    empties = landmark_empties.landmark_empties(small_head, "ibug68")
    assert len(empties) == 68
    for empty, point in zip(empties, wanted, strict=True):  # "drag" every empty to its place
        empty.location = point
    bpy.context.view_layer.update()
    assert bpy.ops.flame.fit(target="LANDMARKS") == {"FINISHED"}
    bpy.context.view_layer.update()
    # the empties follow the fitted head: they now sit where they were dragged (head space)
    matrix = np.array(small_head.matrix_world)
    placed = np.array([e.matrix_world.translation[:] for e in empties])
    dragged = wanted @ matrix[:3, :3].T + matrix[:3, 3]
    assert np.linalg.norm(placed - dragged, axis=1).max() <= 1e-3  # 1 mm


def test_undo_returns_the_previous_parameters(small_head, flame_reference):
    window = bpy.context.window_manager.windows[0]
    name = small_head.name
    truth = flame_reference(known_params(4))
    target = add_target("Registered", truth, np.array([p.vertices[:] for p in small_head.data.polygons]), np.eye(4))
    with bpy.context.temp_override(window=window):
        select(small_head, target)
        bpy.ops.ed.undo_push(message="before fit")
        assert bpy.ops.flame.fit(target="SELECTED") == {"FINISHED"}
        assert np.abs(get_parameters(bpy.data.objects[name]).shape).max() > 0.1
        bpy.ops.ed.undo_push(message="fitted")
        bpy.ops.ed.undo()
        obj = bpy.data.objects[name]
        assert np.all(get_parameters(obj).shape == 0.0) and np.all(get_parameters(obj).jaw_pose == 0.0)


def test_bad_targets_change_nothing(small_head):
    select(small_head, small_head)
    before = get_parameters(small_head)
    with pytest.raises(RuntimeError, match="select a target mesh"):
        bpy.ops.flame.fit(target="SELECTED")
    with pytest.raises(RuntimeError, match="no landmark empties"):
        bpy.ops.flame.fit(target="LANDMARKS")
    flat = add_target("Flat", np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]) * 1e4, np.array([[0, 1, 2]]), np.eye(4))
    select(small_head, flat)
    with pytest.raises(RuntimeError, match="no head size"):
        bpy.ops.flame.fit(target="SELECTED")
    faces = np.array([p.vertices[:] for p in small_head.data.polygons])
    collapsed = add_target("Collapsed", np.zeros((len(small_head.data.vertices), 3)), faces, np.eye(4))
    select(small_head, collapsed)
    with pytest.raises(RuntimeError, match="degenerate"):
        bpy.ops.flame.fit(target="SELECTED")
    assert get_parameters(small_head).allclose(before)
    assert tuple(small_head.scale) == (1.0, 1.0, 1.0)


def test_panel_and_settings_are_registered(small_head):
    assert hasattr(bpy.types, "FLAME_PT_fit")
    settings = bpy.context.scene.flame_fit
    assert settings.target == "SELECTED" and settings.units == "AUTO"
    bpy.context.view_layer.objects.active = small_head
    assert bpy.types.FLAME_PT_fit.poll(bpy.context)
    bpy.context.view_layer.objects.active = None
    assert not bpy.types.FLAME_PT_fit.poll(bpy.context)


def test_fit_to_a_selected_scan_mesh(small_head, flame_reference, flame_dir):
    """A mesh of another topology (the known head's skin only, moved by its object transform)
    is fitted as a scan."""
    from flame_blender.core import load_flame_masks

    truth = flame_reference(known_params(5))
    faces = np.array([p.vertices[:] for p in small_head.data.polygons])
    skin = faces[(faces < 3931).all(axis=1)]
    matrix = np.eye(4)
    matrix[:3, :3] = random_rotation(np.random.default_rng(6))
    matrix[:3, 3] = (-0.2, 0.4, 0.05)
    target = add_target("Scan", (truth[:3931] - matrix[:3, 3]) @ matrix[:3, :3], skin, matrix)
    assert len(target.data.vertices) != len(small_head.data.vertices)
    expected = world_vertices(target)  # the known head's skin, where the scan is
    select(small_head, target)
    assert bpy.ops.flame.fit(target="SELECTED") == {"FINISHED"}
    face = load_flame_masks(flame_dir)["face"]
    assert face.max() < 3931
    error = np.linalg.norm(world_vertices(small_head)[face] - expected[face], axis=1)
    assert np.median(error) <= 2e-3, np.median(error)  # 2 mm


def test_fit_scale_and_the_prior_switch(small_head, flame_reference):
    """A registered target 7 % larger than any head: with Fit Scale the object takes the scale
    and the head lands on the target; the panel's own priors apply only with Default Priors off."""
    params = known_params(5)
    truth = flame_reference(params)
    faces = np.array([p.vertices[:] for p in small_head.data.polygons])
    matrix = np.diag([1.07, 1.07, 1.07, 1.0])
    target = add_target("Larger", truth, faces, matrix)
    expected = world_vertices(target)
    select(small_head, target)
    assert bpy.ops.flame.fit(target="SELECTED", fit_scale=True) == {"FINISHED"}
    assert np.allclose(tuple(small_head.scale), 1.07, atol=1e-4)
    assert np.linalg.norm(world_vertices(small_head) - expected, axis=1).max() <= 1e-4
    small_head.scale = (1.0, 1.0, 1.0)
    assert bpy.ops.flame.fit(target="SELECTED", fit_scale=True, default_priors=False, shape_prior=100.0) == {"FINISHED"}
    # a prior 1e9 times core's default pulls identity most of the way to the average head
    assert np.abs(get_parameters(small_head).shape).max() < 0.5 * np.abs(params.shape).max()
