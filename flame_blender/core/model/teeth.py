"""VHAP's teeth: 120 vertices and 168 triangles added to FLAME inside the mouth (5143 vertices).

VHAP (``vhap/model/flame.py``, ``FlameHead.add_teeth``) builds the teeth from two 15-vertex
rings on the outside of the lips, one on the upper lip and one on the lower, ordered from the
head's left corner of the mouth to its right. With ``d`` the mean distance between matching ring
vertices, the front row of the teeth sits halfway between the rings, at the rings' mean height
(one ``y`` for all 15), pushed back by ``1.5 d``. From there, eight rows of 15 vertices:

==================  ============================================================  =========
rows (+5023)        position                                                       moves with
==================  ============================================================  =========
0-14 upper root     front row + (0, 0.1 d, 0) + (0, 2 d, 0)                        neck
15-29 lower root    front row - (0, 0.1 d, 0) - (0, 0, 0.4 d) - (0, 2 d, 0)         jaw
30-44 upper edge    front row + (0, 0.1 d, 0)                                      neck
45-59 lower edge    front row - (0, 0.1 d, 0) - (0, 0, 0.4 d)                      jaw
60-74               upper root moved back by d (z - d)                             neck
75-89               upper edge moved back by d                                     neck
90-104              lower root moved back by d                                     jaw
105-119             lower edge moved back by d                                     jaw
==================  ============================================================  =========

Blend shapes: every identity direction of a tooth vertex is the mean of the two ring vertices'
directions at its position in the row; expression, pose-corrective and joint-regressor entries are
zero (the teeth neither change with expressions nor move the joints). Skinning: weight 1 on the
neck joint for the upper teeth and on the jaw joint for the lower teeth. The triangles join
neighbouring rows in quads split along one diagonal on the left half and the other on the right
(:data:`TEETH_STRIPS`), in VHAP's order, so the face list equals VHAP's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FlameFileError

TEETH_VERTEX_COUNT = 120
TEETH_FACE_COUNT = 168
#: VHAP's ``lip_outside_ring_upper`` / ``_lower``: FLAME vertex ids, mouth corner to corner.
LIP_RING_UPPER = (1713, 1715, 1716, 1735, 1696, 1694, 1657, 3543, 2774, 2811, 2813, 2850, 2833, 2832, 2830)
LIP_RING_LOWER = (1576, 1577, 1773, 1774, 1795, 1802, 1865, 3503, 2948, 2905, 2898, 2881, 2880, 2713, 2712)
#: First tooth row of each kind, counted from the first tooth vertex.
UPPER_ROOT, LOWER_ROOT, UPPER_EDGE, LOWER_EDGE = 0, 15, 30, 45
UPPER_ROOT_BACK, UPPER_EDGE_BACK, LOWER_ROOT_BACK, LOWER_EDGE_BACK = 60, 75, 90, 105
UPPER_ROWS = (UPPER_ROOT, UPPER_EDGE, UPPER_ROOT_BACK, UPPER_EDGE_BACK)
LOWER_ROWS = (LOWER_ROOT, LOWER_EDGE, LOWER_ROOT_BACK, LOWER_EDGE_BACK)
NECK_JOINT, JAW_JOINT = 1, 2
#: The six strips of triangles, in VHAP's order: rows ``a`` and ``b``, then the two triangles of
#: quad ``k`` on the left half (k < 7) and on the right half (k >= 7). ``"a0"`` is ``a + k``,
#: ``"b1"`` is ``b + k + 1``.
TEETH_STRIPS = (
    (UPPER_ROOT, UPPER_EDGE, ("a0 b1 b0", "a0 a1 b1"), ("a0 a1 b0", "a1 b1 b0")),
    (UPPER_ROOT_BACK, UPPER_EDGE_BACK, ("a0 b0 b1", "a0 b1 a1"), ("a0 b0 a1", "a1 b0 b1")),
    (UPPER_EDGE_BACK, UPPER_EDGE, ("a0 b0 a1", "a1 b0 b1"), ("a0 b0 b1", "a0 b1 a1")),
    (LOWER_EDGE, LOWER_ROOT, ("a0 a1 b0", "a1 b1 b0"), ("a0 b1 b0", "a0 a1 b1")),
    (LOWER_ROOT_BACK, LOWER_EDGE_BACK, ("a0 b1 b0", "a0 a1 b1"), ("a0 a1 b0", "a1 b1 b0")),
    (LOWER_EDGE_BACK, LOWER_EDGE, ("a0 a1 b0", "a1 b1 b0"), ("a0 b1 b0", "a0 a1 b1")),
)
SHAPE_SPACE_SIZE = 300


def teeth_faces() -> np.ndarray:
    """The 168 teeth triangles ``(168, 3)`` int64, indexing the 120 tooth vertices (add 5023)."""
    faces = []
    for a, b, left, right in TEETH_STRIPS:
        for k in range(14):
            for triangle in left if k < 7 else right:
                faces.append([(a if c[0] == "a" else b) + k + int(c[1]) for c in triangle.split()])
    return np.asarray(faces, dtype=np.int64)


def teeth_vertices(v_template: np.ndarray) -> np.ndarray:
    """The 120 tooth vertices ``(120, 3)`` of a template ``(V, 3)``, as described in the module."""
    upper = np.asarray(v_template, dtype=np.float64)[list(LIP_RING_UPPER)]
    lower = np.asarray(v_template, dtype=np.float64)[list(LIP_RING_LOWER)]
    d = np.linalg.norm(upper - lower, axis=-1).mean()
    middle = (upper + lower) / 2
    middle[:, 1] = middle[:, 1].mean()
    middle[:, 2] -= d * 1.5
    up, back = np.array([0.0, d, 0.0]), np.array([0.0, 0.0, d])
    upper_edge = middle + up * 0.1
    upper_root = upper_edge + up * 2
    lower_edge = middle - up * 0.1 - back * 0.4
    lower_root = lower_edge - up * 2
    rows = [upper_root, lower_root, upper_edge, lower_edge, upper_root, upper_edge, lower_root, lower_edge]
    out = np.concatenate(rows)
    out[60:, 2] -= d  # the back rows: the teeth are d thick
    return out


def teeth_uvs() -> np.ndarray:
    """VHAP's UV coordinates of the 120 tooth vertices ``(120, 2)`` (a strip at the top of the map)."""
    u = np.linspace(0.62, 0.38, 15)
    v = np.linspace(1 - 0.0083, 1 - 0.0425, 7)[[3, 2, 0, 1, 3, 4, 6, 5]]
    return np.stack(np.meshgrid(v, u, indexing="ij")[::-1], axis=-1).reshape(TEETH_VERTEX_COUNT, 2)


