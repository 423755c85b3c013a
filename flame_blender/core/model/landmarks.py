"""Landmarks on the FLAME mesh: barycentric points, and the yaw-dependent jaw contour.

A landmark is a point on a triangle: ``sum_k barycentric[l, k] * vertices[faces[face_indices[l], k]]``.
Static embeddings (MediaPipe 105, iBUG 51 and 68) use the same triangle for every pose.

The dynamic 17-point jaw contour has 79 variants (the look-up table of the RingNet / TF_FLAME
authors, ``flame_dynamic_embedding.npy``, also in DECA's ``landmark_embedding.npy``); which one
applies depends on how far the head is turned:

1. ``G = R_root @ R_neck`` (the neck's world rotation: its kinematic chain neck -> root,
   multiplied from the neck outwards), or the head's rotation relative to a camera
   (:func:`view_rotation`);
2. ``yaw = atan2(-G[2, 0], sqrt(G[0, 0]^2 + G[1, 0]^2))`` (the rotation about y of a
   z-y-x Euler decomposition; positive turns the face, +z, toward +x, the head's left);
3. ``a = round(min(s * degrees(yaw), 39))`` (round half to even), with the convention's sign
   ``s``;
4. table index ``a`` when ``a >= 0``, ``39 - a`` when ``-39 <= a < 0``, and ``78`` below -39.

Two conventions exist in the tools users compare with, and they differ only in the sign ``s``:

- ``"deca"`` (the default, ``s = +1``): DECA (``decalib/models/FLAME.py``,
  ``_find_dynamic_lmk_idx_and_bcoords`` clamps ``rot_mat_to_euler(rel_rot_mat) * 180 / pi``)
  and the FLAME code derived from it. Table row ``k`` (0..39) holds the contour of a head
  turned by ``+k`` degrees, row ``39 + k`` that of ``-k``: on the real template turned by
  ``global_pose``, these rows put the far-side contour on the jaw's silhouette (1.2-1.5 mm),
  so this is the geometrically right reading of the real tables.
- ``"smplx"`` (``s = -1``): smplx (``smplx/lbs.py`` ``find_dynamic_lmk_idx_and_bcoords``
  clamps ``-rot_mat_to_euler(...)``), FLAME_PyTorch and TF_FLAME. It picks the mirrored row: on
  the real template the far-side contour lands 8-11 mm inside the silhouette at 20-30 degrees.
  Offered for users who must reproduce those tools' landmarks exactly.

:data:`YAW_BIN_DEGREES` gives each table row's yaw (the geometric meaning, as ``"deca"``
reads it). ``dynamic_68`` (when both the contour and the static 51 are loaded) is the 17
contour points followed by the 51 static ones: the 68-point iBUG order DECA and RingNet fit to.

The names of the landmark sets users pick (``--landmarks`` of the batch renderer, the landmark
empties) are defined once, in :data:`LANDMARK_SET_SOURCES`; "iBUG 68" there is the fixed
68-point embedding (``flame_static_embedding_68.pkl``, else DECA's ``full_68``), never the
yaw-dependent one, which is ``ibug68_dynamic``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONTOUR_BIN_COUNT = 79
CONTOUR_MAX_DEGREES = 39
#: Yaw (degrees, positive = face turned toward +x) of each row of the contour table.
YAW_BIN_DEGREES = np.array(
    [float(i) for i in range(CONTOUR_MAX_DEGREES + 1)]
    + [float(CONTOUR_MAX_DEGREES - i) for i in range(CONTOUR_MAX_DEGREES + 1, CONTOUR_BIN_COUNT)]
)
#: Contour conventions -> the sign ``s`` applied to the yaw before the look-up (see above).
CONTOUR_CONVENTIONS = {"deca": 1.0, "smplx": -1.0}
DEFAULT_CONTOUR_CONVENTION = "deca"

#: User-facing landmark set names -> the :class:`LandmarkSet` outputs that provide them, first
#: found wins. One definition for the batch renderer and the landmark empties.
LANDMARK_SET_SOURCES: dict[str, tuple[str, ...]] = {
    "mediapipe": ("mediapipe",),
    # iBUG 68 = a fixed 68-point embedding: FLAME's flame_static_embedding_68.pkl, else the same
    # 68 points as DECA stores them (landmark_embedding.npy 'full_lmk_*')
    "ibug68": ("static_68", "full_68"),
    "ibug51": ("static_51",),
    # the 17 jaw-contour points that slide with the yaw, then the static 51
    "ibug68_dynamic": ("dynamic_68",),
}


def landmark_set_output(set_name: str, available: Iterable[str]) -> str | None:
    """The :class:`LandmarkSet` output that provides ``set_name`` among ``available``, or None."""
    available = set(available)
    return next((key for key in LANDMARK_SET_SOURCES[set_name] if key in available), None)


def contour_sign(convention: str) -> float:
    """The sign ``s`` of a contour convention; ValueError for an unknown one."""
    try:
        return CONTOUR_CONVENTIONS[convention]
    except KeyError:
        raise ValueError(
            f"contour_convention {convention!r}: expected one of {sorted(CONTOUR_CONVENTIONS)}"
        ) from None


def yaw_degrees(rotations: np.ndarray) -> np.ndarray:
    """Yaw in degrees (``(...)``) of rotation matrices ``(..., 3, 3)``, as the contour choice uses it."""
    r = np.asarray(rotations, dtype=np.float64)
    return np.degrees(np.arctan2(-r[..., 2, 0], np.sqrt(r[..., 0, 0] ** 2 + r[..., 1, 0] ** 2)))


def contour_bin_from_yaw(yaw: np.ndarray, convention: str = DEFAULT_CONTOUR_CONVENTION) -> np.ndarray:
    """Contour table index (int64, ``(...)``) for a yaw in degrees (``(...)``)."""
    signed = contour_sign(convention) * np.asarray(yaw, dtype=np.float64)
    angle = np.round(np.minimum(signed, CONTOUR_MAX_DEGREES)).astype(np.int64)
    return np.where(angle >= 0, angle, np.where(angle < -CONTOUR_MAX_DEGREES, 2 * CONTOUR_MAX_DEGREES, CONTOUR_MAX_DEGREES - angle))


def contour_bin(neck_world_rotations: np.ndarray, convention: str = DEFAULT_CONTOUR_CONVENTION) -> np.ndarray:
    """Contour table index (int64, ``(...)``) from ``R_root @ R_neck`` (``(..., 3, 3)``)."""
    return contour_bin_from_yaw(yaw_degrees(neck_world_rotations), convention)


# OpenCV camera axes (x right, y down, z forward) of a camera on FLAME's +z axis looking at the
# face: the view every contour table row is drawn for.
_FRONT_CAMERA = np.diag([1.0, -1.0, -1.0])


def view_rotation(
    neck_world_rotation: np.ndarray, world_to_camera: np.ndarray, head_centre: np.ndarray | None = None
) -> np.ndarray:
    """The head's rotation as a camera sees it ``(3, 3)``: the rotation that, applied as
    ``R_root @ R_neck`` to a head seen from the front (camera on FLAME's +z axis), shows the head
    the way this camera does. Feed it to :func:`contour_bin` / :meth:`LandmarkSet.evaluate_numpy`
    to choose the jaw contour for a camera instead of for the head pose alone.

    Args:
        neck_world_rotation: ``R_root @ R_neck`` ``(3, 3)`` in FLAME model space.
        world_to_camera: ``(4, 4)`` OpenCV world-to-camera matrix, world = FLAME model space.
        head_centre: ``(3,)`` a point of the head in FLAME model space (e.g. the neck joint).
            With it, the line of sight to that point is the viewing direction (exact for a head
            off the optical axis); without it, the optical axis.

    Roll about the line of sight does not change the yaw, so only the direction matters.
    """
    world_to_camera = np.asarray(world_to_camera, np.float64)
    rotation = world_to_camera[:3, :3]
    if head_centre is not None:
        centre = rotation @ np.asarray(head_centre, np.float64) + world_to_camera[:3, 3]
        norm = np.linalg.norm(centre)
        if norm > 0:
            rotation = _rotation_between(centre / norm, np.array([0.0, 0.0, 1.0])) @ rotation
    return _FRONT_CAMERA.T @ rotation @ np.asarray(neck_world_rotation, np.float64)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation ``(3, 3)`` taking unit vector ``a`` to unit vector ``b``."""
    axis = np.cross(a, b)
    sine, cosine = np.linalg.norm(axis), float(np.dot(a, b))
    if sine < 1e-12:
        if cosine > 0:
            return np.eye(3)
        # opposite: half a turn about any axis perpendicular to a
        other = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        axis = np.cross(a, other)
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = axis / sine
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sine * cross + (1.0 - cosine) * cross @ cross


@dataclass
class LandmarkSet:
    """Landmark embeddings resolved to vertex indices of the model's triangles.

    ``static[name] = (vertex_indices (L, 3) int64, barycentric (L, 3) float64)``;
    ``contour = (vertex_indices (79, 17, 3), barycentric (79, 17, 3))`` or None;
    ``contour_convention``: ``"deca"`` or ``"smplx"`` (see the module's docstring).
    """

    static: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    contour: tuple[np.ndarray, np.ndarray] | None = None
    contour_name: str = "dynamic_contour"
    contour_convention: str = DEFAULT_CONTOUR_CONVENTION

    def __post_init__(self) -> None:
        contour_sign(self.contour_convention)  # refuse an unknown convention at once

    @property
    def contour_sign(self) -> float:
        """The sign ``s`` of :attr:`contour_convention` (+1 DECA, -1 smplx)."""
        return contour_sign(self.contour_convention)

    @classmethod
    def from_embeddings(
        cls, embeddings: Mapping[str, Any], faces: np.ndarray, contour_convention: str = DEFAULT_CONTOUR_CONVENTION
    ) -> LandmarkSet:
        """From :class:`~.landmark_io.LandmarkEmbedding` objects (by name) and the faces ``(F, 3)``."""
        faces = np.asarray(faces, dtype=np.int64)
        result = cls(contour_convention=contour_convention)
        for name, embedding in embeddings.items():
            face_indices = np.asarray(embedding.face_indices, dtype=np.int64)
            barycentric = np.asarray(embedding.barycentric, dtype=np.float64)
            if face_indices.size and (face_indices.min() < 0 or face_indices.max() >= len(faces)):
                raise ValueError(f"landmark embedding {name!r} names triangles outside 0..{len(faces) - 1}")
            vertex_indices = faces[face_indices]
            if face_indices.ndim == 2:
                result.contour = (vertex_indices, barycentric)
                result.contour_name = name
            else:
                result.static[name] = (vertex_indices, barycentric)
        return result

    def contour_rows(self, neck_world_rotations: np.ndarray) -> np.ndarray:
        """The contour table row (int64 ``(...)``) for rotations ``(..., 3, 3)``, in this set's
        convention."""
        return contour_bin(neck_world_rotations, self.contour_convention)

    @property
    def names(self) -> list[str]:
        names = list(self.static)
        if self.contour is not None:
            names.append(self.contour_name)
            if "static_51" in self.static:
                names.append("dynamic_68")
        return names

    def evaluate_numpy(self, vertices: np.ndarray, neck_world_rotations: np.ndarray) -> dict[str, np.ndarray]:
        """Every landmark set for ``vertices (B, V, 3)``: name -> ``(B, L, 3)``.

        ``neck_world_rotations (B, 3, 3)`` (``R_root @ R_neck``, or :func:`view_rotation` for a
        camera) chooses the contour row (:meth:`contour_rows`).
        """
        out: dict[str, np.ndarray] = {}
        for name, (vertex_indices, barycentric) in self.static.items():
            out[name] = np.einsum("blkc,lk->blc", vertices[:, vertex_indices], barycentric)
        if self.contour is not None:
            vertex_indices, barycentric = self.contour
            bins = self.contour_rows(neck_world_rotations)  # (B,)
            rows = np.arange(vertices.shape[0])[:, None, None]
            corners = vertices[rows, vertex_indices[bins]]  # (B, 17, 3, 3)
            contour = np.einsum("blkc,blk->blc", corners, barycentric[bins])
            out[self.contour_name] = contour
            if "static_51" in out:
                out["dynamic_68"] = np.concatenate([contour, out["static_51"]], axis=1)
        return out


@dataclass(frozen=True)
class ContourChoice:
    """Which contour row a sample used and why: the head's yaw (degrees, + = face toward +x)
    relative to the camera, the row, and the convention."""

    yaw_degrees: float
    row: int
    convention: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "yaw_deg": self.yaw_degrees,
            "row": self.row,
            "convention": self.convention,
            "relative_to": "camera",
        }


