"""Exact point-sampled ground truth of a triangle mesh: for every pixel centre, the nearest
surface hit of the camera ray through it, in float64 NumPy (no Blender).

This is what a path tracer measures with one sample per pixel and a vanishing pixel filter (the
batch renderer's former second Cycles render), without the renderer: depth is the exact
ray/plane intersection (perspective-correct), and the hit's barycentric weights interpolate
anything given per vertex (smooth normals) or per triangle (labels).

The camera is :mod:`.camera`'s pinhole (OpenCV axes, pixel centres at ``(i + 0.5, j + 0.5)``).
A pixel centre's ray is ``d = ((u - cx) / fx, (v - cy) / fy, 1)``; it meets the line through
the camera centre and triangle ``ABC`` where the triple products ``w_A = d · (B × C)``,
``w_B = d · (C × A)``, ``w_C = d · (A × B)`` all have one sign, with barycentric weights
``w / (w_A + w_B + w_C)`` and camera z ``det[A, B, C] / (w_A + w_B + w_C)``. These tests are
made in 3D, so a triangle crossing the camera plane needs no clipping; a hit counts only
between the near and far clip planes (camera z), as in Cycles, whose rays start on the near
plane. Edges are inclusive, and the two triangles sharing an edge compute its triple product
from the same two vertices in opposite order, which negates it exactly in floating point: a
pixel centre on a shared edge is inside at least one of them, never in a crack.

Speed: the candidate pixel centres are the triangles' pixel boxes, cut into tiles of at most
4 x 4 pixels; tiles are grouped by size (padded to squares of side 2, 3 or 4) and each group
is tested in one broadcast; the nearest hit per pixel is found with a depth buffer
(``np.minimum.at``). Front faces go first, and a back face's tile is skipped where every pixel
it covers already holds a nearer hit (the block maxima of that depth buffer), which removes
most back faces of a head, half the candidates. No Python loop runs per pixel or per triangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Pixels of slack around a projected box, against rounding in the projection (the exact 3D
#: test decides which candidates are hit).
_BOX_SLACK = 1e-6
#: Candidates tested in one broadcast at most (bounds the memory of large triangles).
_CHUNK = 1 << 18
#: Pixel boxes wider or taller than this are cut into tiles of at most this side.
_TILE = 4


@dataclass(frozen=True)
class RasterHits:
    """The nearest hit of each pixel centre's ray that sees a surface (K such pixels).

    ``pixels (K,)`` int64 flat pixel indices ``row * width + column`` (row 0 = top), ascending;
    ``triangle (K,)`` int64 the hit triangle; ``depth (K,)`` float64 the hit's camera z;
    ``barycentric (3, K)`` float64 the weights of the triangle's corners at the hit;
    ``backfacing (K,)`` bool whether the ray sees the triangle's back (its geometric normal
    ``(B - A) x (C - A)`` points away from the camera).
    """

    width: int
    height: int
    pixels: np.ndarray
    triangle: np.ndarray
    depth: np.ndarray
    barycentric: np.ndarray
    backfacing: np.ndarray

    def image(self, values: np.ndarray, background=0, dtype=None) -> np.ndarray:
        """Per-hit ``values (K, ...)`` as an image ``(H, W, ...)``, ``background`` elsewhere."""
        values = np.asarray(values)
        image = np.full(
            (self.height * self.width, *values.shape[1:]), background, dtype or values.dtype
        )
        image[self.pixels] = values
        return image.reshape(self.height, self.width, *values.shape[1:])

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool: True where the ray hits a surface."""
        mask = np.zeros(self.height * self.width, bool)
        mask[self.pixels] = True
        return mask.reshape(self.height, self.width)


