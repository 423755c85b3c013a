"""Files other tools write that the readers must accept: VHAP's landmark embedding with eyes,
MICA's template OBJ without UVs, FLAME-topology PLY meshes (trimesh, plyfile), a Python 3
protocol-2 pickle of an empty array; and uint64 indices that must not wrap.

The PLY and OBJ writers below follow trimesh 5.2 (``exchange/ply.py``, ``exchange/obj.py``) and
plyfile 1.1 byte for byte: the header lines they emit, ``%.8f`` ASCII floats (trimesh),
``<f4`` vertices and ``uchar int`` face lists. Checked equal to the bytes trimesh 5.2.0 and
plyfile 1.1.5 write; where trimesh is installed the test compares again.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from file_errors import assert_file_error

from flame_blender.core.io.landmark_io import (
    load_deca_landmark_embedding,
    load_vhap_landmark_embedding,
)
from flame_blender.core.io.model_io import load_flame_masks
from flame_blender.core.io.numpy_files import load_npy
from flame_blender.core.io.ply_io import load_ply_mesh
from flame_blender.core.io.safe_pickle import load_pickle_bytes
from flame_blender.core.io.texture_io import load_template_mesh
from flame_blender.core.synthetic import synthetic_flame_model


@pytest.fixture(scope="module")
def head() -> tuple[np.ndarray, np.ndarray]:
    model = synthetic_flame_model(0)
    return model["v_template"], model["f"].astype(np.int64)


# --- writers, as the other tools write -----------------------------------------------------


def trimesh_ply(vertices: np.ndarray, faces: np.ndarray, binary: bool) -> bytes:
    header = (
        "ply\n"
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0\n"
        "comment https://github.com/mikedh/trimesh\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\n"
        "property list uchar int vertex_indices\n"
        "end_header\n"
    ).encode()
    if binary:
        face_rows = np.zeros(len(faces), dtype=[("n", "<u1"), ("i", "<i4", (3,))])
        face_rows["n"], face_rows["i"] = 3, faces
        return header + vertices.astype("<f4").tobytes() + face_rows.tobytes()
    lines = [" ".join(f"{x:.8f}" for x in row) for row in vertices.astype(np.float32)]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    return header + ("\n".join(lines) + "\n").encode()


def plyfile_ply(vertices: np.ndarray, faces: np.ndarray, binary: bool) -> bytes:
    """plyfile's PlyData.write of a vertex table (x, y, z float, nx, ny, nz float, red, green,
    blue uchar) and a face table (vertex_indices list uchar int)."""
    header = (
        f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    rows = np.zeros(len(vertices), dtype=[("p", "<f4", (3,)), ("n", "<f4", (3,)), ("c", "u1", (3,))])
    rows["p"], rows["n"], rows["c"] = vertices, [0, 0, 1], [200, 150, 120]
    if binary:
        face_rows = np.zeros(len(faces), dtype=[("n", "<u1"), ("i", "<i4", (3,))])
        face_rows["n"], face_rows["i"] = 3, faces
        return header + rows.tobytes() + face_rows.tobytes()
    # plyfile writes ASCII rows with np.savetxt, floats as '%.18g'
    lines = [" ".join(f"{float(x):.18g}" for x in (*r["p"], *r["n"])) + " " + " ".join(map(str, r["c"]))
             for r in rows]  # fmt: skip
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    return header + ("\n".join(lines) + "\n").encode()


def trimesh_obj(vertices: np.ndarray, faces: np.ndarray, normals: bool) -> str:
    """trimesh's OBJ export without UVs: ``v`` (and ``vn``) with %.8f, ``f a b c`` or
    ``f a//a b//b c//c``."""
    lines = ["# https://github.com/mikedh/trimesh"]
    lines += [f"v {x:.8f} {y:.8f} {z:.8f}" for x, y, z in vertices]
    if normals:
        lines += ["vn 0.00000000 0.00000000 1.00000000" for _ in vertices]
        lines += [f"f {a + 1}//{a + 1} {b + 1}//{b + 1} {c + 1}//{c + 1}" for a, b, c in faces]
    else:
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


# --- PLY --------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [trimesh_ply, plyfile_ply])
@pytest.mark.parametrize("binary", [True, False])
def test_ply_of_flame_topology(tmp_path: Path, head, writer, binary: bool) -> None:
    vertices, faces = head
    path = tmp_path / "FLAME_sample.ply"
    path.write_bytes(writer(vertices, faces, binary))
    mesh = load_ply_mesh(path)
    expected = vertices.astype(np.float32).astype(np.float64)
    assert mesh.vertices.shape == (5023, 3) and mesh.faces.shape == (9976, 3)
    if binary:
        assert np.array_equal(mesh.vertices, expected)
    else:
        assert np.allclose(mesh.vertices, expected, rtol=0, atol=1e-8)  # trimesh: %.8f
    assert np.array_equal(mesh.faces, faces)
    assert mesh.uvs.shape == (0, 2) and mesh.uv_faces.shape == (0, 3) and not mesh.has_uvs


