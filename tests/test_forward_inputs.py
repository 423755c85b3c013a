"""The one forward pass (core/model/lbs.py) and the new inputs, in every backend, against independent code.

References: ``reference_flame`` of test_forward.py (the textbook 4x4 formulas, nothing from the
package), smplx's FLAME (installed for the benchmarks), and for the teeth a model extended by this
file's own reading of VHAP's ``add_teeth`` (written per vertex, not with the package's arrays).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from flame_reference import teeth_model_by_hand
from io_fakes import FakeCscNew, dumps
from test_forward import V, as_torch, random_model, random_parameters, reference_flame

from flame_blender.core.errors import FlameFileError, FlameParameterError
from flame_blender.core.io.model_io import load_flame
from flame_blender.core.model import lbs
from flame_blender.core.model.backend import create_backend
from flame_blender.core.model.flame_numpy import FlameNumpy
from flame_blender.core.model.flame_torch import FLAME

PARENTS = [-1, 0, 1, 1, 1]
STAGES = ("posed", "shaped")


@pytest.fixture(scope="module")
def model() -> dict:
    return random_model(seed=11)


@pytest.fixture(scope="module")
def extra() -> np.ndarray:
    """Two extra blend shapes ``(2, V, 3)``, as metrical-tracker's eyelids would be."""
    return np.random.default_rng(12).normal(size=(2, V, 3)) * 1e-3


