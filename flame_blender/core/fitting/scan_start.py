"""The rigid start of a scan fit without landmarks: principal axes, then trimmed ICP from each.

A head scan's principal axes match the model's only up to order and sign (and the missing back
of the head tilts them), so every proper rotation that maps the scan's axes onto the model's
(24 of them) is tried with a few iterations of trimmed ICP; the best few distinct placements
(more than 45 degrees apart) are refined and returned best first, by their two-way trimmed
distance. The scale is the unit's (a fitted scale comes later). ICP of a template cannot
follow a bent neck or another identity, so the caller fits coarsely from these starts.

A scan that misses the back of the head is a cap, and a sphere fitted to a cap has its centre
behind the surface: the way from that centre to the points' mean is the way the face looks
(within some 50 degrees, the neck and ears tilt it). The model's face region gives the same
direction on the model, so ICP results that turn the face away from the scan are dropped before
ICP is trusted, whose distances alone cannot tell a face from the inside of a back-to-front cap.
"""

from __future__ import annotations

import itertools

import numpy as np

from .nearest import nearest
from .rigid import similarity

TRIM = 0.8  # the closest 80 % of pairs count, the rest is missing or extra geometry
#: A cap whose mean lies less than this fraction of its sphere's radius from the centre is a
#: whole head (no side missing): then no facing is assumed.
CAP_FRACTION = 0.12
#: The least cosine between the model's facing, turned, and the scan's (about 70 degrees).
FACING = 0.34
#: Rolls about the scan's facing tried as starts besides the principal axes' 24.
ROLLS = 12
#: Rigid placements closer than 45 degrees count as one (trace of R1^T R2 = 1 + 2 cos angle).
DISTINCT_TRACE = 1.0 + 2.0 * np.cos(np.radians(45.0))


def axis_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that permute and flip the coordinate axes."""
    out = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[np.arange(3), order] = signs
            if np.linalg.det(matrix) > 0:
                out.append(matrix)
    return out


def _axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    return centre, vt  # rows: principal directions


def cap_direction(points: np.ndarray) -> np.ndarray | None:
    """Unit direction ``(3,)`` from the centre of the sphere fitted to ``points (N, 3)`` (an
    algebraic least-squares fit) to their mean, or None when the points close around it."""
    design = np.c_[2.0 * points, np.ones(len(points))]
    solution = np.linalg.lstsq(design, (points * points).sum(1), rcond=None)[0]
    centre = solution[:3]
    radius = np.sqrt(max(solution[3] + centre @ centre, 1e-30))
    offset = points.mean(axis=0) - centre
    length = float(np.linalg.norm(offset))
    return offset / length if length > CAP_FRACTION * radius else None


def _about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation ``(3, 3)`` by ``angle`` about the unit ``axis``."""
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


def _turning(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least rotation ``(3, 3)`` taking unit ``source`` to unit ``target``."""
    axis = np.cross(source, target)
    length = float(np.linalg.norm(axis))
    if length < 1e-9:
        return np.eye(3) if source @ target > 0 else _about(np.linalg.svd(source[None])[2][1], np.pi)
    return _about(axis / length, float(np.arctan2(length, source @ target)))


def _icp(model_points: np.ndarray, face_points: np.ndarray, scan: np.ndarray, rotation: np.ndarray, translation: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Trimmed two-way ICP of the model onto the scan from ``(R, t)``; returns ``(R, t, score)``
    for the model at its own size (a free scale while turning lets a template match heads of
    any size; the result keeps the model's centroid where the scaled one went)."""
    score = np.inf
    centroid = model_points.mean(axis=0)
    size = 1.0
    for _ in range(steps + 1):
        moved = (size * model_points) @ rotation.T + translation
        moved_face = (size * face_points) @ rotation.T + translation
        to_model, d_scan = nearest(scan, moved)
        to_scan, d_face = nearest(moved_face, scan)
        keep_scan = d_scan <= np.quantile(d_scan, TRIM)
        keep_face = d_face <= np.quantile(d_face, TRIM)
        score = float(d_scan[keep_scan].mean() + d_face[keep_face].mean())
        source = np.concatenate([model_points[to_model[keep_scan]], face_points[keep_face]])
        target = np.concatenate([scan[keep_scan], scan[to_scan[keep_face]]])
        size, rotation, translation = similarity(source, target, with_scale=True)
    return rotation, translation + rotation @ ((size - 1.0) * centroid), score


def rigid_starts(model_points: np.ndarray, face_points: np.ndarray, scan: np.ndarray, keep: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``keep`` best ``(R, t)`` placing model points (metres, the head's rest pose) onto
    ``scan (N, 3)`` (metres), best first; ``face_points`` are the face region's model points,
    which a scan must show. The caller tells the best apart by fitting from each."""
    model_centre, model_axes = _axes(model_points)
    scan_centre, scan_axes = _axes(scan)
    model_facing = cap_direction(face_points)
    scan_facing = cap_direction(scan)

    def facing(rotation: np.ndarray) -> float:
        if model_facing is None or scan_facing is None:
            return 1.0
        return float((rotation @ model_facing) @ scan_facing)

    candidates = []
    for flip in axis_rotations():
        rotation = scan_axes.T @ flip @ model_axes
        translation = scan_centre - rotation @ model_centre
        candidates.append(_icp(model_points, face_points, scan, rotation, translation, steps=3))
    if model_facing is not None and scan_facing is not None:
        # and the face turned to look where the scan's cap does, rolled every 30 degrees
        face_centre = face_points.mean(axis=0)
        for roll in range(ROLLS):
            rotation = _about(scan_facing, 2.0 * np.pi * roll / ROLLS) @ _turning(model_facing, scan_facing)
            translation = scan_centre - rotation @ face_centre
            candidates.append(_icp(model_points, face_points, scan, rotation, translation, steps=3))
    # ICP may still turn a start round: keep the results that face the scan, if any do
    candidates = [c for c in candidates if facing(c[0]) > FACING] or candidates
    candidates.sort(key=lambda found: found[2])
    refined = [_icp(model_points, face_points, scan, r, t, steps=25) for r, t, _ in _distinct(candidates)[:keep]]
    refined = [c for c in refined if facing(c[0]) > FACING] or refined
    refined.sort(key=lambda found: found[2])
    return [(r, t) for r, t, _ in _distinct(refined)]


def _distinct(candidates: list) -> list:
    """``candidates`` (best first) less those within 45 degrees of a better one's rotation: ICP
    from many starts lands on the same few placements, and a duplicate would waste a probe."""
    kept = []
    for candidate in candidates:
        if all(np.trace(candidate[0].T @ other[0]) < DISTINCT_TRACE for other in kept):
            kept.append(candidate)
    return kept
