"""Vertex masks and landmark embeddings of the synthetic head.

Masks have FLAME_masks.pkl's exact names, order and sizes; each region is the given number of
vertices nearest a region centre (under an axis-scaled distance), so sizes match exactly.
Landmarks are placed in the iBUG 68 layout on the face, found by casting rays at the mesh.
"""

from __future__ import annotations

import numpy as np

from .contour import dynamic_contour_table
from .geometry import (
    BROW_Y,
    CHIN_Y,
    EAR_Y,
    EAR_Z,
    EYE_X,
    EYE_Y,
    FOREHEAD_Y,
    HEAD_VERTICES,
    LEFT_EYEBALL,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    NOSE_TIP_Y,
    NOSTRIL_Y,
    RIGHT_EYEBALL,
    HeadMesh,
)

MASK_SIZES = {
    "eye_region": 751, "neck": 253, "left_eyeball": 546, "right_eyeball": 546,
    "right_ear": 588, "right_eye_region": 287, "forehead": 133, "lips": 254, "nose": 379,
    "scalp": 489, "boundary": 114, "face": 1787, "left_ear": 588, "left_eye_region": 287,
}
LIPS_DUPLICATES = 4


def _nearest(points: np.ndarray, centre, scale, count: int) -> np.ndarray:
    d = (((points - np.asarray(centre)) / np.asarray(scale)) ** 2).sum(axis=1)
    return np.argsort(d, kind="stable")[:count]


def flame_masks(mesh: HeadMesh) -> dict[str, np.ndarray]:
    """The 14 regions of FLAME_masks.pkl, in its order, as int64 vertex indices."""
    head = mesh.vertices[:HEAD_VERTICES]
    eye_left, eye_right = mesh.eye_centres
    front = np.where(head[:, 2] > 0.0, 0.0, 10.0)[:, None] * np.array([0, 0, 1.0])

    def region(centre, scale, count, points=head):
        return np.sort(_nearest(points, centre, scale, count)).astype(np.int64)

    masks = {
        "eye_region": region((0, EYE_Y, 0.085), (2.2, 1.0, 1.0), 751),
        # the neck: the lowest vertices (nearest a point far below, judged by height)
        "neck": region((0, -0.4, 0), (100.0, 1.0, 100.0), 253),
        "left_eyeball": np.arange(LEFT_EYEBALL.start, LEFT_EYEBALL.stop, dtype=np.int64),
        "right_eyeball": np.arange(RIGHT_EYEBALL.start, RIGHT_EYEBALL.stop, dtype=np.int64),
        "right_ear": region((-0.085, EAR_Y, EAR_Z), (1.0, 1.0, 1.0), 588),
        "right_eye_region": region(eye_right + (0, 0, 0.012), (1.0, 1.0, 1.0), 287),
        "forehead": region((0, FOREHEAD_Y, 0.09), (2.5, 1.0, 1.0), 133),
        "nose": region((0, NOSE_TIP_Y + 0.012, 0.11), (1.0, 1.6, 1.0), 379),
        "scalp": region((0, 0.14, -0.03), (1.0, 1.0, 1.0), 489),
        "face": region((0, (EYE_Y + CHIN_Y) / 2, 0.12), (1.3, 1.8, 1.0), 1787, head + front),
        "left_ear": region((0.085, EAR_Y, EAR_Z), (1.0, 1.0, 1.0), 588),
        "left_eye_region": region(eye_left + (0, 0, 0.012), (1.0, 1.0, 1.0), 287),
    }
    # boundary: the open neck rim, then the vertices just above it
    order = np.lexsort((head[:, 1], -mesh.ring_of_vertex[:HEAD_VERTICES]))
    masks["boundary"] = np.sort(order[:MASK_SIZES["boundary"]]).astype(np.int64)
    # lips: like the real file, not sorted and with a few vertices listed twice
    lips = _nearest(head, (0, MOUTH_Y, 0.1), (1.6, 1.0, 1.0),
                    MASK_SIZES["lips"] - LIPS_DUPLICATES)
    angle = np.arctan2(head[lips, 1] - MOUTH_Y, head[lips, 0])
    lips = lips[np.argsort(angle, kind="stable")]
    lips = np.concatenate([lips, lips[[3, 50, 120, 200]]]).astype(np.int64)
    masks["lips"] = lips
    return {name: masks[name] for name in MASK_SIZES}


# --- landmarks -------------------------------------------------------------------------