def add_teeth(model: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a FLAME model dict (the keys ``load_flame`` returns) with VHAP's teeth added.

    ``v_template`` (5143, 3), ``f`` (10144, 3), ``shapedirs`` (5143, 3, N), ``posedirs``
    (5143, 3, 36), ``weights`` (5143, 5), ``J_regressor`` (5, 5143); other keys are kept.
    """
    out = dict(model)
    v_template = np.asarray(getattr(model["v_template"], "x", model["v_template"]), dtype=np.float64)
    n = v_template.shape[0]
    if n <= max(LIP_RING_UPPER + LIP_RING_LOWER):
        raise FlameFileError(None, f"v_template has {n} vertices; the teeth need FLAME's 5023 (lip rings)")
    out["v_template"] = np.concatenate([v_template, teeth_vertices(v_template)])
    shapedirs = np.asarray(getattr(model["shapedirs"], "x", model["shapedirs"]), dtype=np.float64)
    shapedirs = shapedirs[:, :, None] if shapedirs.ndim == 2 else shapedirs
    teeth_dirs = np.zeros((TEETH_VERTEX_COUNT,) + shapedirs.shape[1:])
    n_identity = min(SHAPE_SPACE_SIZE, shapedirs.shape[2])
    mean = (shapedirs[list(LIP_RING_UPPER), :, :n_identity] + shapedirs[list(LIP_RING_LOWER), :, :n_identity]) / 2
    teeth_dirs[:, :, :n_identity] = np.tile(mean, (8, 1, 1))
    out["shapedirs"] = np.concatenate([shapedirs, teeth_dirs])
    posedirs = np.asarray(getattr(model["posedirs"], "x", model["posedirs"]), dtype=np.float64)
    out["posedirs"] = np.concatenate([posedirs, np.zeros((TEETH_VERTEX_COUNT,) + posedirs.shape[1:])])
    regressor = model["J_regressor"]
    regressor = np.asarray(regressor.toarray() if hasattr(regressor, "toarray") else regressor, dtype=np.float64)
    out["J_regressor"] = np.concatenate([regressor, np.zeros((regressor.shape[0], TEETH_VERTEX_COUNT))], axis=1)
    weights = np.asarray(getattr(model["weights"], "x", model["weights"]), dtype=np.float64)
    teeth_weights = np.zeros((TEETH_VERTEX_COUNT, weights.shape[1]))
    for start in UPPER_ROWS:
        teeth_weights[start : start + 15, NECK_JOINT] = 1.0
    for start in LOWER_ROWS:
        teeth_weights[start : start + 15, JAW_JOINT] = 1.0
    out["weights"] = np.concatenate([weights, teeth_weights])
    faces = np.asarray(model["f"])
    out["f"] = np.concatenate([faces, (teeth_faces() + n).astype(faces.dtype)])
    return out