def inputs(seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return random_parameters(rng), rng.normal(size=(V, 3)) * 1e-3, rng.normal(size=2)


def textbook_arrays(model: dict, p: dict) -> dict:
    shapedirs = model["shapedirs"]
    directions = np.concatenate([shapedirs[:, :, :300], shapedirs[:, :, 300:400]], axis=2)
    return {
        "v_template": model["v_template"], "shapedirs": directions, "posedirs": model["posedirs"],
        "regressor": model["J_regressor"], "parents": PARENTS, "weights": model["weights"],
        "betas": np.concatenate([p["shape_params"], p["expression_params"]])[None],
        "pose": np.concatenate([p["global_pose"], p["neck_pose"], p["jaw_pose"], p["eye_pose"]]).reshape(1, 5, 3),
        "transl": p["transl"][None],
    }  # fmt: skip


def run_lbs(model: dict, p: dict, offsets, extra, extra_params, stage: str, use_torch: bool) -> np.ndarray:
    arrays = textbook_arrays(model, p)
    arrays.update(offsets=offsets[None], extra_directions=extra.transpose(1, 2, 0), extra_params=extra_params[None])
    if use_torch:
        arrays = {k: v if k == "parents" else torch.tensor(v, dtype=torch.float64) for k, v in arrays.items()}
    vertices, _, _ = lbs.lbs(**arrays, extra_stage=stage)
    return np.asarray(vertices[0].detach().numpy() if use_torch else vertices[0])


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("kind", ["lbs_numpy", "lbs_torch", "FLAME", "FLAME_autograd", "FlameNumpy"])
def test_offsets_and_extra_blendshapes_match_the_reference(model, extra, kind: str, stage: str) -> None:
    names = {"l_eyelid": extra[0], "r_eyelid": extra[1]}
    flame = None
    if kind.startswith("FLAME"):
        flame = FLAME(model, dtype=torch.float64, extra_blendshapes=names, extra_stage=stage)
        assert flame.extra_names == ["l_eyelid", "r_eyelid"]
    elif kind == "FlameNumpy":
        flame = FlameNumpy(model, extra_blendshapes=names, extra_stage=stage)
    for seed in (20, 21):
        p, offsets, extra_params = inputs(seed)
        expected, expected_joints = reference_flame(model, p, offsets, extra, extra_params, stage)
        if kind.startswith("lbs"):
            got = run_lbs(model, p, offsets, extra, extra_params, stage, use_torch=kind == "lbs_torch")
        elif kind.startswith("FLAME"):
            arguments = as_torch(dict(p, offsets=offsets, extra_params=extra_params), kind == "FLAME_autograd")
            out = flame.run(**arguments)
            got = out.vertices.detach().numpy()
            assert np.abs(out.joints.detach().numpy() - expected_joints).max() <= 1e-9
        else:
            out = flame.run(**p, offsets=offsets, extra_params=extra_params)
            got = out.vertices
            assert np.abs(out.joints - expected_joints).max() <= 1e-9
        assert np.abs(got - expected).max() <= 1e-9
        # the inputs matter: without them the result moves by more than the tolerance
        assert np.abs(reference_flame(model, p)[0] - expected).max() > 1e-6


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("kind", ["numpy", "torch_cpu"])
def test_single_head_evaluator_takes_the_new_inputs(model, extra, kind: str, stage: str) -> None:
    """The Blender path is float32 by design: within float32 rounding of the reference."""
    backend = create_backend(model, kind, extra_blendshapes={"l_eyelid": extra[0], "r_eyelid": extra[1]}, extra_stage=stage)
    assert backend.extra_names == ["l_eyelid", "r_eyelid"]
    p, offsets, extra_params = inputs(22)
    expected, expected_joints = reference_flame(model, p, offsets, extra, extra_params, stage)
    pose = {k: p[k] for k in ("global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")}
    if stage == "shaped":
        v_shaped = backend.shaped(p["shape_params"], p["expression_params"], extra_params=extra_params, offsets=offsets)
        vertices, joints = backend.posed(v_shaped, **pose)
        with pytest.raises(FlameParameterError, match="shaped"):
            backend.posed(v_shaped, extra_params=extra_params)
    else:
        v_shaped = backend.shaped(p["shape_params"], p["expression_params"], offsets=offsets)
        vertices, joints = backend.posed(v_shaped, **pose, extra_params=extra_params)
        with pytest.raises(FlameParameterError, match="posed"):
            backend.shaped(extra_params=extra_params)
    assert np.abs(vertices - expected).max() <= 2e-5
    assert np.abs(joints - expected_joints).max() <= 2e-5
    # a later call with other offsets is not served from the cache of the previous one
    again = backend.shaped(p["shape_params"], p["expression_params"], **({"extra_params": extra_params} if stage == "shaped" else {}))
    assert np.abs(again - v_shaped).max() > 1e-4


def test_batched_offsets_and_extra_params(model, extra) -> None:
    rng = np.random.default_rng(23)
    items = [inputs(30 + i) for i in range(5)]
    batch = {k: np.stack([p[k] for p, _, _ in items]) for k in items[0][0]}
    offsets = np.stack([o for _, o, _ in items])
    extra_params = np.stack([e for _, _, e in items])
    names = {"l_eyelid": extra[0], "r_eyelid": extra[1]}
    flame = FLAME(model, dtype=torch.float64, extra_blendshapes=names)
    numpy_flame = FlameNumpy(model, extra_blendshapes=names)
    got = flame(**as_torch(dict(batch, offsets=offsets, extra_params=extra_params))).numpy()
    got_numpy = numpy_flame(**batch, offsets=offsets, extra_params=extra_params)
    for i, (p, o, e) in enumerate(items):
        expected, _ = reference_flame(model, p, o, extra, e)
        assert np.abs(got[i] - expected).max() <= 1e-9
        assert np.abs(got_numpy[i] - expected).max() <= 1e-9
    shared = rng.normal(size=(V, 3)) * 1e-3  # (V, 3) offsets are shared by every head
    got = numpy_flame(**batch, offsets=shared)
    assert np.abs(got[3] - reference_flame(model, items[3][0], shared)[0]).max() <= 1e-9


def test_bad_new_inputs_are_clear_errors(model, extra) -> None:
    flame = FLAME(model, extra_blendshapes={"l_eyelid": extra[0], "r_eyelid": extra[1]})
    with pytest.raises(FlameParameterError, match="offsets"):
        flame(offsets=np.zeros((V - 1, 3)))
    with pytest.raises(FlameParameterError, match="offsets"):
        flame(offsets=np.zeros((2, V, 3)), shape_params=np.zeros((3, 300)))
    with pytest.raises(FlameParameterError, match="extra_params"):
        flame(extra_params=np.zeros(3))
    with pytest.raises(FlameParameterError, match="no extra blend shapes"):
        FlameNumpy(model)(extra_params=[0.5])
    with pytest.raises(FlameParameterError, match="extra_stage"):
        FLAME(model, extra_stage="skinned")
    with pytest.raises(FlameParameterError, match="NaN"):
        flame(offsets=np.full((V, 3), np.nan))


@pytest.mark.parametrize("stage", STAGES)
def test_gradcheck_offsets_and_extra_params(stage: str) -> None:
    small = random_model(seed=7, n_vertices=40, n_directions=310)
    rng = np.random.default_rng(24)
    shapes = {"a": rng.normal(size=(40, 3)) * 0.1, "b": rng.normal(size=(40, 3)) * 0.1}
    flame = FLAME(small, n_shape=4, n_expression=3, dtype=torch.float64, landmarks=False,
                  extra_blendshapes=shapes, extra_stage=stage)  # fmt: skip
    offsets = torch.tensor(rng.normal(size=(2, 40, 3)) * 0.05, requires_grad=True)
    extra_params = torch.tensor(rng.normal(size=(2, 2)), requires_grad=True)
    pose = torch.tensor(rng.normal(size=(2, 3)) * 0.5, requires_grad=True)

    def vertices(offsets, extra_params, jaw_pose):
        return flame(offsets=offsets, extra_params=extra_params, jaw_pose=jaw_pose, neck_pose=jaw_pose * 0.5)

    assert torch.autograd.gradcheck(vertices, (offsets, extra_params, pose), eps=1e-6, atol=1e-7)


# -- the one implementation against smplx -------------------------------------------------------


def test_lbs_matches_smplx(tmp_path: Path) -> None:
    smplx = pytest.importorskip("smplx")
    model = random_model(seed=13)
    plain = {k: np.asarray(v) for k, v in model.items()}
    with open(tmp_path / "FLAME_NEUTRAL.pkl", "wb") as handle:
        pickle.dump(plain, handle)
    embedding = {"lmk_face_idx": np.zeros(51, dtype=np.uint32), "lmk_b_coords": np.full((51, 3), 1 / 3)}
    with open(tmp_path / "flame_static_embedding.pkl", "wb") as handle:
        pickle.dump(embedding, handle)
    peer = smplx.FLAME(str(tmp_path), num_betas=300, num_expression_coeffs=100, batch_size=3, dtype=torch.float64)
    rng = np.random.default_rng(14)
    items = [random_parameters(rng) for _ in range(3)]
    batch = {k: np.stack([p[k] for p in items]) for k in items[0]}
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in batch.items()}
    expected = peer(betas=t["shape_params"], expression=t["expression_params"], global_orient=t["global_pose"],
                    neck_pose=t["neck_pose"], jaw_pose=t["jaw_pose"], leye_pose=t["eye_pose"][:, :3],
                    reye_pose=t["eye_pose"][:, 3:], transl=t["transl"]).vertices.detach().numpy()  # fmt: skip
    for use_torch in (False, True):
        arrays = textbook_arrays(model, items[0])
        arrays.update(betas=np.concatenate([batch["shape_params"], batch["expression_params"]], axis=1),
                      pose=np.concatenate([batch[k] for k in ("global_pose", "neck_pose", "jaw_pose", "eye_pose")], axis=1).reshape(3, 5, 3),
                      transl=batch["transl"])  # fmt: skip
        if use_torch:
            arrays = {k: v if k == "parents" else torch.tensor(v) for k, v in arrays.items()}
        got = np.asarray(lbs.lbs(**arrays)[0])
        assert np.abs(got - expected).max() <= 1e-7
    assert np.abs(FLAME(model, dtype=torch.float64)(**t).numpy() - expected).max() <= 1e-7