def rasterize(
    vertices: np.ndarray,
    triangles: np.ndarray,
    world_to_camera: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    size: tuple[int, int],
    clip: tuple[float, float] = (1e-6, np.inf),
) -> RasterHits:
    """The nearest hit of every pixel centre's camera ray on a triangle mesh.

    Args:
        vertices: ``(V, 3)`` world points (any float type; computed in float64).
        triangles: ``(T, 3)`` vertex indices.
        world_to_camera: ``(4, 4)`` world -> OpenCV camera axes (:mod:`.camera`).
        intrinsics: ``(fx, fy, cx, cy)`` pixels.
        size: ``(width, height)`` pixels.
        clip: ``(near, far)`` camera z: a hit counts when ``near < z <= far`` (``near > 0``;
            Cycles' rays start on the camera's ``clip_start`` plane).
    """
    width, height = int(size[0]), int(size[1])
    fx, fy, cx, cy = (float(value) for value in intrinsics)
    near, far = float(clip[0]), float(clip[1])
    if not near > 0.0:
        raise ValueError(f"the near clip plane must be in front of the camera, got {near}")
    matrix = np.asarray(world_to_camera, np.float64)
    # camera-space points as rows x, y, z; triangle corners as rows A, B, C: contiguous (N,)
    # arrays, which NumPy handles fastest
    points = _transform(matrix[:3, :3], np.asarray(vertices, np.float64).reshape(-1, 3).T) + matrix[:3, 3:]
    corner_index = np.ascontiguousarray(np.asarray(triangles, np.int64).reshape(-1, 3).T)  # (3, T)
    corners = [[points[axis].take(corner_index[k]) for axis in range(3)] for k in range(3)]
    planes = np.empty((3, 3, corner_index.shape[1]))  # [edge plane, axis, triangle]
    for k in range(3):  # w_A = d . (B x C), w_B = d . (C x A), w_C = d . (A x B)
        _cross(corners[(k + 1) % 3], corners[(k + 2) % 3], planes[k])
    volume = corners[0][0] * planes[0, 0] + corners[0][1] * planes[0, 1] + corners[0][2] * planes[0, 2]
    # A ray hits the plane in front of the camera only where d . n has det[A, B, C]'s sign:
    # with the planes of triangles of negative det negated, a hit is where all three w >= 0.
    # (Negating both triangles' planes of an edge keeps them exact opposites.)
    backfacing_triangle = volume > 0.0  # (B - A) x (C - A) points away from the camera
    planes *= np.where(backfacing_triangle, 1.0, -1.0)
    volume = np.abs(volume)
    columns, rows = _pixel_boxes(points, corner_index, near, (fx, fy, cx, cy), width, height)
    columns[1][volume == 0.0] = -1  # seen edge-on (or degenerate): no hit in front
    # Front faces first. A back face's tile is then skipped where the front faces already hold
    # every pixel it covers, nearer than its nearest corner (most back faces of a head: half
    # the candidates); the rest is tested as the front faces were.
    closest = np.minimum(np.minimum(corners[0][2], corners[1][2]), corners[2][2])
    found, covered = [], None
    for back in (False, True):
        if back and found:
            covered = _block_maxima(found, width, height)
        for tiles, side in _tile_groups(rows, columns, backfacing_triangle == back):
            if covered is not None:
                tiles = _hidden_tiles_removed(tiles, covered, closest)
            if len(tiles[0]):
                found.append(_tile_hits(tiles, side, planes[:, :, tiles[0]], volume[tiles[0]],
                                        (fx, fy, cx, cy), width, near, far))
    if found:
        pixels, triangle, depth, *weights = (np.concatenate(part) for part in zip(*found, strict=True))
    else:
        pixels, triangle, depth = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        weights = [np.empty(0)] * 3
    # nearest hit per pixel: a depth buffer, then the hit that holds each pixel's depth (of
    # hits at exactly the same depth, as on an edge that two triangles share, the last)
    nearest = np.full(width * height, np.inf)
    np.minimum.at(nearest, pixels, depth)
    front = np.flatnonzero(depth == nearest.take(pixels))
    winner = np.full(width * height, -1, np.int64)
    winner[pixels.take(front)] = front
    keep = winner[winner >= 0]  # in pixel order
    weights = np.stack([w.take(keep) for w in weights])
    triangle = triangle.take(keep)
    return RasterHits(
        width=width,
        height=height,
        pixels=pixels.take(keep),
        triangle=triangle,
        depth=depth.take(keep),
        barycentric=weights / weights.sum(axis=0),
        backfacing=backfacing_triangle.take(triangle),
    )


