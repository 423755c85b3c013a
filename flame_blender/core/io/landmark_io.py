"""FLAME landmark embeddings (barycentric points on mesh triangles), one structure for all.

A landmark is ``sum_k barycentric[l, k] * vertices[faces[face_indices[l], k]]``. The files:

==================================== ===================== =================================
file                                 loader                name(s)
==================================== ===================== =================================
mediapipe_landmark_embedding.npz     mediapipe             ``mediapipe`` (105, MediaPipe ids)
flame_static_embedding.pkl / _68     static                ``static_51`` / ``static_68``
flame_dynamic_embedding.npy          dynamic               ``dynamic_contour`` (79 yaw bins x 17)
landmark_embedding.npy (DECA)        deca                  ``static_51``, ``dynamic_contour``,
                                                           ``full_68``
landmark_embedding_with_eyes.npy     vhap                  ``full_70`` (+ ``static_53``,
(VHAP, GaussianAvatars)                                    ``dynamic_contour`` when present)
==================================== ===================== =================================

None needs torch: DECA's legacy torch tensors are parsed by :mod:`.legacy_torch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from ..model.landmarks import CONTOUR_BIN_COUNT, YAW_BIN_DEGREES
from .numpy_files import load_npy, load_npz
from .plain_arrays import fits_int64
from .reader_guard import file_reader
from .safe_pickle import load_pickle, to_array

MEDIAPIPE_FILE_NAME = "mediapipe_landmark_embedding.npz"
STATIC_FILE_NAMES = {51: "flame_static_embedding.pkl", 68: "flame_static_embedding_68.pkl"}
DYNAMIC_FILE_NAME = "flame_dynamic_embedding.npy"
DECA_FILE_NAME = "landmark_embedding.npy"
VHAP_FILE_NAME = "landmark_embedding_with_eyes.npy"
N_YAW_BINS = CONTOUR_BIN_COUNT
N_CONTOUR_POINTS = 17
MAX_LIST_ARRAYS = 1000  # a list-of-arrays embedding (FLAME's dynamic one has 79 rows)
MAX_LIST_ELEMENTS = 1 << 22


@dataclass(frozen=True, eq=False)
class LandmarkEmbedding:
    """Landmarks as barycentric points on FLAME triangles.

    Attributes:
        name: "mediapipe", "static_51", "static_68", "dynamic_contour" or "full_68".
        face_indices: int64 (L,) triangle indices, or (79, 17) for the dynamic contour.
        barycentric: float64 (L, 3), or (79, 17, 3) for the dynamic contour.
        mediapipe_ids: int64 (L,) MediaPipe face-mesh ids (mediapipe only).
        yaw_bins_degrees: float64 (79,) head yaw of each contour row in table order (dynamic only).
        source: the file it was read from.
    """

    name: str
    face_indices: np.ndarray
    barycentric: np.ndarray
    mediapipe_ids: np.ndarray | None = None
    yaw_bins_degrees: np.ndarray | None = None
    source: Path | None = None

    def __len__(self) -> int:
        return int(self.face_indices.shape[-1])

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Landmark positions ``(..., L, 3)`` on ``vertices`` ``(..., V, 3)`` with ``faces``
        ``(F, 3)`` (static embeddings; for the contour, pick a yaw row first)."""
        if self.face_indices.ndim != 1:
            raise ValueError(f"{self.name}: pick one yaw bin row before computing points")
        corners = np.asarray(vertices)[..., np.asarray(faces)[self.face_indices], :]
        return np.einsum("...lkc,lk->...lc", corners, self.barycentric)


def _array(path: Path, key: str, value: Any) -> np.ndarray:
    array = to_array(value)
    if isinstance(array, list):
        if len(array) > MAX_LIST_ARRAYS:
            raise FlameFileError(path, f"key '{key}' is a list of {len(array)} arrays; expected "
                                 f"at most {MAX_LIST_ARRAYS} (79 yaw bins)")  # fmt: skip
        if sum(getattr(to_array(item), "size", 1) for item in array) > MAX_LIST_ELEMENTS:
            raise FlameFileError(path, f"key '{key}' holds too many values for an embedding")
        try:
            array = np.stack([np.asarray(to_array(item)) for item in array])
        except ValueError as error:
            raise FlameFileError(
                path, f"key '{key}' is a list of arrays of different shapes ({error})"
            ) from error
    if not isinstance(array, np.ndarray):
        raise FlameFileError(path, f"key '{key}' is a {type(array).__name__}, expected an array")
    return array


