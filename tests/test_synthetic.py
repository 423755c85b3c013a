"""The synthetic FLAME folder: exact formats (opcode level), topology, geometry and values.

Most checks read the files with the standard library and numpy only (a tiny stand-in
unpickler below), so they hold whatever the project's readers do; a few also go through the
project's readers and through real torch.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flame_blender.core.synthetic import (
    FILE_NAMES,
    builtin_flame_dir,
    synthetic_flame_model,
    write_synthetic_flame,
)
from flame_blender.core.synthetic.pickle_writer import legacy_torch_storage_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_KEYS = ["f", "J_regressor", "kintree_table", "J", "bs_style", "weights", "posedirs",
              "v_template", "shapedirs", "bs_type"]
MASK_SIZES = [("eye_region", 751), ("neck", 253), ("left_eyeball", 546), ("right_eyeball", 546),
              ("right_ear", 588), ("right_eye_region", 287), ("forehead", 133), ("lips", 254),
              ("nose", 379), ("scalp", 489), ("boundary", 114), ("face", 1787),
              ("left_ear", 588), ("left_eye_region", 287)]
LEFT_EYEBALL = np.arange(3931, 4477)
RIGHT_EYEBALL = np.arange(4477, 5023)


@pytest.fixture(scope="module")
def model() -> dict:
    return synthetic_flame_model(seed=0)


# --- a minimal reader, independent of the project's ------------------------------------

class _Standin:
    def __setstate__(self, state):
        self.__dict__.update(state)


class _StandinUnpickler(pickle.Unpickler):
    """Maps chumpy's Ch and scipy's csc_matrix to plain attribute holders; numpy as is."""

    allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("__builtin__", "set")}

    def find_class(self, module, name):
        if (module, name) in (("chumpy.ch", "Ch"), ("scipy.sparse.csc", "csc_matrix")):
            return type(name, (_Standin,), {})
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")
        if module == "__builtin__":
            return set
        return super().find_class(module, name)


def _load(path: Path):
    with open(path, "rb") as handle:
        return _StandinUnpickler(handle, encoding="latin1").load()


def _ops(data: bytes) -> list:
    return list(pickletools.genops(data))


def _globals(ops: list) -> set[str]:
    found = set()
    for op, arg, _ in ops:
        if op.name == "GLOBAL":
            found.add(arg)
    return found


def _densify(csc) -> np.ndarray:
    dense = np.zeros(csc._shape)
    for column in range(csc._shape[1]):
        lo, hi = csc.indptr[column], csc.indptr[column + 1]
        dense[csc.indices[lo:hi], column] = csc.data[lo:hi]
    return dense


def _npy_payload(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x93NUMPY\x01\x00"
    header_length = int.from_bytes(data[8:10], "little")
    header = eval(data[10:10 + header_length].decode("latin1"))  # noqa: S307 - a dict literal
    assert (10 + header_length) % 64 == 0
    return header, data[10 + header_length:]


# --- every file, model pickles -----------------------------------------------------------

def test_every_file_of_a_flame_folder_is_written(flame_dir: Path) -> None:
    assert sorted(p.name for p in flame_dir.iterdir()) == sorted(FILE_NAMES)
    assert len(FILE_NAMES) == 13


@pytest.mark.parametrize("name", ["generic_model.pkl", "flame2023.pkl", "flame2023_no_jaw.pkl"])
def test_model_pickle_is_python2_protocol2_with_chumpy_and_scipy(flame_dir: Path,
                                                                 name: str) -> None:
    data = (flame_dir / name).read_bytes()
    ops = _ops(data)
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    assert _globals(ops) == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype",
                             "chumpy.ch Ch", "scipy.sparse.csc csc_matrix", "__builtin__ set"}
    names = Counter(op.name for op, _, _ in ops)
    # Python 2 str only: no unicode, no bytes, no _codecs.encode
    assert names["BINUNICODE"] == 0 and names["SHORT_BINBYTES"] == 0 and names["BINBYTES"] == 0
    assert b"_codecs" not in data
    assert names["NEWOBJ"] == 2 and names["SHORT_BINSTRING"] > 0 and names["BINSTRING"] > 0
    # the top-level dict's keys in Python 2's order
    keys = []
    depth = 0
    for op, arg, _ in ops[2:]:
        if op.name == "MARK":
            depth += 1
        elif op.name in ("TUPLE", "SETITEMS", "APPENDS", "DICT", "LIST"):
            depth -= 1
        if depth == 1 and op.name == "SHORT_BINSTRING" and arg in MODEL_KEYS and arg not in keys:
            keys.append(arg)
    assert keys == MODEL_KEYS


def test_model_pickle_values_round_trip(flame_dir: Path, model: dict) -> None:
    loaded = _load(flame_dir / "generic_model.pkl")
    assert list(loaded) == MODEL_KEYS
    assert np.array_equal(loaded["shapedirs"].x, model["shapedirs"])
    assert loaded["shapedirs"].x.dtype == np.float64
    assert set(vars(loaded["shapedirs"])) >= {"x", "_dirty_vars", "_itr", "_depends_on_deps"}
    regressor = loaded["J_regressor"]
    assert regressor._shape == (5, 5023) and regressor.format == "csc"
    assert regressor.indices.dtype == np.int32 and regressor.indptr.dtype == np.int32
    assert np.array_equal(_densify(regressor), model["J_regressor"])
    for key in ("f", "kintree_table", "J", "weights", "posedirs", "v_template"):
        assert loaded[key].dtype == model[key].dtype, key
        assert np.array_equal(loaded[key], model[key]), key
    assert loaded["bs_style"] == "lbs" and loaded["bs_type"] == "lrotmin"


def test_project_reader_loads_every_model_file(flame_dir: Path, model: dict) -> None:
    from flame_blender.core.io.model_io import load_flame

    for name in ("generic_model.pkl", "flame2023.pkl", "flame2023_no_jaw.pkl"):
        loaded = load_flame(flame_dir / name)
        for key in ("f", "J_regressor", "kintree_table", "J", "posedirs", "v_template",
                    "shapedirs"):
            assert np.array_equal(loaded[key], model[key]), (name, key)
    no_jaw = load_flame(flame_dir / "flame2023_no_jaw.pkl")
    assert np.all(no_jaw["weights"][:, 2] == 0)
    assert np.array_equal(load_flame(flame_dir)["weights"], model["weights"])


def test_in_memory_model_keys_and_dtypes(model: dict) -> None:
    expected = {"v_template": (np.float64, (5023, 3)), "f": (np.uint32, (9976, 3)),
                "shapedirs": (np.float64, (5023, 3, 400)), "posedirs": (np.float64, (5023, 3, 36)),
                "weights": (np.float64, (5023, 5)), "J_regressor": (np.float64, (5, 5023)),
                "J": (np.float64, (5, 3)), "kintree_table": (np.int64, (2, 5))}
    for key, (dtype, shape) in expected.items():
        assert model[key].dtype == dtype and model[key].shape == shape, key
    assert model["kintree_table"].tolist() == [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]
    assert np.allclose(model["J"], model["J_regressor"] @ model["v_template"], atol=1e-15)
    assert np.allclose(model["J_regressor"].sum(axis=1), 1.0)
    assert (model["bs_style"], model["bs_type"]) == ("lbs", "lrotmin")


# --- the head -------------------------------------------------------------------------

def test_mesh_is_an_oriented_manifold_open_at_neck_and_mouth(model: dict) -> None:
    faces = model["f"].astype(np.int64)
    assert faces.shape == (9976, 3) and faces.min() == 0 and faces.max() == 5022
    directed = Counter()
    for a, b, c in faces.tolist():
        assert len({a, b, c}) == 3
        for edge in ((a, b), (b, c), (c, a)):
            directed[edge] += 1
    # consistent orientation: each directed edge once; every edge in one or two triangles
    assert max(directed.values()) == 1
    boundary = [edge for edge in directed if edge[::-1] not in directed]
    assert len(boundary) == 62
    # two boundary loops: the neck's open end at the bottom, the mouth slit
    following = dict(boundary)
    assert len(following) == 62
    loops, seen = [], set()
    for start in following:
        if start in seen:
            continue
        loop, vertex = [start], following[start]
        while vertex != start:
            loop.append(vertex)
            vertex = following[vertex]
        seen.update(loop)
        loops.append(loop)
    neck, mouth = sorted(loops, key=len, reverse=True)
    assert (len(neck), len(mouth)) == (42, 20)
    v = model["v_template"]
    assert v[neck, 1].max() < v[:3931, 1].min() + 0.03
    lips = v[mouth]
    assert np.ptp(lips[:, 1]) < 0.006 and lips[:, 2].min() > 0.07       # across the face
    assert 0.03 < np.ptp(lips[:, 0]) < 0.05 and abs(lips[:, 0].mean()) < 1e-9
    # eyeballs: closed, separate, at FLAME's index ranges
    for eyeball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        in_eye = np.isin(faces, eyeball)
        eye_faces = faces[in_eye.any(axis=1)]
        assert in_eye[in_eye.any(axis=1)].all() and len(eye_faces) == 1088
        assert len(np.unique(eye_faces)) == 546
    assert len(faces[(faces < 3931).all(axis=1)]) == 7800


def test_normals_point_outward(model: dict) -> None:
    v, faces = model["v_template"], model["f"].astype(np.int64)
    tri = v[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # closed eyeballs: positive enclosed volume
    for eyeball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        eye = np.isin(faces[:, 0], eyeball)
        volume = np.einsum("ij,ij->i", tri[eye, 0], np.cross(tri[eye, 1], tri[eye, 2])).sum() / 6
        assert volume > 0.9 * 4 / 3 * np.pi * 0.012**3
    # head: normals point away from the head's middle almost everywhere
    head = (faces < 3931).all(axis=1)
    away = tri[head].mean(axis=1) - np.array([0.0, -0.02, -0.024])
    assert np.mean(np.einsum("ij,ij->i", normals[head], away) > 0) > 0.97


def test_head_size_orientation_and_parts(model: dict) -> None:
    v = model["v_template"]
    head = v[:3931]
    width = head[:, 0].max() - head[:, 0].min()
    assert 0.14 < width < 0.2                             # ear to ear, metres
    assert np.allclose(head[:, 0].max(), -head[:, 0].min(), atol=1e-9)   # symmetric
    nose_tip = head[np.argmax(head[:, 2])]
    assert abs(nose_tip[0]) < 1e-6 and nose_tip[2] > 0.09   # the face looks toward +z
    crown = head[:, 1].max()
    chin = head[(head[:, 2] > 0.04)][:, 1].min()
    assert 0.2 < crown - chin < 0.26
    assert head[:, 1].min() < chin - 0.05                  # a neck below the chin
    # eyeballs sit in front, left at +x, at the height of the eye sockets
    left, right = v[LEFT_EYEBALL].mean(axis=0), v[RIGHT_EYEBALL].mean(axis=0)
    assert left[0] > 0.02 and right[0] < -0.02 and left[2] > 0.04
    assert np.allclose(left * [-1, 1, 1], right)
    assert 0.022 < np.ptp(v[LEFT_EYEBALL][:, 0]) < 0.03   # an eyeball about 24 mm across


def test_joints_are_where_flame_has_them(model: dict) -> None:
    root, neck, jaw, left_eye, right_eye = model["J"]
    v = model["v_template"]
    assert np.allclose(left_eye, v[LEFT_EYEBALL].mean(axis=0))
    assert np.allclose(right_eye, v[RIGHT_EYEBALL].mean(axis=0))
    assert left_eye[0] > 0 > right_eye[0]
    assert root[1] < neck[1] < jaw[1] < left_eye[1]
    assert abs(root[0]) < 1e-9 and abs(neck[0]) < 1e-9 and abs(jaw[0]) < 1e-9
    mouth_z = v[:3931, 2].max() - 0.03
    assert jaw[2] < mouth_z                               # behind the mouth
    for row in model["J_regressor"]:
        used = row[row > 0]
        assert 10 <= len(used) <= 546 and np.allclose(used, used[0])


def test_skinning_weights(model: dict) -> None:
    w, v = model["weights"], model["v_template"]
    assert np.all(w >= 0) and np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(w[LEFT_EYEBALL, 3] == 1) and np.all(w[RIGHT_EYEBALL, 4] == 1)
    head = v[:3931]
    chin = np.argmin(np.where(head[:, 2] > 0.05, head[:, 1], np.inf))
    crown = np.argmax(head[:, 1])
    assert w[chin, 2] > 0.8 and w[crown, 1] == 1.0
    assert w[np.argmin(head[:, 1]), 0] > 0.9              # the neck's base follows the root
    back = head[:, 2] < -0.06
    assert np.all(w[:3931][back, 2] == 0)                 # nothing behind follows the jaw
    # a smooth falloff: some vertices partly on the jaw
    assert np.sum((w[:, 2] > 0.1) & (w[:, 2] < 0.9)) > 50
    # across the mouth slit: the upper lip stays with the head, the lower lip goes with the jaw
    faces = model["f"].astype(np.int64)
    directed = {(a, b) for f in faces.tolist() for a, b in ((f[0], f[1]), (f[1], f[2]),
                                                            (f[2], f[0]))}
    slit = {a for a, b in directed if (b, a) not in directed and v[a, 2] > 0.05}
    slit = np.array(sorted(slit))
    inner = slit[np.abs(v[slit, 0]) < 0.012]
    assert len(inner) >= 6
    assert np.sort(w[inner, 2])[len(inner) // 2 - 1] < 0.1      # upper lip vertices
    assert np.sort(w[inner, 2])[len(inner) // 2] > 0.9          # their lower-lip copies


def test_shape_and_expression_directions(model: dict) -> None:
    dirs, v = model["shapedirs"], model["v_template"]
    largest = np.abs(dirs).max(axis=(0, 1))
    # visible (millimetres) for the leading components, decaying but never zero later
    assert np.all(largest[:300] > 2e-5) and np.all(largest[:300] < 0.015)
    assert np.all(largest[:12] > 1e-3) and np.all(largest[12:40] > 1e-4)
    assert np.all(largest[300:] > 2e-5) and np.all(largest[300:310] > 1e-3)
    assert np.all(largest[300:] < 0.015)
    # eyeballs move rigidly with identity and do not move with expressions
    for eyeball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        assert np.allclose(dirs[eyeball, :, :300], dirs[eyeball[:1], :, :300])
        assert np.all(dirs[eyeball, :, 300:] == 0)
    back = v[:, 2] < -0.05
    assert np.abs(dirs[back, :, 300:]).max() < 2e-4      # expressions: the face, not the back
    # the first expression opens the mouth: the chin moves down
    head = v[:3931]
    chin = np.argmin(np.where(head[:, 2] > 0.05, head[:, 1], np.inf))
    assert dirs[chin, 1, 300] < -0.003


def test_pose_correctives_are_small_smooth_and_nonzero(model: dict) -> None:
    posedirs = model["posedirs"]
    largest = np.abs(posedirs).max(axis=(0, 1))
    assert np.all(largest > 1e-4) and np.all(largest < 0.01)
    assert np.abs(posedirs[LEFT_EYEBALL]).max() == 0


# --- masks and landmarks --------------------------------------------------------------

def test_masks_file_format_sizes_and_places(flame_dir: Path, model: dict) -> None:
    data = (flame_dir / "FLAME_masks.pkl").read_bytes()
    _check_protocol_0(data)
    masks = _load(flame_dir / "FLAME_masks.pkl")
    assert [(k, len(a)) for k, a in masks.items()] == MASK_SIZES
    for name, indices in masks.items():
        assert indices.dtype == np.int64
        if name == "lips":
            assert len(np.unique(indices)) == 250 and np.any(np.diff(indices) < 0)
        else:
            assert np.array_equal(indices, np.unique(indices)), name
    assert np.array_equal(masks["left_eyeball"], LEFT_EYEBALL)
    assert np.array_equal(masks["right_eyeball"], RIGHT_EYEBALL)
    v = model["v_template"]

    def centre(name):
        return v[masks[name]].mean(axis=0)

    assert centre("left_ear")[0] > 0.06 and centre("right_ear")[0] < -0.06
    assert centre("left_eye_region")[0] > 0.02 and centre("right_eye_region")[0] < -0.02
    assert centre("scalp")[1] > centre("forehead")[1] > centre("nose")[1] > centre("lips")[1]
    assert centre("neck")[1] < centre("lips")[1] - 0.05
    assert centre("nose")[2] > centre("face")[2] > 0.03
    assert set(masks["boundary"]) >= set(np.argsort(v[:3931, 1])[:30])


def _check_protocol_0(data: bytes) -> None:
    """Python 2 protocol 0: printable ASCII only, py2 str (STRING) and numpy 1.x globals.

    (pickletools cannot list these files' opcodes: its STRING reader wants ASCII contents.)
    """
    text = data.decode("ascii")
    assert all(ch == "\n" or " " <= ch <= "~" for ch in text)
    assert text.startswith("(dp0\nS'") and text.endswith("s.")
    assert set(re.findall(r"(?m)^c([\w.]+)\n(\w+)$", text.replace("\n", "\n\n"))) <= {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}
    assert "cnumpy.core.multiarray\n_reconstruct\n" in text and "\nV" not in text


def _landmark_points(model: dict, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
    corners = model["v_template"][model["f"][faces.astype(np.int64)].astype(np.int64)]
    return np.einsum("...k,...kj->...j", bary, corners)


def _check_barycentric(model: dict, faces: np.ndarray, bary: np.ndarray) -> None:
    assert np.all(bary > 0) and np.allclose(bary.sum(axis=-1), 1.0)
    assert np.all(model["f"][faces.astype(np.int64)] < 3931)   # on the head, not the eyeballs


def test_static_landmark_embeddings(flame_dir: Path, model: dict) -> None:
    for name, count in (("flame_static_embedding.pkl", 51), ("flame_static_embedding_68.pkl", 68)):
        _check_protocol_0((flame_dir / name).read_bytes())
        loaded = _load(flame_dir / name)
        assert list(loaded) == ["lmk_face_idx", "lmk_b_coords"]
        assert loaded["lmk_face_idx"].dtype == np.uint32 and loaded["lmk_face_idx"].shape == (count,)
        assert loaded["lmk_b_coords"].dtype == np.float64
        assert loaded["lmk_b_coords"].shape == (count, 3)
        _check_barycentric(model, loaded["lmk_face_idx"], loaded["lmk_b_coords"])
    static_68 = _load(flame_dir / "flame_static_embedding_68.pkl")
    static_51 = _load(flame_dir / "flame_static_embedding.pkl")
    assert np.array_equal(static_68["lmk_face_idx"][17:], static_51["lmk_face_idx"])
    p = _landmark_points(model, static_68["lmk_face_idx"], static_68["lmk_b_coords"])
    # iBUG layout: jaw from the subject's right (-x) to left, chin lowest; eyes, nose, mouth
    assert p[0, 0] < -0.04 and p[16, 0] > 0.04 and np.argmin(p[:17, 1]) == 8
    assert np.argmax(p[27:36, 2]) + 27 == 30               # nose tip in front
    assert p[36:42, 0].max() < 0 < p[42:48, 0].min()
    assert p[48, 0] < 0 < p[54, 0] and p[51, 1] > p[57, 1]
    assert p[17:27, 1].min() > p[36:48, 1].max() > p[30, 1] > p[48:68, 1].max() > p[8, 1]


def test_mediapipe_embedding(flame_dir: Path, model: dict) -> None:
    with np.load(flame_dir / "mediapipe_landmark_embedding.npz") as data:
        assert sorted(data.files) == ["landmark_indices", "lmk_b_coords", "lmk_face_idx"]
        faces, bary, ids = data["lmk_face_idx"], data["lmk_b_coords"], data["landmark_indices"]
    assert faces.dtype == np.uint32 and faces.shape == (105,)
    assert bary.dtype == np.float64 and bary.shape == (105, 3) and bary.flags.f_contiguous
    assert not bary.flags.c_contiguous
    assert ids.dtype == np.int64 and len(np.unique(ids)) == 105 and ids.min() >= 0
    assert ids.max() <= 467
    _check_barycentric(model, faces, bary)
    with zipfile.ZipFile(flame_dir / "mediapipe_landmark_embedding.npz") as archive:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())


def test_dynamic_contour_embedding(flame_dir: Path, model: dict) -> None:
    header, payload = _npy_payload(flame_dir / "flame_dynamic_embedding.npy")
    assert header == {"descr": "|O", "fortran_order": False, "shape": ()}
    ops = _ops(payload)
    assert ops[0][1] == 2 and not any(op.name == "BINUNICODE" for op, _, _ in ops)
    data = np.load(flame_dir / "flame_dynamic_embedding.npy", allow_pickle=True,
                   encoding="latin1")[()]
    assert list(data) == ["lmk_face_idx", "lmk_b_coords"]
    assert len(data["lmk_face_idx"]) == 79 and len(data["lmk_b_coords"]) == 79
    for faces, bary in zip(data["lmk_face_idx"], data["lmk_b_coords"], strict=True):
        assert faces.dtype == np.uint32 and faces.shape == (17,)
        assert bary.dtype == np.float64 and bary.shape == (17, 3)
        _check_barycentric(model, faces, bary)
    # rows in the real files' order (as DECA indexes them): row i is the head turned by +i
    # degrees (face toward +x) for i <= 39, by -(i - 39) degrees for i >= 40; a turn and its
    # opposite mirror each other
    points = np.stack([_landmark_points(model, f, b) for f, b in
                       zip(data["lmk_face_idx"], data["lmk_b_coords"], strict=True)])
    mirror = np.array([-1.0, 1.0, 1.0])
    assert np.abs(points[0] - points[0, ::-1] * mirror).max() < 0.004        # frontal
    for degrees in (1, 20, 39):
        turned_left, turned_right = points[degrees], points[39 + degrees]
        assert np.abs(turned_left - turned_right[::-1] * mirror).max() < 0.004
        # with the face turned toward +x the +x side turns away: its cheek points slide (onto
        # the silhouette, see test_contour_silhouette), the -x side keeps the frontal jaw line
        assert np.array_equal(turned_left[:9], points[0, :9])
        assert np.abs(turned_left[9:] - points[0, 9:]).max(axis=1).min() > 0.001
        assert np.array_equal(turned_right[8:], points[0, 8:])


def test_deca_embedding_loads_with_real_torch(flame_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    header, payload = _npy_payload(flame_dir / "landmark_embedding.npy")
    assert header["descr"] == "|O" and _ops(payload)[0][1] == 3
    assert {"torch._utils _rebuild_tensor_v2", "torch.storage _load_from_bytes",
            "collections OrderedDict"} <= _globals(_ops(payload))
    deca = np.load(flame_dir / "landmark_embedding.npy", allow_pickle=True)[()]
    static_68 = _load(flame_dir / "flame_static_embedding_68.pkl")
    dynamic = np.load(flame_dir / "flame_dynamic_embedding.npy", allow_pickle=True,
                      encoding="latin1")[()]
    assert list(deca) == ["static_lmk_faces_idx", "static_lmk_bary_coords",
                          "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
                          "full_lmk_faces_idx", "full_lmk_bary_coords"]
    assert isinstance(deca["static_lmk_faces_idx"], torch.Tensor)
    assert deca["static_lmk_faces_idx"].dtype == torch.int64
    assert deca["dynamic_lmk_faces_idx"].shape == (79, 17)
    assert deca["dynamic_lmk_bary_coords"].shape == (79, 17, 3)
    assert np.array_equal(deca["static_lmk_faces_idx"].numpy(), static_68["lmk_face_idx"][17:])
    assert np.allclose(deca["static_lmk_bary_coords"].numpy(), static_68["lmk_b_coords"][17:],
                       atol=1e-7)
    assert np.array_equal(deca["dynamic_lmk_faces_idx"].numpy(),
                          np.stack(dynamic["lmk_face_idx"]))
    assert deca["full_lmk_faces_idx"].dtype == np.int64
    assert deca["full_lmk_faces_idx"].shape == (1, 68)
    assert deca["full_lmk_bary_coords"].dtype == np.float32
    assert np.array_equal(deca["full_lmk_faces_idx"][0], static_68["lmk_face_idx"])


def test_legacy_storage_stream_is_what_torch_writes() -> None:
    torch = pytest.importorskip("torch")
    for array in (np.arange(12, dtype=np.int64).reshape(3, 4),
                  np.linspace(0, 1, 7, dtype=np.float32)):
        buffer = io.BytesIO()
        storage = torch.from_numpy(array.copy()).untyped_storage()
        typed = torch.storage.TypedStorage(wrap_storage=storage,
                                           dtype=torch.from_numpy(array).dtype, _internal=True)
        torch.save(typed, buffer, _use_new_zipfile_serialization=False)
        key = str(storage._cdata)
        ours = legacy_torch_storage_bytes(array, key=key)
        assert ours == buffer.getvalue()


def test_project_readers_read_the_landmarks(flame_dir: Path) -> None:
    from flame_blender.core.io.landmark_io import load_landmark_embeddings

    embeddings = load_landmark_embeddings(flame_dir)
    assert {"mediapipe", "static_51", "static_68", "dynamic_contour"} <= set(embeddings)
    static_68 = _load(flame_dir / "flame_static_embedding_68.pkl")
    assert np.array_equal(embeddings["static_68"].face_indices, static_68["lmk_face_idx"])
    assert embeddings["dynamic_contour"].face_indices.shape == (79, 17)


# --- textures and the OBJ ---------------------------------------------------------------

def _read_obj(path: Path):
    v, vt, f, ft = [], [], [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[0] == "v":
            v.append([float(x) for x in parts[1:]])
        elif parts[0] == "vt":
            vt.append([float(x) for x in parts[1:]])
        elif parts[0] == "f":
            corners = [c.split("/") for c in parts[1:]]
            f.append([int(c[0]) - 1 for c in corners])
            ft.append([int(c[1]) - 1 for c in corners])
    return np.array(v), np.array(vt), np.array(f), np.array(ft)


def test_template_obj_and_uv_layout(flame_dir: Path, model: dict) -> None:
    raw = (flame_dir / "head_template_mesh.obj").read_bytes()
    assert b"\r" not in raw
    v, vt, f, ft = _read_obj(flame_dir / "head_template_mesh.obj")
    assert v.shape == (5023, 3) and vt.shape == (5118, 2) and f.shape == (9976, 3)
    assert np.allclose(v, model["v_template"], atol=1e-8)
    assert np.array_equal(f, model["f"].astype(np.int64))
    assert vt.min() >= 0 and vt.max() <= 1 and ft.max() == 5117
    assert len(np.unique(ft)) == 5118
    # one UV vertex never stands for two mesh vertices
    owner = np.full(5118, -1)
    owner[ft.ravel()] = f.ravel()
    assert np.array_equal(owner[ft], f)
    for name in ("FLAME_texture.npz", "albedoModel2020_FLAME_albedoPart.npz"):
        with np.load(flame_dir / name) as data:
            assert np.array_equal(data["vt"], vt) and np.array_equal(data["ft"], ft), name
            assert data["ft"].dtype == np.int64
    # UV triangles do not overlap: same orientation for all, and no texel centre in two
    tri = vt[ft]
    area = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]) / 2
    assert np.all(area > 0)
    size = 400
    covered = np.zeros((size, size), dtype=np.int32)
    for a, b, c in tri:
        lo = np.floor(np.minimum(np.minimum(a, b), c) * size).astype(int)
        hi = np.ceil(np.maximum(np.maximum(a, b), c) * size).astype(int)
        xs = (np.arange(lo[0], hi[0]) + 0.5) / size
        ys = (np.arange(lo[1], hi[1]) + 0.5) / size
        px, py = np.meshgrid(xs, ys, indexing="ij")

        def side(p, q, px=px, py=py):
            return (q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0])

        inside = (side(a, b) > 1e-12) & (side(b, c) > 1e-12) & (side(c, a) > 1e-12)
        covered[lo[0]:hi[0], lo[1]:hi[1]] += inside
    assert covered.max() <= 1
    assert covered.sum() > 0.5 * size * size


def test_texture_models(flame_dir: Path) -> None:
    with np.load(flame_dir / "FLAME_texture.npz") as data:
        mean, tex_dir = data["mean"], data["tex_dir"]
    assert mean.shape == (64, 64, 3) and tex_dir.shape == (64, 64, 3, 200)
    assert mean.dtype == np.float64 and mean.min() >= 0 and mean.max() <= 255
    assert 1 < np.abs(tex_dir).max() < 100
    rgb = mean[..., ::-1]
    skin = rgb[40, 32]                                      # the cheek, below the eyes
    assert skin[0] > skin[1] > skin[2] > 60                # skin: red > green > blue (BGR file)
    with np.load(flame_dir / "albedoModel2020_FLAME_albedoPart.npz") as data:
        assert sorted(data.files) == ["MU", "PC", "ft", "specMU", "specPC", "vt"]
        assert data["MU"].shape == (64, 64, 3) and data["PC"].shape == (64, 64, 3, 145)
        assert data["specPC"].shape == (64, 64, 3, 145)
        assert data["MU"].min() >= 0 and data["MU"].max() <= 1
        mu = data["MU"]
    with np.load(flame_dir / "FLAME_albedo_from_BFM.npz") as data:
        assert sorted(data.files) == ["MU", "PC"]
        assert data["MU"].shape == (64 * 64 * 3,) and data["PC"].shape == (64 * 64 * 3, 199)
        assert np.allclose(data["MU"].reshape(64, 64, 3), mu)


def test_project_reader_reads_the_textures(flame_dir: Path) -> None:
    from flame_blender.core.io.texture_io import load_template_mesh, load_texture_model

    for name, kind in (("FLAME_texture.npz", "flame_texture"),
                       ("albedoModel2020_FLAME_albedoPart.npz", "albedomm"),
                       ("FLAME_albedo_from_BFM.npz", "bfm_albedo")):
        texture = load_texture_model(flame_dir / name)
        image = texture.image()
        assert texture.kind == kind and image.shape == (64, 64, 3)
        assert image.min() >= 0 and image.max() <= 1
    template = load_template_mesh(flame_dir / "head_template_mesh.obj")
    assert template.uvs.shape == (5118, 2)


# --- determinism, command line, cache ------------------------------------------------

def test_command_line_and_determinism(flame_dir: Path, tmp_path: Path) -> None:
    script_out, module_out = tmp_path / "script", tmp_path / "module"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_synthetic_flame.py"),
                    str(script_out), "--texture-resolution", "16"], check=True, env=env,
                   capture_output=True)
    from flame_blender.core.synthetic.__main__ import main

    assert main([str(module_out), "--seed", "0", "--texture-resolution", "16"]) == 0
    for name in FILE_NAMES:
        ours = (script_out / name).read_bytes()
        assert ours == (module_out / name).read_bytes(), name
        if not name.endswith(".npz") or name == "mediapipe_landmark_embedding.npz":
            assert ours == (flame_dir / name).read_bytes(), name
    with np.load(script_out / "FLAME_texture.npz") as data:
        assert data["mean"].shape == (16, 16, 3)


def test_seed_changes_directions_not_the_template() -> None:
    a, b = synthetic_flame_model(0), synthetic_flame_model(1)
    assert np.array_equal(a["v_template"], b["v_template"])
    assert np.array_equal(a["shapedirs"][..., :12], b["shapedirs"][..., :12])
    assert not np.array_equal(a["shapedirs"], b["shapedirs"])


def test_builtin_folder_is_cached_and_repaired(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_BLENDER_CACHE", str(tmp_path))
    from flame_blender.core.synthetic.files import generator_version

    target = tmp_path / f"synthetic-{generator_version()}-seed0"
    # an existing complete folder is used as it is
    target.mkdir()
    for name in FILE_NAMES:
        (target / name).write_bytes(b"placeholder")
    assert builtin_flame_dir() == target
    assert (target / "generic_model.pkl").read_bytes() == b"placeholder"
    # an incomplete one is written again, whole; an old generator's folder, untouched for two
    # days, is cleaned up then
    old = tmp_path / "synthetic-1-seed0"
    old.mkdir()
    os.utime(old, (old.stat().st_atime, old.stat().st_mtime - 2 * 86400))
    (target / "FLAME_masks.pkl").unlink()
    assert builtin_flame_dir() == target
    assert not old.exists()
    assert sorted(p.name for p in target.iterdir()) == sorted(FILE_NAMES)
    assert (target / "generic_model.pkl").read_bytes()[:2] == b"\x80\x02"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]   # no temporaries left


def test_bad_texture_resolution_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="texture_resolution"):
        write_synthetic_flame(tmp_path, texture_resolution=2)


def test_module_needs_no_chumpy_scipy_or_torch() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('chumpy', 'scipy', 'torch', 'bpy'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from flame_blender.core.synthetic import synthetic_flame_model\n"
        "from flame_blender.core.synthetic import pickle_writer, files\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "ok"


