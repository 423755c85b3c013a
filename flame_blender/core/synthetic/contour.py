"""The synthetic head's dynamic jaw-contour table, taken from its own silhouettes.

The real table (``flame_dynamic_embedding.npy``, DECA's ``landmark_embedding.npy``) holds, for
each head yaw bin, the 17 jaw-contour points a face annotator would click: where the jaw and
cheek outline is in a picture of the turned head. On the far side (the side turning away from
the camera) that outline is the head's silhouette. This module builds the synthetic table the
same way, from geometry alone: it turns the synthetic head, casts rays along the view direction
(orthographic, ``-z``) through image rows, and records where the cheek's front surface ends.

Row order: the rows are laid out as the real files are. DECA, whose loader is the one whose
sign puts the real rows on the real template's silhouettes, indexes them with
``round(min(yaw_degrees, 39))``, and ``39 - a`` for negative ``a``
(``decalib/models/FLAME.py``): row ``k`` (0..39) is a head turned by ``+k`` degrees (face toward
+x, the head's left), row ``39 + k`` by ``-k``. Nothing here reads the project's own look-up.

Per row:
- the near-side points and the chin keep the frontal jaw line (they do not slide);
- each far-side point moves along its image row to the last point of the front surface before
  the silhouette (the ray there grazes the cheek or jaw; the next one misses the head or hits
  something well behind it, the ear or the neck).
"""

from __future__ import annotations

import numpy as np

from .geometry import HEAD_VERTICES, HeadMesh

N_ROWS = 79
N_POINTS = 17
MAX_DEGREES = 39
#: Far-side points slide onto the silhouette when their frontal place is this far from the
#: face's middle (metres): all but the chin.
SLIDING_MIN_X = 0.005
# Ray spacing along an image row (metres) and the depth drop between neighbouring rays that
# marks the end of a surface: a smooth surface drops at most sqrt(2 * radius * step) ~ 1.4 mm
# between rays this close, even right at a grazing point.
ROW_STEP = 0.00002
DEPTH_JUMP = 0.003
SCAN_LENGTH = 0.08
COARSE_STEP = 0.0005


def row_yaw_degrees() -> np.ndarray:
    """Yaw (degrees, + turns the face toward +x) of each row, as DECA indexes the real table."""
    return np.array([float(k) for k in range(MAX_DEGREES + 1)]
                    + [-float(k) for k in range(1, MAX_DEGREES + 1)])


