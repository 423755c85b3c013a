"""The rigid start of a scan fit without landmarks: principal axes, then trimmed ICP from each.

A head scan's principal axes match the model's only up to order and sign (and the missing back
of the head tilts them), so every proper rotation that maps the scan's axes onto the model's
(24 of them) is tried with a few iterations of trimmed ICP; the best few are refined, and the
lowest two-way trimmed distance wins. The scale is the unit's (a fitted scale comes later).
"""

from __future__ import annotations

import itertools

import numpy as np

from .nearest import nearest
from .rigid import similarity

TRIM = 0.8  # the closest 80 % of pairs count, the rest is missing or extra geometry


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
    candidates = []
    for flip in axis_rotations():
        rotation = scan_axes.T @ flip @ model_axes
        translation = scan_centre - rotation @ model_centre
        candidates.append(_icp(model_points, face_points, scan, rotation, translation, steps=3))
    candidates.sort(key=lambda found: found[2])
    refined = [_icp(model_points, face_points, scan, r, t, steps=25) for r, t, _ in candidates[:keep]]
    refined.sort(key=lambda found: found[2])
    return [(r, t) for r, t, _ in refined]