def _ibug68_xy() -> np.ndarray:
    """The 68 iBUG points on the face, (68, 2) x/y in metres (subject's right is -x)."""
    t = np.linspace(0.0, np.pi, 17)
    top, bottom = EYE_Y - 0.004, CHIN_Y - 0.012
    jaw = np.stack([-0.062 * np.cos(t) * (1 - 0.45 * np.sin(t) ** 3),
                    # from the ears (eye height) down to the chin's lowest point at t = pi / 2
                    top - (top - bottom) * np.sin(t) ** 1.6], axis=1)
    brow_right = np.array([[-0.054, -0.006], [-0.045, 0.001], [-0.034, 0.004], [-0.023, 0.003],
                           [-0.012, 0.0]]) + np.array([0.0, BROW_Y - 0.002])
    brow_left = brow_right[::-1] * np.array([-1.0, 1.0])
    nose_bridge = np.stack([np.zeros(4), np.linspace(EYE_Y, NOSE_TIP_Y, 4)], axis=1)
    nostrils = np.array([[-0.012, 0.002], [-0.006, 0.0], [0, -0.001], [0.006, 0.0],
                         [0.012, 0.002]]) + np.array([0.0, NOSTRIL_Y])
    eye = np.array([[-0.013, 0.0], [-0.006, 0.0035], [0.005, 0.0035], [0.012, 0.0],
                    [0.005, -0.003], [-0.006, -0.003]])
    eye_right = eye + np.array([-EYE_X, EYE_Y])
    eye_left = (eye * np.array([-1.0, 1.0]))[[3, 2, 1, 0, 5, 4]] + np.array([EYE_X, EYE_Y])
    w = MOUTH_HALF_WIDTH
    mouth_outer = np.array([[-w, 0], [-0.65 * w, 0.0065], [-0.28 * w, 0.0095], [0, 0.0085],
                            [0.28 * w, 0.0095], [0.65 * w, 0.0065], [w, 0], [0.65 * w, -0.008],
                            [0.28 * w, -0.0115], [0, -0.012], [-0.28 * w, -0.0115],
                            [-0.65 * w, -0.008]]) + np.array([0.0, MOUTH_Y])
    mouth_inner = np.array([[-0.85 * w, 0], [-0.35 * w, 0.002], [0, 0.002], [0.35 * w, 0.002],
                            [0.85 * w, 0], [0.35 * w, -0.002], [0, -0.002],
                            [-0.35 * w, -0.002]]) + np.array([0.0, MOUTH_Y])
    return np.concatenate([jaw, brow_right, brow_left, nose_bridge, nostrils, eye_right,
                           eye_left, mouth_outer, mouth_inner])


def _extra_mediapipe_xy() -> np.ndarray:
    """54 more face points for the MediaPipe embedding: the face oval and eye/cheek points."""
    t = np.linspace(0.0, 2 * np.pi, 36, endpoint=False)
    middle = (FOREHEAD_Y + CHIN_Y) / 2
    oval = np.stack([0.058 * np.sin(t), middle + (FOREHEAD_Y - CHIN_Y + 0.02) / 2 * np.cos(t)],
                    axis=1)
    s = np.linspace(0.0, 2 * np.pi, 5, endpoint=False) + 0.3
    rings = []
    for cx in (-EYE_X, EYE_X):
        rings.append(np.stack([cx + 0.008 * np.cos(s), EYE_Y + 0.0025 * np.sin(s)], axis=1))
    cheeks = np.array([[-0.045, EYE_Y - 0.035], [0.045, EYE_Y - 0.035], [-0.035, MOUTH_Y],
                       [0.035, MOUTH_Y], [0, FOREHEAD_Y], [-0.03, FOREHEAD_Y - 0.01],
                       [0.03, FOREHEAD_Y - 0.01], [0, CHIN_Y]])
    return np.concatenate([oval, *rings, cheeks])


def project_to_mesh(mesh: HeadMesh, xy: np.ndarray, head_yaw: float = 0.0):
    """Face index and barycentric coordinates where rays along -z hit the head first.

    The head is first turned by ``head_yaw`` radians about y (positive turns the face toward
    +x). Only head triangles are hit. Returns int64 (L,) and float64 (L, 3), coordinates > 0.
    """
    c, s = np.cos(head_yaw), np.sin(head_yaw)
    rotation = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    v = mesh.vertices @ rotation.T
    head_faces = np.nonzero(mesh.faces.max(axis=1) < HEAD_VERTICES)[0]
    tri = v[mesh.faces[head_faces]]
    a, b, cc = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    faces = np.empty(len(xy), dtype=np.int64)
    bary = np.empty((len(xy), 3))
    det = (b[:, 1] - cc[:, 1]) * (a[:, 0] - cc[:, 0]) + (cc[:, 0] - b[:, 0]) * (a[:, 1] - cc[:, 1])
    for i, (px, py) in enumerate(xy):
        with np.errstate(divide="ignore", invalid="ignore"):
            l0 = ((b[:, 1] - cc[:, 1]) * (px - cc[:, 0]) + (cc[:, 0] - b[:, 0]) * (py - cc[:, 1])) / det
            l1 = ((cc[:, 1] - a[:, 1]) * (px - cc[:, 0]) + (a[:, 0] - cc[:, 0]) * (py - cc[:, 1])) / det
        l2 = 1 - l0 - l1
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (np.abs(det) > 1e-14)
        if not inside.any():
            raise ValueError(f"landmark {i} at {px, py} misses the head")
        z = l0 * tri[:, 0, 2] + l1 * tri[:, 1, 2] + l2 * tri[:, 2, 2]
        z[~inside] = -np.inf
        k = int(np.argmax(z))
        weights = np.clip(np.array([l0[k], l1[k], l2[k]]), 1e-3, None)
        faces[i] = head_faces[k]
        bary[i] = weights / weights.sum()
    return faces, bary


def landmark_embeddings(mesh: HeadMesh) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(face indices, barycentric) for 'static_68', 'static_51', 'mediapipe', plus the 79 x 17
    dynamic contour under 'dynamic_contour' and the MediaPipe ids under 'mediapipe_ids'."""
    ibug = _ibug68_xy()
    f68, b68 = project_to_mesh(mesh, ibug)
    mediapipe_xy = np.concatenate([ibug[17:], _extra_mediapipe_xy()])
    f_mp, b_mp = project_to_mesh(mesh, mediapipe_xy)
    mediapipe_ids = np.sort(np.random.default_rng(468).choice(468, 105, replace=False))
    # the jaw contour per yaw bin, from the turned head's silhouettes (see .contour)
    dyn_faces, dyn_bary = dynamic_contour_table(mesh, f68[:17], b68[:17])
    return {
        "static_68": (f68, b68),
        "static_51": (f68[17:], b68[17:]),
        "mediapipe": (f_mp, b_mp),
        "mediapipe_ids": (mediapipe_ids.astype(np.int64), None),
        "dynamic_contour": (dyn_faces, dyn_bary),
    }