def _build(
    path: Path,
    name: str,
    face_key: str,
    faces: Any,
    bary_key: str,
    bary: Any,
    expected: tuple[int, ...] | None = None,
    **extra: Any,
) -> LandmarkEmbedding:
    face_indices = _array(path, face_key, faces)
    barycentric = _array(path, bary_key, bary)
    if face_indices.dtype.kind not in "iu":
        raise FlameFileError(
            path, f"key '{face_key}' has dtype {face_indices.dtype}, expected integer face indices"
        )
    if barycentric.dtype.kind not in "fiu":
        raise FlameFileError(
            path, f"key '{bary_key}' has dtype {barycentric.dtype}, expected numbers"
        )
    if expected is not None and face_indices.shape != expected:
        raise FlameFileError(
            path, f"key '{face_key}' has shape {face_indices.shape}, expected {expected}"
        )
    if face_indices.ndim < 1 or barycentric.shape != face_indices.shape + (3,):
        raise FlameFileError(
            path,
            f"key '{bary_key}' has shape {barycentric.shape}, expected "
            f"{face_indices.shape + (3,)} (one barycentric triple per landmark of '{face_key}')",
        )
    if face_indices.size and (face_indices.min() < 0 or not fits_int64(face_indices)):
        raise FlameFileError(
            path, f"key '{face_key}' has negative face indices or ones beyond 2**63-1; "
            "expected triangle indices 0..F-1",
        )
    if not np.isfinite(barycentric).all():
        raise FlameFileError(path, f"key '{bary_key}' holds NaN/inf; expected finite weights")
    return LandmarkEmbedding(
        name=name,
        face_indices=np.ascontiguousarray(face_indices, dtype=np.int64),
        barycentric=np.ascontiguousarray(barycentric, dtype=np.float64),
        source=path,
        **extra,
    )


def _resolve(path: str | Path, file_name: str) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise FlameFileError(path, f"no such file; expected {file_name}")
    return path


