"""Rotations, landmarks and the synthetic model through the forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_forward import rodrigues_reference

from flame_blender.core.model import landmarks as lm
from flame_blender.core.model.flame_numpy import FlameNumpy
from flame_blender.core.model.flame_torch import FLAME
from flame_blender.core.model.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from flame_blender.core.model.rotation import axis_angle_to_matrix as axis_angle_to_matrix_torch


def test_rotations_match_rodrigues_up_to_pi_in_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, 190), np.pi - np.logspace(-12, -1, 10)])
    vectors = axes * angles[:, None]
    expected = np.stack([rodrigues_reference(v) for v in vectors])
    assert np.abs(axis_angle_to_matrix(vectors) - expected).max() < 1e-14
    assert np.abs(axis_angle_to_matrix_torch(torch.from_numpy(vectors)).numpy() - expected).max() < 1e-14
    r = axis_angle_to_matrix(vectors)
    assert np.abs(r @ r.transpose(0, 2, 1) - np.eye(3)).max() < 1e-14
    assert np.abs(matrix_to_axis_angle(r[:190]) - vectors[:190]).max() < 1e-9


def test_zero_rotation_is_the_identity_exactly_with_finite_gradients() -> None:
    assert np.array_equal(axis_angle_to_matrix(np.zeros((4, 3))), np.broadcast_to(np.eye(3), (4, 3, 3)))
    for dtype in (torch.float32, torch.float64):
        r = torch.zeros(3, dtype=dtype, requires_grad=True)
        rotation = axis_angle_to_matrix_torch(r)
        assert torch.equal(rotation, torch.eye(3, dtype=dtype))
        jacobian = torch.autograd.functional.jacobian(axis_angle_to_matrix_torch, r.detach())
        # d R / d r at zero is the cross-product matrix basis: dR/dx = [[0,0,0],[0,0,-1],[0,1,0]], ...
        assert torch.equal(jacobian[:, :, 0], torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=dtype))
        assert torch.equal(jacobian[:, :, 2], torch.tensor([[0, -1, 0], [1, 0, 0], [0, 0, 0]], dtype=dtype))


def test_tiny_rotations_are_accurate() -> None:
    for theta in (1e-12, 1e-8, 1e-5, 1e-3):
        r = np.array([theta, 0.0, 0.0])
        expected = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
        assert np.abs(axis_angle_to_matrix(r) - expected).max() < 1e-16
        r32 = axis_angle_to_matrix_torch(torch.tensor(r, dtype=torch.float32)).numpy()
        assert np.abs(r32 - expected).max() < 1e-7


def test_torch_rotation_gradcheck_including_zero_and_pi() -> None:
    vectors = torch.tensor([[0.0, 0.0, 0.0], [1e-4, -2e-4, 3e-4], [0.3, -1.1, 0.4], [np.pi - 1e-3, 0, 0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(axis_angle_to_matrix_torch, (vectors.requires_grad_(True),))


# -- contour choice ------------------------------------------------------------------------------


def test_contour_bin_follows_the_flame_pytorch_lookup_in_the_smplx_convention() -> None:
    yaw = np.array([0.0, -0.4, -0.6, -1.0, -39.0, -39.4, -60.0, 1.0, 20.0, 39.0, 39.6, 90.0])
    expected = [0, 0, 1, 1, 39, 39, 39, 40, 59, 78, 78, 78]
    assert lm.contour_bin_from_yaw(yaw, "smplx").tolist() == expected
    # the default (DECA's sign) reads each row as the yaw it was drawn for
    assert lm.YAW_BIN_DEGREES[lm.contour_bin_from_yaw(np.arange(-39.0, 40.0))].tolist() == list(np.arange(-39.0, 40.0))


def test_contour_bin_uses_global_then_neck_rotation() -> None:
    def yaw_rotation(degrees: float) -> np.ndarray:
        return axis_angle_to_matrix(np.array([0.0, np.radians(degrees), 0.0]))

    assert lm.contour_bin(yaw_rotation(12.0) @ yaw_rotation(8.0), "smplx") == 39 + 20
    assert lm.contour_bin(yaw_rotation(-25.0), "smplx") == 25
    assert lm.contour_bin(yaw_rotation(12.0) @ yaw_rotation(8.0)) == 20
    assert lm.contour_bin(yaw_rotation(-25.0)) == 39 + 25
    torch_contour_bin = __import__("flame_blender.core.model.flame_torch", fromlist=["contour_bin"]).contour_bin
    rotations = torch.from_numpy(np.stack([yaw_rotation(d) for d in (-25.0, 0.0, 20.0, 50.0)]))
    assert torch_contour_bin(rotations, "smplx").tolist() == [25, 0, 59, 78]
    assert torch_contour_bin(rotations).tolist() == [64, 0, 20, 39]


# -- the synthetic model, from its files ----------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(flame_dir: Path) -> tuple[Path, FLAME]:
    return flame_dir, FLAME(flame_dir, dtype=torch.float64)


def test_synthetic_folder_loads_with_every_landmark_set(synthetic: tuple[Path, FLAME]) -> None:
    folder, flame = synthetic
    names = set(flame.landmarks.names)
    assert {"mediapipe", "static_51", "static_68", "dynamic_contour", "dynamic_68"} <= names
    out = flame.run(jaw_pose=torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64))
    assert out.vertices.shape == (5023, 3)
    assert out.landmarks["mediapipe"].shape == (105, 3)
    assert out.landmarks["static_51"].shape == (51, 3)
    assert out.landmarks["dynamic_contour"].shape == (17, 3)
    assert out.landmarks["dynamic_68"].shape == (68, 3)
    model_file = next(p for p in (folder / "flame2023.pkl", folder / "generic_model.pkl") if p.exists())
    from_file = FLAME(model_file, dtype=torch.float64)
    assert set(from_file.landmarks.names) == names


def test_landmarks_are_barycentric_points_of_the_posed_mesh(synthetic: tuple[Path, FLAME]) -> None:
    from flame_blender.core.io.landmark_io import load_landmark_embeddings

    folder, flame = synthetic
    embeddings = load_landmark_embeddings(folder)
    faces = flame.faces.numpy()
    rng = np.random.default_rng(3)
    pose = {"global_pose": np.array([0.1, 0.3, 0.0]), "neck_pose": np.array([0.0, 0.2, 0.05]), "jaw_pose": np.array([0.25, 0, 0])}
    out = flame.run(shape_params=torch.from_numpy(rng.normal(size=300)), **{k: torch.from_numpy(v) for k, v in pose.items()})
    vertices = out.vertices.numpy()
    for name in ("mediapipe", "static_51", "static_68"):
        e = embeddings[name]
        corners = vertices[faces[e.face_indices]]  # (L, 3 corners, 3)
        expected = (corners * e.barycentric[:, :, None]).sum(axis=1)
        assert np.abs(out.landmarks[name].numpy() - expected).max() < 1e-12, name
    contour = embeddings["dynamic_contour"]
    world_neck = axis_angle_to_matrix(pose["global_pose"]) @ axis_angle_to_matrix(pose["neck_pose"])
    yaw = np.degrees(np.arctan2(-world_neck[2, 0], np.hypot(world_neck[0, 0], world_neck[1, 0])))
    row = int(round(min(yaw, 39)))  # DECA's sign, the default
    row = row if row >= 0 else (78 if row < -39 else 39 - row)
    corners = vertices[faces[contour.face_indices[row]]]
    expected = (corners * contour.barycentric[row][:, :, None]).sum(axis=1)
    assert np.abs(out.landmarks["dynamic_contour"].numpy() - expected).max() < 1e-12
    assert torch.equal(out.landmarks["dynamic_68"][17:], out.landmarks["static_51"])


def test_numpy_landmarks_equal_torch_landmarks(synthetic: tuple[Path, FLAME]) -> None:
    folder, flame = synthetic
    rng = np.random.default_rng(4)
    batch = {
        "shape_params": rng.normal(size=(3, 300)),
        "global_pose": rng.normal(size=(3, 3)) * 0.4,
        "neck_pose": rng.normal(size=(3, 3)) * 0.3,
        "jaw_pose": np.array([0.2, 0.0, 0.0]),
    }
    torch_out = flame.run(**{k: torch.from_numpy(v) for k, v in batch.items()})
    numpy_out = FlameNumpy(folder).run(**batch)
    for name, points in numpy_out.landmarks.items():
        assert points.shape == tuple(torch_out.landmarks[name].shape)
        assert np.abs(points - torch_out.landmarks[name].numpy()).max() < 1e-12, name


def test_builtin_synthetic_model_is_the_default() -> None:
    flame = FLAME()
    assert flame.n_shape == 300 and flame.n_expression == 100
    assert flame().shape == (5023, 3)
