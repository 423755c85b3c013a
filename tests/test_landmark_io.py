"""Landmark embeddings: every file format into one structure, values checked, bad files named."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from file_errors import assert_file_error
from io_fakes import legacy_tensor, npy_object_bytes, write_pickle

from flame_blender.core.errors import FlameFileError
from flame_blender.core.io.landmark_io import (
    LandmarkEmbedding,
    load_deca_landmark_embedding,
    load_dynamic_landmark_embedding,
    load_landmark_embeddings,
    load_mediapipe_landmark_embedding,
    load_static_landmark_embedding,
)

N_FACES = 9976
# FLAME_PyTorch's table order, written out here rather than taken from the module under test.
EXPECTED_YAW_BINS = np.array([0.0, *np.arange(1.0, 40.0), *(-np.arange(1.0, 40.0))])


def _embedding(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    faces = rng.integers(0, N_FACES, size=shape).astype(np.uint32)
    bary = rng.random(shape + (3,))
    return faces, bary / bary.sum(axis=-1, keepdims=True)


@pytest.fixture
def handmade(tmp_path: Path) -> dict:
    """A folder with every embedding file written as the real ones are, and what went in."""
    rng = np.random.default_rng(7)
    truth: dict = {}

    faces, bary = _embedding(rng, (105,))
    ids = rng.choice(468, size=105, replace=False).astype(np.int64)
    np.savez(
        tmp_path / "mediapipe_landmark_embedding.npz",
        lmk_face_idx=faces,
        lmk_b_coords=np.asfortranarray(bary),
        landmark_indices=ids,
    )
    truth["mediapipe"] = (faces, bary, ids)

    for count, name in ((51, "flame_static_embedding.pkl"), (68, "flame_static_embedding_68.pkl")):
        faces, bary = _embedding(rng, (count,))
        write_pickle(tmp_path / name, {"lmk_face_idx": faces, "lmk_b_coords": bary}, protocol=0)
        truth[f"static_{count}"] = (faces, bary)

    faces, bary = _embedding(rng, (79, 17))
    content = {"lmk_face_idx": list(faces), "lmk_b_coords": list(bary)}  # lists, as the file has
    (tmp_path / "flame_dynamic_embedding.npy").write_bytes(npy_object_bytes(content, protocol=2))
    truth["dynamic_contour"] = (faces, bary)

    static_faces, static_bary = _embedding(rng, (51,))
    dyn_faces, dyn_bary = _embedding(rng, (79, 17))
    full_faces, full_bary = _embedding(rng, (68,))
    deca = {
        "static_lmk_faces_idx": static_faces.astype(np.int64),
        "static_lmk_bary_coords": static_bary,
        "dynamic_lmk_faces_idx": legacy_tensor(dyn_faces.astype(np.int64)),
        "dynamic_lmk_bary_coords": legacy_tensor(dyn_bary.astype(np.float32)),
        "full_lmk_faces_idx": full_faces.astype(np.int64)[None],
        "full_lmk_bary_coords": full_bary.astype(np.float32)[None],
    }
    (tmp_path / "landmark_embedding.npy").write_bytes(npy_object_bytes(deca, protocol=3, py2=False))
    truth["deca"] = {
        "static_51": (static_faces, static_bary),
        "dynamic_contour": (dyn_faces, dyn_bary.astype(np.float32)),
        "full_68": (full_faces, full_bary.astype(np.float32)),
    }
    return {"dir": tmp_path, "truth": truth}


def _check(embedding: LandmarkEmbedding, faces: np.ndarray, bary: np.ndarray, name: str) -> None:
    assert embedding.name == name
    assert embedding.face_indices.dtype == np.int64
    assert embedding.barycentric.dtype == np.float64
    assert np.array_equal(embedding.face_indices, faces)
    assert np.array_equal(embedding.barycentric, bary.astype(np.float64))


def test_mediapipe(handmade: dict) -> None:
    faces, bary, ids = handmade["truth"]["mediapipe"]
    embedding = load_mediapipe_landmark_embedding(handmade["dir"])
    _check(embedding, faces, bary, "mediapipe")
    assert embedding.mediapipe_ids.dtype == np.int64 and np.array_equal(
        embedding.mediapipe_ids, ids
    )
    assert embedding.yaw_bins_degrees is None
    assert embedding.source == handmade["dir"] / "mediapipe_landmark_embedding.npz"


@pytest.mark.parametrize("count", [51, 68])
def test_static(handmade: dict, count: int) -> None:
    faces, bary = handmade["truth"][f"static_{count}"]
    embedding = load_static_landmark_embedding(handmade["dir"], count=count)
    _check(embedding, faces, bary, f"static_{count}")
    assert len(embedding) == count
    # the file itself, whatever count says by default
    direct = load_static_landmark_embedding(embedding.source)
    _check(direct, faces, bary, f"static_{count}")


def test_static_count_mismatch(handmade: dict) -> None:
    path = handmade["dir"] / "flame_static_embedding.pkl"
    with pytest.raises(FlameFileError, match="holds 51 landmarks, expected 68"):
        load_static_landmark_embedding(path, count=68)


def test_dynamic_contour(handmade: dict) -> None:
    faces, bary = handmade["truth"]["dynamic_contour"]
    embedding = load_dynamic_landmark_embedding(handmade["dir"])
    _check(embedding, faces, bary, "dynamic_contour")
    assert embedding.face_indices.shape == (79, 17)
    assert embedding.barycentric.shape == (79, 17, 3)
    assert np.array_equal(embedding.yaw_bins_degrees, EXPECTED_YAW_BINS)
    assert embedding.yaw_bins_degrees.dtype == np.float64


def test_deca_without_torch(handmade: dict) -> None:
    result = load_deca_landmark_embedding(handmade["dir"] / "landmark_embedding.npy")
    assert list(result) == ["static_51", "dynamic_contour", "full_68"]
    for name, (faces, bary) in handmade["truth"]["deca"].items():
        _check(result[name], faces, bary, name)
    assert np.array_equal(result["dynamic_contour"].yaw_bins_degrees, EXPECTED_YAW_BINS)


def test_deca_file_is_what_torch_would_load(handmade: dict) -> None:
    """The hand-written DECA file is genuine: torch itself loads it to the same values."""
    pytest.importorskip("torch")
    path = handmade["dir"] / "landmark_embedding.npy"
    reference = np.load(path, allow_pickle=True).item()  # our own file: safe to load plainly
    ours = load_deca_landmark_embedding(path)
    assert np.array_equal(
        reference["dynamic_lmk_faces_idx"].numpy(), ours["dynamic_contour"].face_indices
    )
    assert np.array_equal(
        reference["dynamic_lmk_bary_coords"].numpy(), ours["dynamic_contour"].barycentric
    )


def test_all_embeddings_of_a_folder(handmade: dict) -> None:
    found = load_landmark_embeddings(handmade["dir"])
    assert sorted(found) == ["dynamic_contour", "full_68", "mediapipe", "static_51", "static_68"]
    # FLAME's own files win over DECA's copies; DECA adds full_68
    truth = handmade["truth"]
    _check(found["static_51"], *truth["static_51"], "static_51")
    _check(found["dynamic_contour"], *truth["dynamic_contour"], "dynamic_contour")
    _check(found["full_68"], *truth["deca"]["full_68"], "full_68")


def test_folder_with_only_some_files(handmade: dict) -> None:
    (handmade["dir"] / "flame_static_embedding.pkl").unlink()
    (handmade["dir"] / "mediapipe_landmark_embedding.npz").unlink()
    found = load_landmark_embeddings(handmade["dir"])
    assert sorted(found) == ["dynamic_contour", "full_68", "static_51", "static_68"]
    _check(found["static_51"], *handmade["truth"]["deca"]["static_51"], "static_51")


def test_points_follow_the_barycentric_formula() -> None:
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(2, 10, 3))
    faces = rng.integers(0, 10, size=(6, 3))
    embedding = LandmarkEmbedding("static_51", np.array([4, 0, 4]), rng.random((3, 3)))
    expected = np.zeros((2, 3, 3))
    for b in range(2):
        for point, face in enumerate(embedding.face_indices):
            for k in range(3):
                expected[b, point] += embedding.barycentric[point, k] * vertices[b, faces[face, k]]
    assert np.allclose(embedding.points(vertices, faces), expected)


# --- the synthetic folder ----------------------------------------------------------------------


def test_synthetic_embeddings_load_with_their_values(flame_dir: Path) -> None:
    found = load_landmark_embeddings(flame_dir)
    assert sorted(found) == ["dynamic_contour", "full_68", "mediapipe", "static_51", "static_68"]
    # reference reads: the generator's own files, read plainly (npz without pickles, pkl with
    # the stock unpickler: they are ours)
    with np.load(flame_dir / "mediapipe_landmark_embedding.npz") as npz:
        _check(found["mediapipe"], npz["lmk_face_idx"], npz["lmk_b_coords"], "mediapipe")
        assert np.array_equal(found["mediapipe"].mediapipe_ids, npz["landmark_indices"])
    for count, name in ((51, "flame_static_embedding.pkl"), (68, "flame_static_embedding_68.pkl")):
        with open(flame_dir / name, "rb") as handle:
            written = pickle.load(handle, encoding="latin1")
        _check(found[f"static_{count}"], written["lmk_face_idx"], written["lmk_b_coords"],
               f"static_{count}")  # fmt: skip
    written = np.load(
        flame_dir / "flame_dynamic_embedding.npy", allow_pickle=True, encoding="latin1"
    )
    written = written.item()
    _check(found["dynamic_contour"], np.stack(written["lmk_face_idx"]),
           np.stack(written["lmk_b_coords"]), "dynamic_contour")  # fmt: skip
    for embedding in found.values():
        assert embedding.face_indices.max() < N_FACES
        assert np.allclose(embedding.barycentric.sum(axis=-1), 1.0, atol=1e-5)


def test_synthetic_deca_matches_torch(flame_dir: Path) -> None:
    pytest.importorskip("torch")
    reference = np.load(flame_dir / "landmark_embedding.npy", allow_pickle=True).item()
    ours = load_deca_landmark_embedding(flame_dir)

    def plain(value: object) -> np.ndarray:
        return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

    assert np.array_equal(ours["static_51"].face_indices, plain(reference["static_lmk_faces_idx"]))
    assert np.array_equal(ours["static_51"].barycentric, plain(reference["static_lmk_bary_coords"]))
    assert np.array_equal(
        ours["dynamic_contour"].face_indices, plain(reference["dynamic_lmk_faces_idx"])
    )
    assert np.array_equal(
        ours["dynamic_contour"].barycentric, plain(reference["dynamic_lmk_bary_coords"])
    )
    assert np.array_equal(
        ours["full_68"].face_indices, plain(reference["full_lmk_faces_idx"]).reshape(68)
    )
    assert np.array_equal(
        ours["full_68"].barycentric, plain(reference["full_lmk_bary_coords"]).reshape(68, 3)
    )


def test_every_reader_works_without_torch_chumpy_or_scipy(flame_dir: Path) -> None:
    """In a Python where torch, chumpy and scipy cannot be imported (stock Blender)."""
    import subprocess
    import sys

    script = f"""