def _require(path: Path, value: Any, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise FlameFileError(
            path, f"holds a {type(value).__name__}, expected a dict with {', '.join(keys)}"
        )
    missing = [key for key in keys if key not in value]
    if missing:
        raise FlameFileError(
            path,
            f"has no key {', '.join(repr(k) for k in missing)}; expected {', '.join(keys)}",
        )
    return value


@file_reader
def load_mediapipe_landmark_embedding(path: str | Path) -> LandmarkEmbedding:
    """``mediapipe_landmark_embedding.npz`` (file or folder): 105 landmarks with their
    MediaPipe mesh ids (``mediapipe_ids`` int64 (105,))."""
    path = _resolve(path, MEDIAPIPE_FILE_NAME)
    keys = ("lmk_face_idx", "lmk_b_coords", "landmark_indices")
    arrays = load_npz(path, required=keys)
    ids = arrays["landmark_indices"]
    if ids.dtype.kind not in "iu" or ids.shape != arrays["lmk_face_idx"].shape:
        raise FlameFileError(
            path,
            f"key 'landmark_indices' has dtype {ids.dtype} shape {ids.shape}, expected "
            f"integers of shape {arrays['lmk_face_idx'].shape}",
        )
    return _build(
        path,
        "mediapipe",
        "lmk_face_idx",
        arrays["lmk_face_idx"],
        "lmk_b_coords",
        arrays["lmk_b_coords"],
        mediapipe_ids=np.ascontiguousarray(ids, dtype=np.int64),
    )


@file_reader
def load_static_landmark_embedding(path: str | Path, count: int | None = 51) -> LandmarkEmbedding:
    """``flame_static_embedding.pkl`` (51 inner iBUG points) or ``flame_static_embedding_68.pkl``.

    For a folder, ``count`` (51 or 68) picks the file. For a file, the landmark count is the
    file's (51 or 68); ``count=68`` is then checked against it. The name is ``static_51`` or
    ``static_68``.
    """
    folder_or_file = Path(path).expanduser()
    if folder_or_file.is_dir():
        wanted = 51 if count is None else count
        if wanted not in STATIC_FILE_NAMES:
            raise FlameFileError(
                folder_or_file, f"no static embedding of {wanted}; expected 51 or 68"
            )
        file = _resolve(folder_or_file, STATIC_FILE_NAMES[wanted])
    else:
        file = _resolve(folder_or_file, "flame_static_embedding.pkl")
    keys = ("lmk_face_idx", "lmk_b_coords")
    value = _require(file, load_pickle(file), keys)
    embedding = _build(file, "static", keys[0], value[keys[0]], keys[1], value[keys[1]])
    size = len(embedding)
    if embedding.face_indices.ndim != 1 or size not in STATIC_FILE_NAMES:
        raise FlameFileError(
            file,
            f"key 'lmk_face_idx' has shape {embedding.face_indices.shape}, expected (51,) or (68,)",
        )
    if count is not None and count != 51 and size != count:
        raise FlameFileError(file, f"holds {size} landmarks, expected {count}")
    return LandmarkEmbedding(
        f"static_{size}", embedding.face_indices, embedding.barycentric, source=file
    )


def yaw_bins_degrees() -> np.ndarray:
    """Head yaw of each dynamic-contour row, float64 (79,): 0, 1, ..., 39, then -1, ..., -39
    degrees (positive: the face turned toward +x), the rows' geometric meaning as DECA's look-up
    reads them (see ``landmarks.YAW_BIN_DEGREES``)."""
    return YAW_BIN_DEGREES.copy()


@file_reader
def load_dynamic_landmark_embedding(path: str | Path) -> LandmarkEmbedding:
    """``flame_dynamic_embedding.npy``: the 17 jaw-contour landmarks for each of 79 head-yaw
    bins (see :func:`yaw_bins_degrees`), ``face_indices`` (79, 17), ``barycentric`` (79, 17, 3)."""
    path = _resolve(path, DYNAMIC_FILE_NAME)
    keys = ("lmk_face_idx", "lmk_b_coords")
    value = _require(path, load_npy(path), keys)
    return _build(
        path,
        "dynamic_contour",
        keys[0],
        value[keys[0]],
        keys[1],
        value[keys[1]],
        expected=(N_YAW_BINS, N_CONTOUR_POINTS),
        yaw_bins_degrees=yaw_bins_degrees(),
    )


@file_reader
def load_deca_landmark_embedding(path: str | Path) -> dict[str, LandmarkEmbedding]:
    """DECA's ``landmark_embedding.npy`` (file or folder), without torch: ``static_51``,
    ``dynamic_contour`` (79, 17) and ``full_68``."""
    path = _resolve(path, DECA_FILE_NAME)
    keys = (
        "static_lmk_faces_idx",
        "static_lmk_bary_coords",
        "dynamic_lmk_faces_idx",
        "dynamic_lmk_bary_coords",
        "full_lmk_faces_idx",
        "full_lmk_bary_coords",
    )
    value = _require(path, load_npy(path), keys)
    full_faces = _array(path, keys[4], value[keys[4]])
    full_bary = _array(path, keys[5], value[keys[5]])
    if full_faces.ndim == 2 and full_faces.shape[0] == 1:  # stored with a batch axis (1, 68)
        full_faces, full_bary = full_faces[0], full_bary[0] if full_bary.ndim == 3 else full_bary
    return {
        "static_51": _build(
            path, "static_51", keys[0], value[keys[0]], keys[1], value[keys[1]], (51,)
        ),
        "dynamic_contour": _build(
            path,
            "dynamic_contour",
            keys[2],
            value[keys[2]],
            keys[3],
            value[keys[3]],
            (N_YAW_BINS, N_CONTOUR_POINTS),
            yaw_bins_degrees=yaw_bins_degrees(),
        ),
        "full_68": _build(path, "full_68", keys[4], full_faces, keys[5], full_bary, (68,)),
    }


def _drop_batch_axis(path: Path, value: dict, face_key: str, bary_key: str) -> tuple:
    faces = _array(path, face_key, value[face_key])
    bary = _array(path, bary_key, value[bary_key])
    if faces.ndim == 2 and faces.shape[0] == 1 and bary.ndim == 3 and bary.shape[0] == 1:
        return faces[0], bary[0]  # stored with a batch axis: (1, L) and (1, L, 3)
    return faces, bary


@file_reader
def load_vhap_landmark_embedding(path: str | Path) -> dict[str, LandmarkEmbedding]:
    """VHAP's (and GaussianAvatars') ``landmark_embedding_with_eyes.npy`` (file or folder):
    DECA's layout with the two pupils added. ``full_70`` comes from ``full_lmk_faces_idx``
    (1, 70) / ``full_lmk_bary_coords`` (1, 70, 3), the keys VHAP reads; ``static_53`` and
    ``dynamic_contour`` (79, 17) are added when the file has them. Arrays may be numpy arrays
    or legacy torch tensors (read without torch).
    """
    path = _resolve(path, VHAP_FILE_NAME)
    keys = ("full_lmk_faces_idx", "full_lmk_bary_coords")
    value = _require(path, load_npy(path), keys)
    faces, bary = _drop_batch_axis(path, value, *keys)
    if faces.shape not in ((70,), (68,)):
        raise FlameFileError(
            path, f"key 'full_lmk_faces_idx' has shape {faces.shape}, expected (1, 70): 68 iBUG "
            "points and two pupils",
        )
    found = {f"full_{len(faces)}": _build(path, f"full_{len(faces)}", keys[0], faces, keys[1], bary)}
    static_keys = ("static_lmk_faces_idx", "static_lmk_bary_coords")
    if all(key in value for key in static_keys):
        faces, bary = _drop_batch_axis(path, value, *static_keys)
        if faces.shape not in ((51,), (53,)):
            raise FlameFileError(
                path, f"key 'static_lmk_faces_idx' has shape {faces.shape}, expected (53,)"
            )
        name = f"static_{len(faces)}"
        found[name] = _build(path, name, static_keys[0], faces, static_keys[1], bary)
    dynamic_keys = ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")
    if all(key in value for key in dynamic_keys):
        found["dynamic_contour"] = _build(
            path, "dynamic_contour", dynamic_keys[0], value[dynamic_keys[0]], dynamic_keys[1],
            value[dynamic_keys[1]], (N_YAW_BINS, N_CONTOUR_POINTS),
            yaw_bins_degrees=yaw_bins_degrees(),
        )  # fmt: skip
    return found


class LandmarkEmbeddings(dict):
    """``name -> LandmarkEmbedding``, plus :attr:`problems`: ``file name -> why it was skipped``
    for files that are present but unreadable (so one broken file does not hide the others)."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: dict[str, str] = {}


@file_reader
def load_landmark_embeddings(flame_dir: str | Path, strict: bool = False) -> LandmarkEmbeddings:
    """Every landmark embedding present in ``flame_dir``, by name.

    FLAME's own files come first (``mediapipe``, ``static_51``, ``static_68``,
    ``dynamic_contour``); DECA's ``landmark_embedding.npy`` adds ``full_68`` and fills
    ``static_51``/``dynamic_contour`` only where FLAME's files are absent. A file that is present
    but broken is left out and its :class:`FlameFileError` message kept in ``.problems`` (with
    ``strict=True`` it is raised instead): a truncated dynamic contour must not take MediaPipe
    down with it.
    """
    folder = Path(flame_dir).expanduser()
    if not folder.is_dir():
        raise FlameFileError(folder, "no such folder; expected a FLAME folder")
    found = LandmarkEmbeddings()

    def attempt(file_name: str, load) -> None:
        if not (folder / file_name).is_file():
            return
        try:
            for name, embedding in load().items():
                found.setdefault(name, embedding)
        except FlameFileError as error:
            if strict:
                raise
            found.problems[file_name] = str(error)

    attempt(MEDIAPIPE_FILE_NAME, lambda: {"mediapipe": load_mediapipe_landmark_embedding(folder)})
    for count, name in STATIC_FILE_NAMES.items():
        attempt(name, lambda count=count: {f"static_{count}": load_static_landmark_embedding(folder, count)})
    attempt(DYNAMIC_FILE_NAME, lambda: {"dynamic_contour": load_dynamic_landmark_embedding(folder)})
    attempt(DECA_FILE_NAME, lambda: load_deca_landmark_embedding(folder))
    return found