def _transform(matrix: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``matrix (3, 3) @ columns (3, N)`` without BLAS, whose threads would busy-wait on the
    cores a renderer is using after a product this size."""
    return np.stack([matrix[i, 0] * columns[0] + matrix[i, 1] * columns[1] + matrix[i, 2] * columns[2] for i in range(3)])


def _cross(a: list[np.ndarray], b: list[np.ndarray], out: np.ndarray) -> None:
    """``a x b`` of vectors given as ``(T,)`` x, y, z arrays into ``out (3, T)``; ``b x a``
    gives exactly ``-(a x b)``."""
    out[0] = a[1] * b[2] - a[2] * b[1]
    out[1] = a[2] * b[0] - a[0] * b[2]
    out[2] = a[0] * b[1] - a[1] * b[0]


def _pixel_boxes(
    points: np.ndarray, corner_index: np.ndarray, near: float,
    intrinsics: tuple[float, float, float, float], width: int, height: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per triangle (``points (3, V)`` camera x, y, z; ``corner_index (3, T)``), the first and
    last pixel column and row whose centres its part in front of the near plane can cover:
    ``[first, last]`` columns, ``[first, last]`` rows, ``(T,)`` int64 each, clipped to the
    image (empty when last < first)."""
    fx, fy, cx, cy = intrinsics
    in_front = points[2] >= near
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(in_front, fx * points[0] / points[2] + cx, np.nan)
        v = np.where(in_front, fy * points[1] / points[2] + cy, np.nan)
    # NaN (a corner behind the near plane) spreads through minimum and maximum
    u_corners = [u.take(index) for index in corner_index]
    v_corners = [v.take(index) for index in corner_index]
    u_low = np.minimum(np.minimum(u_corners[0], u_corners[1]), u_corners[2])
    u_high = np.maximum(np.maximum(u_corners[0], u_corners[1]), u_corners[2])
    v_low = np.minimum(np.minimum(v_corners[0], v_corners[1]), v_corners[2])
    v_high = np.maximum(np.maximum(v_corners[0], v_corners[1]), v_corners[2])
    # a triangle with a corner behind the near plane: the part in front is bounded by its
    # corners in front and the points where its edges cross the plane
    clipped = np.flatnonzero(np.isnan(u_low))
    if len(clipped):
        corners = points.T[corner_index[:, clipped].T]  # (n, 3, 3)
        following = np.roll(corners, -1, axis=1)
        z, following_z = corners[..., 2], following[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            on_plane = corners + ((near - z) / (following_z - z))[..., None] * (following - corners)
            outline = np.concatenate([corners, on_plane], axis=1)  # (n, 6, 3)
            valid = np.concatenate([z >= near, (z - near) * (following_z - near) < 0.0], axis=1)
            outline_u = fx * outline[..., 0] / outline[..., 2] + cx
            outline_v = fy * outline[..., 1] / outline[..., 2] + cy
        # (all NaN again when the triangle is wholly behind the plane)
        u_low[clipped] = np.where(valid, outline_u, np.inf).min(axis=1)
        u_high[clipped] = np.where(valid, outline_u, -np.inf).max(axis=1)
        v_low[clipped] = np.where(valid, outline_v, np.inf).min(axis=1)
        v_high[clipped] = np.where(valid, outline_v, -np.inf).max(axis=1)
    # centres i + 0.5 inside [low, high]; infinite or NaN: nothing (a corner just in front of
    # the near plane may project very far, hence the clipping before the casts)
    with np.errstate(invalid="ignore"):
        first_column = np.clip(np.ceil(u_low - 0.5 - _BOX_SLACK), 0, width)
        last_column = np.clip(np.floor(u_high - 0.5 + _BOX_SLACK), -1, width - 1)
        first_row = np.clip(np.ceil(v_low - 0.5 - _BOX_SLACK), 0, height)
        last_row = np.clip(np.floor(v_high - 0.5 + _BOX_SLACK), -1, height - 1)
    empty = np.isnan(first_column) | np.isnan(last_column) | np.isnan(first_row) | np.isnan(last_row)
    last_column[empty] = -1
    first_column[empty] = 0
    first_row[np.isnan(first_row)] = 0
    last_row[np.isnan(last_row)] = -1
    return ([first_column.astype(np.int64), last_column.astype(np.int64)],
            [first_row.astype(np.int64), last_row.astype(np.int64)])


def _block_maxima(found, width: int, height: int) -> np.ndarray:
    """Per block of :data:`_TILE` x :data:`_TILE` pixels, the largest of its pixels' nearest
    depth among the hits ``found`` so far (inf when a pixel has none)."""
    pixels, depth = np.concatenate([part[0] for part in found]), np.concatenate([part[2] for part in found])
    rows, columns = -(-height // _TILE) * _TILE, -(-width // _TILE) * _TILE
    nearest = np.full((rows, columns), np.inf)
    np.minimum.at(nearest.reshape(-1), (pixels // width) * columns + pixels % width, depth)
    across = np.maximum.reduce([nearest[:, k::_TILE] for k in range(_TILE)])
    return np.maximum.reduce([across[k::_TILE] for k in range(_TILE)])


def _hidden_tiles_removed(tiles, covered: np.ndarray, closest: np.ndarray):
    """``tiles`` without those whose pixels all hold a hit nearer than their triangle's nearest
    corner (``closest (T,)`` camera z): blocks ``covered`` (:func:`_block_maxima`). A tile of at
    most :data:`_TILE` pixels a side overlaps at most 2 x 2 blocks."""
    triangle, first_row, first_column, last_row, last_column = tiles
    top, bottom = first_row // _TILE, last_row // _TILE
    left, right = first_column // _TILE, last_column // _TILE
    farthest = np.maximum(
        np.maximum(covered[top, left], covered[top, right]),
        np.maximum(covered[bottom, left], covered[bottom, right]),
    )
    keep = np.flatnonzero(closest.take(triangle) <= farthest)
    return tuple(part.take(keep) for part in tiles)


def _tile_groups(rows, columns, chosen):
    """The candidate pixels of the ``chosen (T,)`` triangles: each one's pixel box, cut into
    tiles of at most :data:`_TILE` pixels a side, the tiles grouped by size (padded to
    squares). Yields ``(tiles, side)``: ``tiles`` = ``(triangle, first row, first column,
    last row, last column)``, ``(n,)`` each, at most :data:`_CHUNK` candidates."""
    count_rows = rows[1] - rows[0] + 1
    count_columns = columns[1] - columns[0] + 1
    boxed = np.flatnonzero((count_rows > 0) & (count_columns > 0) & chosen)
    if not len(boxed):
        return
    tile_columns = -(-count_columns[boxed] // _TILE)
    per_triangle = -(-count_rows[boxed] // _TILE) * tile_columns
    owner = np.repeat(np.arange(len(boxed)), per_triangle)
    tile_row, tile_column = np.divmod(
        np.arange(len(owner)) - np.repeat(np.cumsum(per_triangle) - per_triangle, per_triangle),
        tile_columns[owner],
    )
    triangle = boxed[owner]
    first_row = rows[0][triangle] + _TILE * tile_row
    first_column = columns[0][triangle] + _TILE * tile_column
    last_row = np.minimum(first_row + (_TILE - 1), rows[1][triangle])
    last_column = np.minimum(first_column + (_TILE - 1), columns[1][triangle])
    # tiles padded to squares of side 2, 3 or 4 (at most 3 groups: NumPy's cost per call
    # outweighs the padding's)
    side = np.maximum(np.maximum(last_row - first_row, last_column - first_column) + 1, 2)
    order = np.argsort(side, kind="stable")
    side = side[order]
    starts = np.flatnonzero(np.r_[True, side[1:] != side[:-1]])
    ends = np.r_[starts[1:], len(side)]
    for start, end in zip(starts, ends, strict=True):
        length = int(side[start])
        step = max(1, _CHUNK // (length * length))
        for chunk in range(start, end, step):
            pick = order[chunk:min(end, chunk + step)]
            yield (triangle[pick], first_row[pick], first_column[pick], last_row[pick], last_column[pick]), length


def _tile_hits(tiles, side, planes, volume, intrinsics, width, near, far):
    """The hits in n tiles of one padded size ``side`` x ``side`` pixels (``tiles``:
    triangle, first row, first column, last row, last column, ``(n,)`` each; ``planes
    (3, 3, n)`` and ``volume (n,)`` of their triangles): flat pixel, triangle, camera z and the
    three unnormalised barycentric weights, ``(h,)`` each."""
    fx, fy, cx, cy = intrinsics
    triangle, first_row, first_column, last_row, last_column = tiles
    count = len(triangle)
    # candidates as (S, S, n) arrays, rows first, the tiles innermost: long inner loops for NumPy
    row = first_row + np.arange(side)[:, None]  # (S, n)
    column = first_column + np.arange(side)[:, None]  # (S, n)
    # each pixel centre's ray, computed the same way for every triangle; NaN for the padding
    # beyond the tile (every comparison with NaN is False)
    ray_x = np.where(column <= last_column, (column + 0.5 - cx) / fx, np.nan)[None, :, :]
    ray_y = np.where(row <= last_row, (row + 0.5 - cy) / fy, np.nan)[:, None, :]
    inside = None
    weights = []
    for k in range(3):
        w = ray_x * planes[k, 0] + (ray_y * planes[k, 1] + planes[k, 2])  # (S, S, n)
        weights.append(w.reshape(-1))
        inside = w >= 0.0 if inside is None else np.logical_and(inside, w >= 0.0, out=inside)
    hit = np.flatnonzero(inside)
    owner = hit % count
    weights = [w.take(hit) for w in weights]
    depth = volume.take(owner) / (weights[0] + weights[1] + weights[2])
    valid = np.flatnonzero((depth > near) & (depth <= far))
    hit, owner, depth = hit.take(valid), owner.take(valid), depth.take(valid)
    r, c = np.divmod(hit // count, side)
    pixel = (first_row.take(owner) + r) * width + first_column.take(owner) + c
    return pixel, triangle.take(owner), depth, *(w.take(valid) for w in weights)


def transform_normals(normals: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Unit normals ``(N, 3)`` of a surface whose points ``matrix (3, 3)`` maps: by its
    inverse transpose, renormalised (as Cycles transforms vertex normals into the world)."""
    matrix = np.asarray(matrix, np.float64)
    # the inverse transpose up to the factor 1 / det: the cofactors, as rows
    cofactors = np.stack([np.cross(matrix[1], matrix[2]), np.cross(matrix[2], matrix[0]), np.cross(matrix[0], matrix[1])])
    cofactors *= np.sign(matrix[0] @ cofactors[0])  # the determinant's sign (no LAPACK call)
    out = _transform(cofactors, np.asarray(normals, np.float64).reshape(-1, 3).T)
    out /= np.sqrt(out[0] ** 2 + out[1] ** 2 + out[2] ** 2).clip(1e-300)
    return out.T


def smooth_normals(hits: RasterHits, triangles: np.ndarray, vertex_normals: np.ndarray) -> np.ndarray:
    """The shading normal at each hit ``(K, 3)``, as Cycles computes it for a smooth-shaded
    mesh: the hit triangle's ``vertex_normals (V, 3)`` (in any frame) blended with the
    barycentric weights and normalised, then flipped where the ray sees the triangle's back
    (Cycles flips the shading normal with the geometric one)."""
    corners = np.asarray(triangles, np.int64).reshape(-1, 3).T.take(hits.triangle, axis=1)  # (3, K)
    per_axis = np.asarray(vertex_normals, np.float64).reshape(-1, 3).T  # (3, V)
    normals = np.zeros((3, len(hits.triangle)))
    for k in range(3):
        for axis in range(3):
            normals[axis] += hits.barycentric[k] * per_axis[axis].take(corners[k])
    length = np.sqrt(normals[0] ** 2 + normals[1] ** 2 + normals[2] ** 2)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    normals[:, hits.backfacing] *= -1.0
    return normals.T