def landmarks_for_camera(
    landmarks: LandmarkSet,
    vertices: np.ndarray,
    global_pose: np.ndarray,
    neck_pose: np.ndarray,
    world_to_camera: np.ndarray,
    head_centre: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], ContourChoice | None]:
    """Every landmark set of posed ``vertices (V, 3)`` with the jaw contour chosen for a camera.

    Args:
        global_pose, neck_pose: ``(3,)`` axis-angle of the root and neck (the head's rotation).
        world_to_camera: ``(4, 4)`` OpenCV world-to-camera matrix, world = FLAME model space.
        head_centre: ``(3,)`` where the camera looks (see :func:`view_rotation`).

    Returns name -> ``(L, 3)`` and the :class:`ContourChoice` (None without a contour table).
    """
    from .rotation import axis_angle_to_matrix

    neck = axis_angle_to_matrix(np.asarray(global_pose, np.float64)) @ axis_angle_to_matrix(
        np.asarray(neck_pose, np.float64)
    )
    rotation = view_rotation(neck, world_to_camera, head_centre)
    points = landmarks.evaluate_numpy(np.asarray(vertices)[None], rotation[None])
    choice = None
    if landmarks.contour is not None:
        choice = ContourChoice(
            float(yaw_degrees(rotation)), int(landmarks.contour_rows(rotation)), landmarks.contour_convention
        )
    return {name: value[0] for name, value in points.items()}, choice
