"""Landmarks on the FLAME mesh: barycentric points, and the yaw-dependent jaw contour.

A landmark is a point on a triangle: ``sum_k barycentric[l, k] * vertices[faces[face_indices[l], k]]``.
Static embeddings (MediaPipe 105, iBUG 51 and 68) use the same triangle for every pose.

The dynamic 17-point jaw contour has 79 variants (a look-up table from the RingNet / TF_FLAME
authors); which one applies depends on how far the head is turned. We pick it exactly as
FLAME_PyTorch (``FLAME._find_dynamic_lmk_idx_and_bcoords``), smplx (``lbs.find_dynamic_lmk_idx_and_bcoords``)
and the TensorFlow original do, with the neck + global chain that FLAME_PyTorch and DECA use:

1. ``G = R_root @ R_neck`` (the neck's world rotation: its kinematic chain neck -> root,
   multiplied from the neck outwards);
2. ``yaw = atan2(-G[2, 0], sqrt(G[0, 0]^2 + G[1, 0]^2))`` (the rotation about y of a
   z-y-x Euler decomposition; positive turns the face, +z, toward +x, the head's left);
3. ``a = round(min(-degrees(yaw), 39))`` (round half to even);
4. table index ``a`` when ``a >= 0``, ``39 - a`` when ``-39 <= a < 0``, and ``78`` below -39.

So the table is ordered by ``-yaw`` = 0, 1, ..., 39, then -1, ..., -39 degrees
(:data:`YAW_BIN_DEGREES` gives each entry's yaw). Differences worth knowing: smplx's own
``FLAME`` class uses the global rotation alone (its ``NECK_IDX = 0``), and DECA's copy of
FLAME drops the minus sign in step 3, which mirrors the choice; we follow FLAME_PyTorch.

``dynamic_68`` (when both the contour and the static 51 are loaded) is the 17 contour points
followed by the 51 static ones: the 68-point iBUG order DECA and RingNet fit to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONTOUR_BIN_COUNT = 79
CONTOUR_MAX_DEGREES = 39
#: Yaw (degrees, positive = face turned toward +x) of each entry of the contour table.
YAW_BIN_DEGREES = np.array(
    [-float(i) for i in range(CONTOUR_MAX_DEGREES + 1)]
    + [float(i - CONTOUR_MAX_DEGREES) for i in range(CONTOUR_MAX_DEGREES + 1, CONTOUR_BIN_COUNT)]
)


def yaw_degrees(rotations: np.ndarray) -> np.ndarray:
    """Yaw in degrees (``(...)``) of rotation matrices ``(..., 3, 3)``, as the contour choice uses it."""
    r = np.asarray(rotations, dtype=np.float64)
    return np.degrees(np.arctan2(-r[..., 2, 0], np.sqrt(r[..., 0, 0] ** 2 + r[..., 1, 0] ** 2)))


def contour_bin_from_yaw(yaw: np.ndarray) -> np.ndarray:
    """Contour table index (int64, ``(...)``) for a yaw in degrees (``(...)``)."""
    angle = np.round(np.minimum(-np.asarray(yaw, dtype=np.float64), CONTOUR_MAX_DEGREES)).astype(np.int64)
    return np.where(angle >= 0, angle, np.where(angle < -CONTOUR_MAX_DEGREES, 2 * CONTOUR_MAX_DEGREES, CONTOUR_MAX_DEGREES - angle))


def contour_bin(neck_world_rotations: np.ndarray) -> np.ndarray:
    """Contour table index (int64, ``(...)``) from ``R_root @ R_neck`` (``(..., 3, 3)``)."""
    return contour_bin_from_yaw(yaw_degrees(neck_world_rotations))


@dataclass
class LandmarkSet:
    """Landmark embeddings resolved to vertex indices of the model's triangles.

    ``static[name] = (vertex_indices (L, 3) int64, barycentric (L, 3) float64)``;
    ``contour = (vertex_indices (79, 17, 3), barycentric (79, 17, 3))`` or None.
    """

    static: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    contour: tuple[np.ndarray, np.ndarray] | None = None
    contour_name: str = "dynamic_contour"

    @classmethod
    def from_embeddings(cls, embeddings: Mapping[str, Any], faces: np.ndarray) -> LandmarkSet:
        """From :class:`~.landmark_io.LandmarkEmbedding` objects (by name) and the faces ``(F, 3)``."""
        faces = np.asarray(faces, dtype=np.int64)
        result = cls()
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

        ``neck_world_rotations (B, 3, 3)`` (``R_root @ R_neck``) chooses the contour.
        """
        out: dict[str, np.ndarray] = {}
        for name, (vertex_indices, barycentric) in self.static.items():
            out[name] = np.einsum("blkc,lk->blc", vertices[:, vertex_indices], barycentric)
        if self.contour is not None:
            vertex_indices, barycentric = self.contour
            bins = contour_bin(neck_world_rotations)  # (B,)
            rows = np.arange(vertices.shape[0])[:, None, None]
            corners = vertices[rows, vertex_indices[bins]]  # (B, 17, 3, 3)
            contour = np.einsum("blkc,blk->blc", corners, barycentric[bins])
            out[self.contour_name] = contour
            if "static_51" in out:
                out["dynamic_68"] = np.concatenate([contour, out["static_51"]], axis=1)
        return out