import sys
class Refuse:  # any import of these packages (or their submodules) raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "chumpy", "scipy"):
            raise ImportError(name + " is not importable in this test")
        return None
sys.meta_path.insert(0, Refuse())
from flame_blender.core import (load_flame, load_flame_masks, load_landmark_embeddings,
                                load_texture_model, load_template_mesh)
folder = {str(flame_dir)!r}
assert load_flame(folder)["J_regressor"].shape == (5, 5023)
assert len(load_flame_masks(folder)) == 14
found = load_landmark_embeddings(folder)
assert found["full_68"].face_indices.shape == (68,), found
assert load_texture_model(folder + "/FLAME_texture.npz").image().ndim == 3
assert load_template_mesh(folder).faces.shape == (9976, 3)
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "chumpy", "scipy")], "imported"
print("ok")
"""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# --- bad inputs --------------------------------------------------------------------------------


def _static(tmp_path: Path, content: object) -> Path:
    return write_pickle(tmp_path / "flame_static_embedding.pkl", content, protocol=0)


GOOD_FACES = np.arange(51, dtype=np.uint32)
GOOD_BARY = np.full((51, 3), 1 / 3)

BAD_STATIC = {
    "missing_key": ({"lmk_face_idx": GOOD_FACES}, ["'lmk_b_coords'", "no key"]),
    "not_a_dict": ([GOOD_FACES], ["holds a list"]),
    "float_faces": ({"lmk_face_idx": GOOD_FACES * 1.0, "lmk_b_coords": GOOD_BARY}, ["'lmk_face_idx'", "integer"]),
    "bary_shape": ({"lmk_face_idx": GOOD_FACES, "lmk_b_coords": GOOD_BARY[:, :2]}, ["'lmk_b_coords'", "(51, 3)"]),
    "bary_count": ({"lmk_face_idx": GOOD_FACES, "lmk_b_coords": GOOD_BARY[:50]}, ["'lmk_b_coords'", "(51, 3)"]),
    "nan_bary": ({"lmk_face_idx": GOOD_FACES, "lmk_b_coords": GOOD_BARY * np.nan}, ["'lmk_b_coords'", "NaN"]),
    "negative_faces": ({"lmk_face_idx": GOOD_FACES.astype(np.int64) - 1, "lmk_b_coords": GOOD_BARY}, ["negative"]),
    "wrong_count": ({"lmk_face_idx": GOOD_FACES[:50], "lmk_b_coords": GOOD_BARY[:50]}, ["(51,) or (68,)"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_STATIC))
def test_bad_static_embedding(tmp_path: Path, case: str) -> None:
    content, words = BAD_STATIC[case]
    path = _static(tmp_path, content)
    assert_file_error(lambda: load_static_landmark_embedding(tmp_path), path, words)


@pytest.mark.parametrize(
    "setup, words",
    [
        ("missing", ["no such file", "mediapipe_landmark_embedding.npz"]),
        ("not_npz", ["not an .npz"]),
        ("truncated", ["not"]),
        ("pickled_member", ["'landmark_indices'", "pickled"]),
        ("missing_key", ["'landmark_indices'", "no key"]),
        ("float_ids", ["'landmark_indices'", "integers"]),
    ],
)
def test_bad_mediapipe(tmp_path: Path, setup: str, words: list[str]) -> None:
    path = tmp_path / "mediapipe_landmark_embedding.npz"
    faces, bary = np.arange(5, dtype=np.uint32), np.full((5, 3), 1 / 3)
    if setup == "not_npz":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif setup == "truncated":
        np.savez(path, lmk_face_idx=faces, lmk_b_coords=bary, landmark_indices=np.arange(5))
        path.write_bytes(path.read_bytes()[:300])
    elif setup == "pickled_member":
        np.savez(path, lmk_face_idx=faces, lmk_b_coords=bary,
                 landmark_indices=np.array([{"a": 1}], dtype=object))  # fmt: skip
    elif setup == "missing_key":
        np.savez(path, lmk_face_idx=faces, lmk_b_coords=bary)
    elif setup == "float_ids":
        np.savez(path, lmk_face_idx=faces, lmk_b_coords=bary, landmark_indices=np.ones(5))
    assert_file_error(lambda: load_mediapipe_landmark_embedding(path), path, words)


@pytest.mark.parametrize(
    "setup, words",
    [
        ("78_bins", ["'lmk_face_idx'", "(78, 17)", "(79, 17)"]),
        ("ragged", ["'lmk_face_idx'", "different shapes"]),
        ("truncated", ["truncated"]),
        ("plain_array", ["ndarray", "expected a dict"]),
        ("not_npy", ["not a .npy"]),
    ],
)
def test_bad_dynamic(tmp_path: Path, setup: str, words: list[str]) -> None:
    path = tmp_path / "flame_dynamic_embedding.npy"
    faces = [np.arange(17, dtype=np.uint32)] * 79
    bary = [np.full((17, 3), 1 / 3)] * 79
    good = npy_object_bytes({"lmk_face_idx": faces, "lmk_b_coords": bary})
    if setup == "78_bins":
        path.write_bytes(npy_object_bytes({"lmk_face_idx": faces[:78], "lmk_b_coords": bary[:78]}))
    elif setup == "ragged":
        path.write_bytes(npy_object_bytes({"lmk_face_idx": faces[:78] + [np.arange(3)],
                                           "lmk_b_coords": bary}))  # fmt: skip
    elif setup == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif setup == "plain_array":
        np.save(path, np.zeros((79, 17)))
    elif setup == "not_npy":
        path.write_bytes(b"garbage" * 20)
    assert_file_error(lambda: load_dynamic_landmark_embedding(path), path, words)


def test_bad_deca_tensor_shape(tmp_path: Path) -> None:
    path = tmp_path / "landmark_embedding.npy"
    rng = np.random.default_rng(0)
    content = {
        "static_lmk_faces_idx": np.arange(51),
        "static_lmk_bary_coords": np.full((51, 3), 1 / 3),
        "dynamic_lmk_faces_idx": legacy_tensor(np.zeros((79, 16), dtype=np.int64)),
        "dynamic_lmk_bary_coords": legacy_tensor(rng.random((79, 16, 3)).astype(np.float32)),
        "full_lmk_faces_idx": np.arange(68)[None],
        "full_lmk_bary_coords": np.full((1, 68, 3), 1 / 3, dtype=np.float32),
    }
    path.write_bytes(npy_object_bytes(content, protocol=3, py2=False))
    with pytest.raises(FlameFileError, match="'dynamic_lmk_faces_idx' has shape \\(79, 16\\)"):
        load_deca_landmark_embedding(path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FlameFileError, match="no such folder"):
        load_landmark_embeddings(tmp_path / "nope")