@pytest.mark.parametrize("binary", [True, False])
def test_ply_written_by_the_real_tools(tmp_path: Path, head, binary: bool) -> None:
    trimesh = pytest.importorskip("trimesh")
    vertices, faces = head
    exported = trimesh.Trimesh(vertices, faces, process=False).export(
        file_type="ply", encoding="binary" if binary else "ascii"
    )
    assert exported == trimesh_ply(vertices, faces, binary)
    path = tmp_path / "t.ply"
    path.write_bytes(exported)
    assert np.array_equal(load_ply_mesh(path).faces, faces)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d[: len(d) - 7], ["truncated"]),
        (lambda d: d + b"\0", ["after its last element"]),
        (lambda d: d.replace(b"element face 9976", b"element face 9977"), ["face"]),
        (lambda d: d.replace(b"property float z", b"property float w"), ["no property z"]),
        (lambda d: d.replace(b"uchar int", b"uchar quad"), ["header line"]),
        (lambda d: d.replace(b"format binary_little_endian", b"format binary_big_endian"),
         ["binary_little_endian"]),  # fmt: skip
        (lambda d: d.replace(b"ply\n", b"plx\n", 1), ["not a PLY"]),
    ],
)
def test_bad_ply(tmp_path: Path, head, change, words) -> None:
    vertices, faces = head
    path = tmp_path / "bad.ply"
    path.write_bytes(change(trimesh_ply(vertices, faces, True)))
    assert_file_error(lambda: load_ply_mesh(path), path, words)


def test_ply_face_index_out_of_range_and_quads(tmp_path: Path) -> None:
    vertices = np.eye(3)
    path = tmp_path / "bad.ply"
    path.write_bytes(trimesh_ply(vertices, np.array([[0, 1, 3]]), binary=False))
    assert_file_error(lambda: load_ply_mesh(path), path, ["out of range", "0..2"])
    path.write_bytes(trimesh_ply(vertices, np.array([[0, 1, 2]]), binary=False)
                     .replace(b"3 0 1 2", b"4 0 1 2 2"))  # fmt: skip
    assert_file_error(lambda: load_ply_mesh(path), path, ["triangles"])


# --- MICA's OBJ without UVs ----------------------------------------------------------------------


@pytest.mark.parametrize("normals", [False, True])
def test_obj_without_uvs(tmp_path: Path, head, normals: bool) -> None:
    vertices, faces = head
    path = tmp_path / "head_template.obj"
    path.write_text(trimesh_obj(vertices, faces, normals))
    mesh = load_template_mesh(path)
    assert np.allclose(mesh.vertices, vertices, rtol=0, atol=5e-9)
    assert np.array_equal(mesh.faces, faces)
    assert mesh.uvs.shape == (0, 2) and mesh.uv_faces.shape == (0, 3) and not mesh.has_uvs


# --- VHAP's landmark_embedding_with_eyes.npy ----------------------------------------------------


def _vhap_content(rng: np.random.Generator) -> dict:
    """The keys VHAP/GaussianAvatars' file holds: DECA's layout, 53 static and 70 full points
    (68 iBUG + 2 pupils)."""
    return {
        "static_lmk_faces_idx": rng.integers(0, 9976, 53).astype(np.int64),
        "static_lmk_bary_coords": rng.dirichlet(np.ones(3), 53).astype(np.float32),
        "dynamic_lmk_faces_idx": rng.integers(0, 9976, (79, 17)).astype(np.int64),
        "dynamic_lmk_bary_coords": rng.dirichlet(np.ones(3), (79, 17)).astype(np.float32),
        "full_lmk_faces_idx": rng.integers(0, 9976, (1, 70)).astype(np.int64),
        "full_lmk_bary_coords": rng.dirichlet(np.ones(3), (1, 70)).astype(np.float32),
    }


def test_vhap_embedding_with_eyes(tmp_path: Path) -> None:
    content = _vhap_content(np.random.default_rng(3))
    path = tmp_path / "landmark_embedding_with_eyes.npy"
    np.save(path, content, allow_pickle=True)  # how a dict of arrays ends up in a .npy
    # the reference: what VHAP itself does, np.load(...)[()] (our own file: safe to load)
    reference = np.load(path, allow_pickle=True, encoding="latin1")[()]
    found = load_vhap_landmark_embedding(tmp_path)
    assert set(found) == {"full_70", "static_53", "dynamic_contour"}
    assert np.array_equal(found["full_70"].face_indices, reference["full_lmk_faces_idx"][0])
    assert np.array_equal(found["full_70"].barycentric,
                          reference["full_lmk_bary_coords"][0].astype(np.float64))  # fmt: skip
    assert np.array_equal(found["static_53"].face_indices, reference["static_lmk_faces_idx"])
    assert found["dynamic_contour"].face_indices.shape == (79, 17)
    # DECA's reader refuses it clearly: 53 static points are not DECA's 51
    assert_file_error(lambda: load_deca_landmark_embedding(path), path, ["(51,)"])