def _turn(vertices: np.ndarray, degrees: float) -> np.ndarray:
    """Vertices turned by ``degrees`` about y (positive: the face, +z, toward +x)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return vertices @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T


def first_hits_on_row(vertices: np.ndarray, faces: np.ndarray, y: float, xs: np.ndarray):
    """Rays along -z through ``(x, y)`` for each ``x`` in ``xs (N,)``: the nearest hit's depth
    ``z (N,)`` (-inf for a miss), triangle ``(N,)`` (-1) and barycentric ``(N, 3)``."""
    tri = vertices[faces]  # (F, 3, 3)
    on_row = (tri[:, :, 1].min(axis=1) <= y) & (tri[:, :, 1].max(axis=1) >= y)
    candidates = np.nonzero(on_row)[0]
    a, b, c = (tri[candidates, k] for k in range(3))
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    usable = np.abs(det) > 1e-16
    a, b, c, det, candidates = a[usable], b[usable], c[usable], det[usable], candidates[usable]
    px = xs[:, None]
    l0 = ((b[:, 1] - c[:, 1]) * (px - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / det
    l1 = ((c[:, 1] - a[:, 1]) * (px - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / det
    l2 = 1.0 - l0 - l1
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    z = np.where(inside, l0 * a[:, 2] + l1 * b[:, 2] + l2 * c[:, 2], -np.inf)  # (N, C)
    best = np.argmax(z, axis=1) if z.shape[1] else np.zeros(len(xs), np.int64)
    rows = np.arange(len(xs))
    depth = z[rows, best] if z.shape[1] else np.full(len(xs), -np.inf)
    hit = np.isfinite(depth)
    triangle = np.where(hit, candidates[best] if len(candidates) else -1, -1)
    bary = np.stack([l0[rows, best], l1[rows, best], l2[rows, best]], axis=1) if z.shape[1] else np.zeros((len(xs), 3))
    return depth, triangle, np.where(hit[:, None], bary, 0.0)


def silhouette_on_row(vertices: np.ndarray, faces: np.ndarray, y: float, x_start: float, direction: float):
    """Walk image row ``y`` from ``x_start`` toward ``direction`` (+1 or -1) on the front surface
    and return ``(triangle, barycentric (3,))`` of its last point before the silhouette, or
    None when the row holds no such end within :data:`SCAN_LENGTH`."""
    # Coarse rays first. Near a grazing point (or on a steep but smooth slope) they may see an
    # end that is not one; each end they see is checked with fine rays from one coarse step
    # before to one after, and the walk goes on past false ones.
    coarse = x_start + direction * np.arange(0.0, SCAN_LENGTH, COARSE_STEP)
    depth, _, _ = first_hits_on_row(vertices, faces, y, coarse)
    if not np.isfinite(depth[0]):
        return None
    ended = ~np.isfinite(depth[1:]) | (depth[1:] < depth[:-1] - DEPTH_JUMP)
    for k in np.nonzero(ended)[0]:
        xs = coarse[k] + direction * np.arange(0.0, 2 * COARSE_STEP, ROW_STEP)
        fine, triangle, bary = first_hits_on_row(vertices, faces, y, xs)
        fine_ended = ~np.isfinite(fine[1:]) | (fine[1:] < fine[:-1] - DEPTH_JUMP)
        if np.isfinite(fine[0]) and fine_ended.any():
            last = int(np.argmax(fine_ended))  # the last ray on the front surface
            weights = np.clip(bary[last], 0.0, None)
            return int(triangle[last]), weights / weights.sum()
        if not np.isfinite(depth[k + 1]):
            return None  # left the head without a clear end (should not happen)
    return None


def dynamic_contour_table(mesh: HeadMesh, frontal_faces: np.ndarray, frontal_bary: np.ndarray):
    """The 79 x 17 contour table: face indices int64 ``(79, 17)``, barycentric ``(79, 17, 3)``.

    ``frontal_faces (17,)`` / ``frontal_bary (17, 3)``: the jaw line of the unturned head (iBUG
    order: point 0 on the head's right, -x; 8 the chin; 16 on its left, +x).
    """
    head_faces = np.nonzero(mesh.faces.max(axis=1) < HEAD_VERTICES)[0]
    faces = mesh.faces[head_faces]
    frontal = np.einsum("lkc,lk->lc", mesh.vertices[mesh.faces[frontal_faces]], frontal_bary)
    table_faces = np.tile(frontal_faces, (N_ROWS, 1))
    table_bary = np.tile(frontal_bary, (N_ROWS, 1, 1))
    for row, yaw in enumerate(row_yaw_degrees()):
        if yaw == 0.0:
            continue
        turned = _turn(mesh.vertices, yaw)
        # turning the face toward +x takes its +x side away from the camera
        side = 1.0 if yaw > 0 else -1.0
        far = [i for i in range(N_POINTS) if np.sign(frontal[i, 0]) == side and abs(frontal[i, 0]) >= SLIDING_MIN_X]
        for i in far:
            start = _turn(frontal[i][None], yaw)[0]
            # start inside the face from the turned frontal point, so the walk crosses the
            # cheek's whole front surface whether the frontal point is still seen or hidden
            x_start = start[0] - side * 0.02
            found = silhouette_on_row(turned, faces, float(start[1]), x_start, side)
            if found is not None:
                table_faces[row, i] = head_faces[found[0]]
                table_bary[row, i] = found[1]
    return table_faces, table_bary
