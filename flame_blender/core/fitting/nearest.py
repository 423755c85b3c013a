"""Nearest neighbours and normals without scipy (Blender's Python has none), numpy only.

Distances come from ``|q|^2 - 2 q.p + |p|^2`` in chunks of queries, so memory stays at
``chunk x len(points)`` and the heavy part is one matrix product per chunk.
"""

from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 1 << 22


def nearest(queries: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``queries (M, 3)`` the index (int64 ``(M,)``) of the nearest of ``points
    (N, 3)`` and the distance (``(M,)``)."""
    queries = np.asarray(queries, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(axis=0)  # centring keeps the expanded square accurate
    q = queries - centre
    p = points - centre
    p_squared = (p * p).sum(1)
    index = np.empty(len(q), dtype=np.int64)
    distance = np.empty(len(q))
    chunk = max(1, CHUNK_ELEMENTS // max(len(p), 1))
    for start in range(0, len(q), chunk):
        block = q[start : start + chunk]
        d = p_squared - 2.0 * (block @ p.T)
        found = np.argmin(d, axis=1)
        index[start : start + chunk] = found
        exact = block - p[found]
        distance[start : start + chunk] = np.sqrt((exact * exact).sum(1))
    return index, distance


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` of ``vertices (V, 3)``, ``faces (F, 3)``."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-30)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points ``(count, 3)`` spread uniformly (by area) over a triangle mesh."""
    corners = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    chosen = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    c = corners[chosen]
    return c[:, 0] + u[:, None] * (c[:, 1] - c[:, 0]) + v[:, None] * (c[:, 2] - c[:, 0])