def test_vhap_embedding_with_torch_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    content = {k: torch.from_numpy(v) for k, v in _vhap_content(np.random.default_rng(4)).items()}
    path = tmp_path / "landmark_embedding_with_eyes.npy"
    np.save(path, content, allow_pickle=True)
    found = load_vhap_landmark_embedding(path)
    assert np.array_equal(found["full_70"].face_indices, content["full_lmk_faces_idx"][0].numpy())


def test_vhap_only_full_keys_and_wrong_count(tmp_path: Path) -> None:
    content = _vhap_content(np.random.default_rng(5))
    path = tmp_path / "landmark_embedding_with_eyes.npy"
    np.save(path, {k: v for k, v in content.items() if k.startswith("full")}, allow_pickle=True)
    assert set(load_vhap_landmark_embedding(path)) == {"full_70"}
    content["full_lmk_faces_idx"] = content["full_lmk_faces_idx"][:, :60]
    content["full_lmk_bary_coords"] = content["full_lmk_bary_coords"][:, :60]
    np.save(path, content, allow_pickle=True)
    assert_file_error(lambda: load_vhap_landmark_embedding(path), path, ["(1, 70)"])


# --- the false refusal and the wrap-around ---------------------------------------------------


def test_python3_protocol2_pickle_with_an_empty_array() -> None:
    content = {"empty": np.zeros((0, 3)), "full": np.arange(4, dtype=np.uint32),
               "text": b"", "flag": np.bool_(True)}  # fmt: skip
    data = pickle.dumps(content, protocol=2)  # the stock Python 3 pickler
    assert b"c__builtin__\nbytes\n" in data
    loaded = load_pickle_bytes(data, "p2.pkl")
    assert loaded["empty"].shape == (0, 3) and loaded["empty"].dtype == np.float64
    assert np.array_equal(loaded["full"], content["full"]) and loaded["full"].dtype == np.uint32
    assert loaded["text"] == b"" and loaded["flag"] == np.bool_(True)


def test_npy_object_array_written_by_numpy_loads(tmp_path: Path) -> None:
    holder = {"a": np.arange(6.0).reshape(2, 3), "b": [np.zeros(0, dtype=np.int64)]}
    path = tmp_path / "x.npy"
    np.save(path, holder, allow_pickle=True)
    loaded = load_npy(path)
    assert np.array_equal(loaded["a"], holder["a"]) and loaded["b"][0].shape == (0,)


def test_face_index_2_64_minus_1_does_not_wrap(tmp_path: Path) -> None:
    from flame_blender.core.io.landmark_io import load_static_landmark_embedding

    faces = np.full(51, 2**64 - 1, dtype=np.uint64)
    path = tmp_path / "flame_static_embedding.pkl"
    path.write_bytes(pickle.dumps({"lmk_face_idx": faces, "lmk_b_coords": np.ones((51, 3)) / 3}))
    assert_file_error(lambda: load_static_landmark_embedding(path), path, ["2**63-1"])
    masks = tmp_path / "FLAME_masks.pkl"
    masks.write_bytes(pickle.dumps({"lips": np.array([1, 2**64 - 1], dtype=np.uint64)}))
    assert_file_error(lambda: load_flame_masks(masks), masks, ["'lips'", "2**63-1"])


def test_big_endian_arrays_load_as_their_values() -> None:
    big = np.arange(5, dtype=">f8")
    loaded = load_pickle_bytes(pickle.dumps({"v": big}, protocol=2))
    assert np.array_equal(loaded["v"], big) and loaded["v"].dtype == np.dtype(">f8")
    stream = io.BytesIO()
    np.save(stream, big)
    assert stream.getvalue()[:6] == b"\x93NUMPY"


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_written_by_numpy_loads_bit_for_bit(tmp_path: Path, save) -> None:
    from flame_blender.core.io.numpy_files import load_npz

    rng = np.random.default_rng(7)
    arrays = {
        "basis": rng.normal(size=(16, 16, 3, 5)).astype(np.float32),
        "zeros": np.zeros((256, 256, 3)),  # deflates ~1000:1, allowed below 64 MiB
        "fortran": np.asfortranarray(rng.integers(0, 9, (7, 3)).astype(np.uint32)),
        "big_endian": np.arange(4, dtype=">i8"),
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.int64),
    }
    path = tmp_path / "a.npz"
    save(path, **arrays)
    loaded = load_npz(path)
    for key, array in arrays.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape, key
        assert loaded[key].tobytes(order="A") == array.tobytes(order="A"), key
        assert loaded[key].flags.f_contiguous == array.flags.f_contiguous, key
    assert set(load_npz(path, only=("zeros",))) == {"zeros"}


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0), None])
def test_npy_written_by_numpy_loads_bit_for_bit(tmp_path: Path, version) -> None:
    array = np.asfortranarray(np.random.default_rng(8).normal(size=(5, 4)).astype(">f4"))
    path = tmp_path / "a.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array(handle, array, version=version)
    loaded = load_npy(path)
    assert loaded.dtype == array.dtype and loaded.tobytes(order="A") == array.tobytes(order="A")
    assert loaded.flags.f_contiguous and np.array_equal(loaded, array)
    path.write_bytes(path.read_bytes() + b"\0")
    assert_file_error(lambda: load_npy(path), path, ["bytes follow"])
