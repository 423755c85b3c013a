"""The FLAME forward pass (torch module and numpy) against an independent implementation.

``reference_flame`` below is written from the formulas of the FLAME paper and the format notes (docs/forward-pass.md, "Steps") in plain
numpy, the textbook way (4x4 homogeneous transforms, ``sum_j w_j A_j`` applied to ``[v, 1]``,
Rodrigues with a normalised axis), and calls nothing from the package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_reference import (  # noqa: F401 - other test modules import them from here too
    V,
    random_model,
    random_parameters,
    random_rotation_vectors,
    reference_flame,
    rodrigues_reference,
)

from flame_blender.core.errors import FlameParameterError
from flame_blender.core.model.flame_numpy import FlameNumpy
from flame_blender.core.model.flame_torch import FLAME


@pytest.fixture(scope="module")
def model() -> dict:
    return random_model()


@pytest.fixture(scope="module")
def flame64(model: dict) -> FLAME:
    return FLAME(model, dtype=torch.float64)


@pytest.fixture(scope="module")
def flame32(model: dict) -> FLAME:
    return FLAME(model)


def as_torch(p: dict, requires_grad: bool = False, dtype: torch.dtype = torch.float64) -> dict:
    return {k: torch.tensor(v, dtype=dtype, requires_grad=requires_grad) for k, v in p.items()}


# -- exactness ---------------------------------------------------------------------------------


def test_no_parameters_give_the_template_exactly(model: dict, flame32: FLAME, flame64: FLAME) -> None:
    assert torch.equal(flame64(), torch.from_numpy(model["v_template"]))
    assert torch.equal(flame32(), torch.from_numpy(model["v_template"].astype(np.float32)))
    assert np.array_equal(FlameNumpy(model)(), model["v_template"])


@pytest.mark.parametrize("requires_grad", [False, True])
def test_explicit_zero_parameters_give_the_template_bit_for_bit(model: dict, flame32: FLAME, flame64: FLAME, requires_grad: bool) -> None:
    zeros = {
        "shape_params": np.zeros(300),
        "expression_params": np.zeros(100),
        "global_pose": np.zeros(3),
        "neck_pose": np.zeros(3),
        "jaw_pose": np.zeros(3),
        "eye_pose": np.zeros(6),
        "transl": np.zeros(3),
    }
    out64 = flame64(**as_torch(zeros, requires_grad))
    assert torch.equal(out64, torch.from_numpy(model["v_template"]))
    out32 = flame32(**as_torch(zeros, requires_grad, torch.float32))
    assert torch.equal(out32, torch.from_numpy(model["v_template"].astype(np.float32)))
    assert np.array_equal(FlameNumpy(model)(**zeros), model["v_template"])
    batched = flame64(**{k: torch.zeros(3, len(v), dtype=torch.float64) for k, v in zeros.items()})
    assert torch.equal(batched, torch.from_numpy(model["v_template"]).expand(3, -1, -1))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("counts", [(300, 100), (100, 50)], ids=["full", "deca_100_50"])
def test_float64_matches_the_independent_implementation(model: dict, requires_grad: bool, counts: tuple[int, int]) -> None:
    flame = FLAME(model, n_shape=counts[0], n_expression=counts[1], dtype=torch.float64)
    rng = np.random.default_rng(1)
    for _ in range(4):
        p = random_parameters(rng, *counts)
        expected_vertices, expected_joints = reference_flame(model, p)
        out = flame.run(**as_torch(p, requires_grad))
        assert np.abs(out.vertices.detach().numpy() - expected_vertices).max() <= 1e-9
        assert np.abs(out.joints.detach().numpy() - expected_joints).max() <= 1e-9


@pytest.mark.parametrize("requires_grad", [False, True], ids=["inference", "autograd"])
def test_float32_matches_the_independent_implementation(model: dict, flame32: FLAME, requires_grad: bool) -> None:
    rng = np.random.default_rng(2)
    for _ in range(4):
        p = random_parameters(rng)
        expected, _ = reference_flame(model, p)
        out = flame32(**as_torch(p, requires_grad, torch.float32))
        assert out.dtype == torch.float32
        assert np.abs(out.detach().numpy().astype(np.float64) - expected).max() <= 2e-5


def test_numpy_backend_matches_the_independent_implementation_and_torch_autograd(model: dict, flame64: FLAME) -> None:
    flame_numpy = FlameNumpy(model)
    rng = np.random.default_rng(3)
    for _ in range(3):
        p = random_parameters(rng)
        expected_vertices, expected_joints = reference_flame(model, p)
        out = flame_numpy.run(**p)
        assert out.vertices.dtype == np.float64
        assert np.abs(out.vertices - expected_vertices).max() <= 1e-9
        assert np.abs(out.joints - expected_joints).max() <= 1e-9
        # with autograd on, the torch module runs torch code throughout (no numpy fast path)
        assert np.abs(out.vertices - flame64(**as_torch(p, requires_grad=True)).detach().numpy()).max() <= 1e-12


def test_batched_equals_per_item_and_unbatched_arguments_are_shared(model: dict, flame64: FLAME) -> None:
    rng = np.random.default_rng(4)
    items = [random_parameters(rng) for _ in range(7)]  # 7: more than one skinning chunk
    batch = {k: np.stack([p[k] for p in items]) for k in items[0]}
    batch["jaw_pose"] = items[0]["jaw_pose"]  # unbatched: shared by every head
    out = flame64(**as_torch(batch))
    numpy_out = FlameNumpy(model)(**batch)
    assert out.shape == (7, V, 3)
    for i, p in enumerate(items):
        single = dict(p, jaw_pose=items[0]["jaw_pose"])
        alone = flame64(**as_torch(single))
        assert alone.shape == (V, 3)
        assert np.abs(out[i].numpy() - alone.numpy()).max() <= 1e-12
        assert np.abs(numpy_out[i] - reference_flame(model, single)[0]).max() <= 1e-9


def test_output_follows_the_input_batching(flame32: FLAME) -> None:
    assert flame32(jaw_pose=torch.zeros(3)).shape == (V, 3)
    assert flame32(jaw_pose=torch.zeros(1, 3)).shape == (1, V, 3)
    assert flame32(shape_params=torch.zeros(2, 10), transl=torch.zeros(3)).shape == (2, V, 3)
    out = flame32.run(eye_pose=torch.zeros(6))
    assert out.vertices.shape == (V, 3) and out.joints.shape == (5, 3)
    assert flame32.faces.dtype == torch.int64 and flame32.faces.shape == (2 * V, 3)


def test_output_never_aliases_model_buffers(model: dict, flame64: FLAME) -> None:
    out = flame64.run()
    out.vertices += 1.0
    out.joints += 1.0
    assert torch.equal(flame64(), torch.from_numpy(model["v_template"]))
    assert torch.allclose(flame64.run().joints, torch.from_numpy(model["J_regressor"] @ model["v_template"]))


def test_shape_blend_and_skin_compose_to_forward(model: dict, flame64: FLAME) -> None:
    rng = np.random.default_rng(5)
    p = as_torch(random_parameters(rng))
    v_shaped = flame64.shape_blend(p["shape_params"], p["expression_params"])
    vertices, joints = flame64.skin(
        v_shaped, p["global_pose"], p["neck_pose"], p["jaw_pose"], p["eye_pose"], p["transl"]
    )
    full = flame64.run(**p)
    assert torch.allclose(vertices, full.vertices, atol=1e-12)
    assert torch.allclose(joints, full.joints, atol=1e-12)
    numpy_model = FlameNumpy(model)
    np_vertices, _ = numpy_model.skin(numpy_model.shape_blend(p["shape_params"].numpy(), p["expression_params"].numpy()), global_pose=p["global_pose"].numpy())
    assert np.abs(np_vertices - flame64.skin(v_shaped, p["global_pose"])[0].numpy()).max() <= 1e-12


def test_accepts_numpy_lists_and_other_dtypes(flame32: FLAME, flame64: FLAME) -> None:
    a = flame32(jaw_pose=[0.1, 0.0, 0.0])
    b = flame32(jaw_pose=np.array([0.1, 0.0, 0.0]))
    c = flame32(jaw_pose=torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert flame64(jaw_pose=[0.1, 0, 0]).dtype == torch.float64


# -- errors -------------------------------------------------------------------------------------


def test_more_components_than_the_model_holds_is_a_clear_error(model: dict) -> None:
    with pytest.raises(FlameParameterError, match="n_shape=301.*only 300"):
        FLAME(model, n_shape=301)
    with pytest.raises(FlameParameterError, match="n_expression=101.*only 100"):
        FlameNumpy(model, n_expression=101)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"shape_params": np.zeros(301)}, "shape_params: expected at most 300"),
        ({"expression_params": np.zeros((2, 101))}, "expression_params: expected at most 100"),
        ({"eye_pose": np.zeros(3)}, "eye_pose: expected 6"),
        ({"jaw_pose": np.zeros((2, 2, 3))}, r"jaw_pose: expected shape \(3,\) or \(B, 3\)"),
        ({"global_pose": np.zeros((2, 3)), "transl": np.zeros((3, 3))}, "batch size 3 does not match"),
        ({"neck_pose": np.array([0.0, np.nan, 0.0])}, "neck_pose holds NaN or inf"),
        ({"shape_params": np.array([np.inf])}, "shape_params holds NaN or inf"),
        ({"transl": "abc"}, "transl: not an array of numbers"),
    ],
)
def test_bad_parameters_are_clear_errors(flame32: FLAME, model: dict, arguments: dict, message: str) -> None:
    with pytest.raises(FlameParameterError, match=message):
        flame32(**arguments)
    with pytest.raises(FlameParameterError, match=message):
        FlameNumpy(model)(**arguments)


def test_fewer_components_in_the_module_reject_more_in_the_call(model: dict) -> None:
    flame = FLAME(model, n_shape=100, n_expression=50)
    assert flame(shape_params=torch.zeros(100), expression_params=torch.zeros(50)).shape == (V, 3)
    with pytest.raises(FlameParameterError, match="pass n_shape/n_expression"):
        flame(shape_params=torch.zeros(300))


# -- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pose_scale", [0.0, 1.0], ids=["at_rest", "posed"])
def test_gradients_reach_every_parameter(flame32: FLAME, pose_scale: float) -> None:
    rng = np.random.default_rng(6)
    p = random_parameters(rng)
    for name in ("global_pose", "neck_pose", "jaw_pose", "eye_pose"):
        p[name] = p[name] * pose_scale
    tensors = as_torch(p, requires_grad=True, dtype=torch.float32)
    out = flame32.run(**tensors)
    weights = torch.from_numpy(rng.normal(size=(V, 3)).astype(np.float32))
    (out.vertices * weights).sum().backward()
    for name, tensor in tensors.items():
        assert tensor.grad is not None, name
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_gradcheck_float64_on_a_small_model() -> None:
    small = random_model(seed=7, n_vertices=40, n_directions=310)
    flame = FLAME(small, n_shape=4, n_expression=3, dtype=torch.float64, landmarks=False)
    rng = np.random.default_rng(8)
    inputs = tuple(
        torch.tensor(rng.normal(size=n) * scale, dtype=torch.float64, requires_grad=True)
        for n, scale in ((4, 1.0), (3, 1.0), (3, 0.7), (3, 0.7), (3, 0.7), (6, 0.7), (3, 1.0))
    )

    def vertices(*args: torch.Tensor) -> torch.Tensor:
        return flame(*args)

    assert torch.autograd.gradcheck(vertices, inputs, eps=1e-6, atol=1e-7)
    at_rest = tuple(torch.zeros_like(t).requires_grad_(True) for t in inputs)
    assert torch.autograd.gradcheck(vertices, at_rest, eps=1e-6, atol=1e-7)


# -- devices --------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_equals_cpu(model: dict, flame64: FLAME) -> None:
    cuda = FLAME(model, dtype=torch.float64, device="cuda")
    rng = np.random.default_rng(9)
    batch = {k: np.stack([random_parameters(rng)[k] for _ in range(5)]) for k in random_parameters(rng)}
    out = cuda(**{k: torch.tensor(v, device="cuda") for k, v in batch.items()})
    assert out.device.type == "cuda"
    assert np.abs(out.cpu().numpy() - flame64(**as_torch(batch)).numpy()).max() <= 1e-10


def test_numpy_float32_and_module_converted_after_construction(model: dict) -> None:
    rng = np.random.default_rng(10)
    p = random_parameters(rng)
    expected, _ = reference_flame(model, p)
    numpy32 = FlameNumpy(model, dtype=np.float32)(**p)
    assert numpy32.dtype == np.float32
    assert np.abs(numpy32.astype(np.float64) - expected).max() <= 2e-5
    converted = FLAME(model).to(torch.float64)  # buffers were rounded to float32 when built
    out = converted(**as_torch(p))
    assert out.dtype == torch.float64
    assert np.abs(out.numpy() - expected).max() <= 2e-6