# -- FLAME 2023 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flame2023.pkl", "flame2023_no_jaw.pkl", "generic_model.pkl", "flame2023_open.pkl"])
def test_flame_2023_variants_load_and_pose_exactly(flame_dir: Path, tmp_path: Path, name: str) -> None:
    if name == "flame2023_open.pkl":  # a Python 3 pickle of plain arrays, as FLAME 2023 Open is stored
        source = load_flame(flame_dir / "flame2023.pkl")
        stored = {k: v for k, v in source.items() if isinstance(v, np.ndarray)}
        stored["J_regressor"] = FakeCscNew(np.asarray(source["J_regressor"]))
        path = tmp_path / name
        path.write_bytes(dumps(stored, protocol=4, py2=False, frombuffer="numpy._core.numeric"))
    else:
        path = flame_dir / name
    model = load_flame(path)
    model = dict(model, J_regressor=np.asarray(getattr(model["J_regressor"], "toarray", lambda: model["J_regressor"])()))
    flame = FLAME(path, dtype=torch.float64)
    numpy_flame = FlameNumpy(path)
    rng = np.random.default_rng(15)
    for _ in range(2):
        p = random_parameters(rng)
        expected, _ = reference_flame(model, p)
        assert np.abs(flame(**as_torch(p)).numpy() - expected).max() <= 1e-9
        assert np.abs(numpy_flame(**p) - expected).max() <= 1e-9
    jaw = {"jaw_pose": np.array([0.3, 0.0, 0.0])}
    moved = np.abs(numpy_flame(**jaw) - numpy_flame()).max(axis=1)
    if name == "flame2023_no_jaw.pkl":  # no skinning weight on the jaw: only pose correctives move
        assert np.abs(model["weights"][:, 2]).max() == 0.0
    else:
        assert moved.max() > 1e-3


# -- VHAP's teeth -------------------------------------------------------------------------------

# VHAP's lip_outside_ring_upper / _lower (vhap/model/flame.py, FlameMask.create_custom_mask)


