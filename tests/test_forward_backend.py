"""The single-head backends the Blender layer calls, and the core without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from flame_blender.core.errors import FlameParameterError
from flame_blender.core.model.backend import create_backend
from flame_blender.core.model.flame_torch import FLAME

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = ["torch_cpu", "numpy"]


@pytest.fixture(scope="module")
def model() -> dict:
    from test_forward import random_model

    return random_model(seed=11)


@pytest.fixture(scope="module")
def reference(model: dict) -> FLAME:
    return FLAME(model, dtype=torch.float64)


def random_head(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.normal(size=300), rng.normal(size=100), rng.normal(size=18) * 0.6


def split(pose: np.ndarray) -> tuple[np.ndarray, ...]:
    return pose[0:3], pose[3:6], pose[6:9], pose[9:15], pose[15:18]


def expected(reference: FLAME, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, n, j, e, t = split(pose)
    out = reference.run(
        shape_params=shape, expression_params=expression, global_pose=g, neck_pose=n, jaw_pose=j, eye_pose=e, transl=t
    )
    return out.vertices.numpy(), out.joints.numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_shaped_then_posed_equals_the_forward_pass(model: dict, reference: FLAME, kind: str) -> None:
    backend = create_backend(model, kind)
    assert backend.name == {"torch_cpu": "PyTorch CPU", "numpy": "NumPy"}[kind]
    rng = np.random.default_rng(0)
    for _ in range(3):
        shape, expression, pose = random_head(rng)
        v_shaped = backend.shaped(shape, expression)
        assert v_shaped.dtype == np.float32 and v_shaped.shape == (5023, 3)
        vertices, joints = backend.posed(v_shaped, *split(pose))
        assert vertices.dtype == np.float32 and vertices.flags.c_contiguous and vertices.shape == (5023, 3)
        want_vertices, want_joints = expected(reference, shape, expression, pose)
        assert np.abs(vertices - want_vertices).max() <= 2e-5
        assert np.abs(joints - want_joints).max() <= 2e-5
        # a copy of v_shaped (not the array shaped() returned) goes the long way, same answer
        again, _ = backend.posed(v_shaped.copy(), *split(pose))
        assert np.abs(again - vertices).max() <= 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_skinning_of_a_given_v_shaped_equals_the_forward_pass(model: dict, reference: FLAME, kind: str) -> None:
    """``skinning`` never blends a shape direction: the caller brings ``v_shaped`` (in Blender,
    the shape-key mix). Here it is blended independently in float64 from the model's arrays,
    offsets included."""
    backend = create_backend(model, kind)
    rng = np.random.default_rng(5)
    template = np.asarray(model["v_template"], np.float64)
    directions = np.asarray(model["shapedirs"], np.float64)  # (V, 3, 400)
    for use_offsets in (False, True):
        shape, expression, pose = random_head(rng)
        offsets = rng.normal(size=(5023, 3)) * 0.002 if use_offsets else None
        v_shaped = template + directions @ np.concatenate([shape, expression])
        if offsets is not None:
            v_shaped += offsets
        skinning = backend.skinning(shape, expression, *split(pose), offsets=offsets)
        assert skinning.blended.shape == (4, 5023, 3) and skinning.pose_offsets.shape == (5023, 3)
        v = v_shaped + skinning.pose_offsets
        columns = skinning.blended.astype(np.float64)
        vertices = v + sum(v[:, axis : axis + 1] * columns[axis] for axis in range(3)) + columns[3] + skinning.transl
        g, n, j, e, t = split(pose)
        want = reference.run(
            shape_params=shape, expression_params=expression, global_pose=g, neck_pose=n, jaw_pose=j,
            eye_pose=e, transl=t, offsets=offsets,
        ).vertices.numpy()
        assert np.abs(vertices - want).max() < 2e-6, use_offsets


@pytest.mark.parametrize("kind", KINDS)
def test_zero_parameters_give_the_template_exactly(model: dict, kind: str) -> None:
    backend = create_backend(model, kind)
    template = model["v_template"].astype(np.float32)
    v_shaped = backend.shaped(np.zeros(300), np.zeros(100))
    assert np.array_equal(v_shaped, template)
    vertices, _ = backend.posed(v_shaped, np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(6), np.zeros(3))
    assert np.array_equal(vertices, template)
    # back to zero after slider moves: exact again
    backend.shaped(np.eye(300)[4], np.zeros(100))
    assert np.array_equal(backend.shaped(np.zeros(300), np.zeros(100)), template)


@pytest.mark.parametrize("kind", KINDS)
def test_slider_drags_update_incrementally_and_stay_exact(model: dict, reference: FLAME, kind: str) -> None:
    backend = create_backend(model, kind)
    rng = np.random.default_rng(1)
    shape, expression, _ = random_head(rng)
    backend.shaped(shape, expression)
    for step in range(300):  # past FULL_UPDATE_EVERY, so a full product happens in between
        shape[step % 7] += 0.01
        expression[step % 5] -= 0.02
        v_shaped = backend.shaped(shape, expression)
    want = reference.shape_blend(shape, expression).numpy()
    assert np.abs(v_shaped - want).max() <= 2e-6


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_fresh_arrays(model: dict, kind: str) -> None:
    backend = create_backend(model, kind)
    v_shaped = backend.shaped(np.ones(300) * 0.1, None)
    first, _ = backend.posed(v_shaped, [0.1, 0, 0])
    kept = first.copy()
    second, _ = backend.posed(v_shaped, [0.0, 0.4, 0])
    assert np.array_equal(first, kept) and not np.array_equal(first, second)
    assert np.array_equal(backend.shaped(np.ones(300) * 0.1, None), v_shaped)


def test_fewer_components_and_bad_values(model: dict) -> None:
    backend = create_backend(model, "numpy", n_shape=100, n_expression=50)
    assert backend.n_shape == 100 and backend.n_expression == 50
    with pytest.raises(FlameParameterError, match="shape: at most 100"):
        backend.shaped(np.zeros(300), None)
    with pytest.raises(FlameParameterError, match="eye_pose: expected 6"):
        backend.posed(backend.shaped(None, None), eye_pose=np.zeros(3))
    with pytest.raises(FlameParameterError, match="jaw_pose holds NaN"):
        backend.posed(backend.shaped(None, None), jaw_pose=[0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="backend kind 'gpu'"):
        create_backend(model, "gpu")


@pytest.mark.parametrize("kind", KINDS)
def test_no_components_still_poses_exactly(model: dict, reference: FLAME, kind: str) -> None:
    # A head imported without shape keys (pose only) uses a backend with no blend directions.
    backend = create_backend(model, kind, n_shape=0, n_expression=0)
    pose = np.random.default_rng(5).uniform(-0.5, 0.5, 18)
    vertices, joints = backend.posed(backend.shaped(None, None), *split(pose))
    want_vertices, want_joints = expected(reference, np.zeros(0), np.zeros(0), pose)
    assert np.abs(vertices - want_vertices).max() < 2e-5
    assert np.abs(joints - want_joints).max() < 2e-5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_kind_without_cuda_is_a_clear_error(model: dict) -> None:
    with pytest.raises(RuntimeError, match="no CUDA"):
        create_backend(model, "torch_cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_backend_equals_cpu(model: dict) -> None:
    cpu, cuda = create_backend(model, "torch_cpu"), create_backend(model, "torch_cuda")
    rng = np.random.default_rng(2)
    shape, expression, pose = random_head(rng)
    a, _ = cpu.posed(cpu.shaped(shape, expression), *split(pose))
    b, _ = cuda.posed(cuda.shaped(shape, expression), *split(pose))
    assert np.abs(a - b).max() <= 1e-5


def test_core_works_without_torch(tmp_path: Path) -> None:
    """``import torch`` fails in this child process, as in a stock Blender."""
    script = textwrap.dedent(
        """
        import sys

        class RefuseTorch:  # any import of torch or a torch submodule now raises ImportError
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError(f"{name} is not importable in this test")
                return None

        sys.meta_path.insert(0, RefuseTorch())
        import numpy as np
        import flame_blender.core as core
        from flame_blender.core.model.backend import create_backend
        from flame_blender.core.synthetic import synthetic_flame_model
        model = synthetic_flame_model(0)
        numpy_flame = core.FlameNumpy(model)
        out = numpy_flame(jaw_pose=np.array([0.2, 0.0, 0.0]))
        assert out.shape == (5023, 3) and out.dtype == np.float64
        assert np.array_equal(numpy_flame(), model["v_template"])
        backend = create_backend(model, kind="auto")
        assert backend.name == "NumPy", backend.name
        vertices, joints = backend.posed(backend.shaped(np.zeros(300), np.zeros(100)), jaw_pose=[0.2, 0, 0])
        assert np.abs(vertices - out).max() < 2e-5
        assert core.camera2pixel(np.array([0.0, 0.0, 1.0]), 500, 500, 256, 256).tolist() == [256.0, 256.0]
        try:
            core.FLAME
        except ImportError:
            pass
        else:
            raise AssertionError("FLAME should need torch")
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch was imported"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