@pytest.fixture(scope="module")
def head_model(flame_dir: Path) -> dict:
    """The synthetic FLAME (its lip rings are where FLAME's are)."""
    model = load_flame(flame_dir / "generic_model.pkl")
    return dict(model, J_regressor=np.asarray(getattr(model["J_regressor"], "toarray", lambda: model["J_regressor"])()))


def test_teeth_geometry_and_faces(head_model: dict) -> None:
    flame = FlameNumpy(head_model, teeth=True)
    rest = flame()
    assert rest.shape == (5143, 3)
    assert np.abs(rest - teeth_model_by_hand(head_model)["v_template"]).max() <= 1e-12
    faces = flame.faces
    assert faces.shape == (9976 + 168, 3)
    teeth = faces[9976:]
    assert teeth.min() == 5023 and teeth.max() == 5142
    corners = rest[teeth]
    assert (np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1) > 1e-10).all()
    directed = [tuple(face[[i, (i + 1) % 3]]) for face in teeth for i in range(3)]
    assert len(set(directed)) == len(directed)  # consistent winding: no directed edge twice
    undirected = {}
    for a, b in directed:
        undirected[frozenset((a, b))] = undirected.get(frozenset((a, b)), 0) + 1
    assert max(undirected.values()) == 2  # a surface: every edge borders one or two triangles
    assert sorted(set(teeth.reshape(-1).tolist())) == list(range(5023, 5143))  # every tooth vertex used


@pytest.mark.parametrize("kind", ["FLAME", "FLAME_autograd", "FlameNumpy", "numpy", "torch_cpu"])
def test_teeth_pose_with_the_neck_and_jaw(head_model: dict, kind: str) -> None:
    reference_model = teeth_model_by_hand(head_model)
    rng = np.random.default_rng(16)
    p = random_parameters(rng)
    expected, _ = reference_flame(reference_model, p)
    if kind.startswith("FLAME"):
        got = FLAME(head_model, dtype=torch.float64, teeth=True)(**as_torch(p, kind == "FLAME_autograd")).detach().numpy()
        tolerance = 1e-9
    elif kind == "FlameNumpy":
        got, tolerance = FlameNumpy(head_model, teeth=True)(**p), 1e-9
    else:
        backend = create_backend(head_model, kind, teeth=True)
        pose = {k: p[k] for k in ("global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")}
        got, _ = backend.posed(backend.shaped(p["shape_params"], p["expression_params"]), **pose)
        tolerance = 2e-5
    assert got.shape == (5143, 3)
    assert np.abs(got - expected).max() <= tolerance
    # the head itself is unchanged by the teeth
    assert np.abs(got[:5023] - reference_flame(head_model, p)[0]).max() <= tolerance


def test_teeth_with_extra_blendshapes_of_5023_rows(head_model: dict) -> None:
    extra = np.random.default_rng(17).normal(size=(5023, 3)) * 1e-3
    flame = FlameNumpy(head_model, teeth=True, extra_blendshapes={"l_eyelid": extra})
    out = flame(extra_params=[0.7]) - flame()
    assert np.abs(out[:5023] - 0.7 * extra).max() <= 1e-12 and not out[5023:].any()


# -- extra blend shapes from files ----------------------------------------------------------------


def test_extra_blendshapes_are_found_beside_the_model(flame_dir: Path, tmp_path: Path, head_model: dict) -> None:
    shutil.copy(flame_dir / "generic_model.pkl", tmp_path / "generic_model.pkl")
    (tmp_path / "blendshapes").mkdir()
    rng = np.random.default_rng(18)
    left, right = (rng.normal(size=(5023, 3)).astype(np.float32) * 1e-3 for _ in range(2))
    np.save(tmp_path / "blendshapes" / "r_eyelid.npy", right)  # metrical-tracker's layout
    np.save(tmp_path / "l_eyelid.npy", left)
    flame = FLAME(tmp_path, dtype=torch.float64)
    assert flame.extra_names == ["l_eyelid", "r_eyelid"]
    p = random_parameters(rng)
    expected, _ = reference_flame(head_model, p, extra=np.stack([left, right]).astype(np.float64), extra_params=np.array([0.8, -0.3]))
    assert np.abs(flame(**as_torch(p), extra_params=torch.tensor([0.8, -0.3], dtype=torch.float64)).numpy() - expected).max() <= 1e-9
    assert FLAME(tmp_path, extra_blendshapes=False).extra_names == []
    np.save(tmp_path / "l_eyelid.npy", left[:100])
    with pytest.raises(FlameFileError, match="l_eyelid.npy.*5023"):
        FlameNumpy(tmp_path)
    (tmp_path / "l_eyelid.npy").write_bytes(b"\x93NUMPY truncated")
    with pytest.raises(FlameFileError, match="l_eyelid.npy"):
        FlameNumpy(tmp_path)
