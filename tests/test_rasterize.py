"""core.render.rasterize against geometry: a brute-force Möller–Trumbore ray cast per pixel (an
independent algorithm, written here), analytic planes, a cube and a sphere."""

from __future__ import annotations

import numpy as np
import pytest

from flame_blender.core.render.rasterize import rasterize, smooth_normals, transform_normals

IDENTITY = np.eye(4)


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV world-to-camera for a camera at ``eye`` looking at ``target`` (y down on screen)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, np.asarray(up, float))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ eye
    return matrix


def brute_force(vertices, triangles, world_to_camera, intrinsics, size, near=1e-6, far=np.inf):
    """Per pixel centre and triangle, Möller–Trumbore in camera space: nearest triangle
    ``(H, W)`` (-1: none), its camera z, and the centre's distance in pixels to the nearest
    projected edge of any triangle whose edge test was close (for excusing ties)."""
    fx, fy, cx, cy = intrinsics
    width, height = size
    points = vertices @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    nearest = np.full((height, width), -1)
    depth = np.zeros((height, width))
    for row in range(height):
        for column in range(width):
            direction = np.array([(column + 0.5 - cx) / fx, (row + 0.5 - cy) / fy, 1.0])
            best = np.inf
            for index, (a, b, c) in enumerate(points[triangles]):
                edge1, edge2 = b - a, c - a
                p = np.cross(direction, edge2)
                det = edge1 @ p
                if abs(det) < 1e-300:
                    continue
                s = -a
                u = (s @ p) / det
                q = np.cross(s, edge1)
                v = (direction @ q) / det
                t = (edge2 @ q) / det
                if u < 0 or v < 0 or u + v > 1 or not (near < t <= far):
                    continue
                if t < best:
                    best, nearest[row, column] = t, index
            depth[row, column] = best if np.isfinite(best) else 0.0
    return nearest, depth


def edge_distance(vertices, triangles, world_to_camera, intrinsics, size) -> np.ndarray:
    """``(H, W)``: each pixel centre's distance (pixels) to the nearest projected triangle edge
    (triangles wholly in front of the camera)."""
    fx, fy, cx, cy = intrinsics
    width, height = size
    points = vertices @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    pixels = np.stack([fx * points[:, 0] / points[:, 2] + cx, fy * points[:, 1] / points[:, 2] + cy], 1)
    grid = np.stack(np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5), -1)
    best = np.full((height, width), np.inf)
    for triangle in triangles:
        for k in range(3):
            a, b = pixels[triangle[k]], pixels[triangle[(k + 1) % 3]]
            along = np.clip(((grid - a) @ (b - a)) / max((b - a) @ (b - a), 1e-300), 0, 1)
            best = np.minimum(best, np.linalg.norm(grid - (a + along[..., None] * (b - a)), axis=-1))
    return best


def assert_matches_brute_force(vertices, triangles, world_to_camera, intrinsics, size, near=1e-6,
                               far=np.inf, tie=1e-9):
    hits = rasterize(vertices, triangles, world_to_camera, intrinsics, size, (near, far))
    nearest, depth = brute_force(vertices, triangles, world_to_camera, intrinsics, size, near, far)
    differ = hits.mask != (nearest >= 0)
    if differ.any():  # only pixel centres on an edge, where the two tests may break ties apart
        distance = edge_distance(vertices, triangles, world_to_camera, intrinsics, size)
        assert distance[differ].max() < tie, np.argwhere(differ)
    both = hits.mask & (nearest >= 0)
    np.testing.assert_allclose(hits.image(hits.depth)[both], depth[both], rtol=1e-12, atol=0)
    assert not (hits.image(hits.depth)[~hits.mask]).any()
    return hits, nearest


def test_one_triangle_against_brute_force_with_a_shifted_principal_point():
    vertices = np.array([[-0.3, -0.2, 2.0], [0.4, -0.1, 2.5], [0.0, 0.35, 1.6]])
    triangles = np.array([[0, 1, 2]])
    intrinsics = (40.0, 44.0, 13.3, 9.1)  # off-centre principal point, non-square pixels
    hits, nearest = assert_matches_brute_force(vertices, triangles, IDENTITY, intrinsics, (31, 23))
    assert hits.mask.sum() > 50
    assert (hits.triangle == 0).all()
    # barycentric weights rebuild the hit point on the pixel's ray (perspective-correct)
    rows, columns = np.divmod(hits.pixels, 31)
    point = hits.barycentric.T @ vertices
    np.testing.assert_allclose(point[:, 2], hits.depth, rtol=1e-12)
    np.testing.assert_allclose(point[:, 0] / point[:, 2], (columns + 0.5 - 13.3) / 40.0, atol=1e-12)
    np.testing.assert_allclose(point[:, 1] / point[:, 2], (rows + 0.5 - 9.1) / 44.0, atol=1e-12)
    np.testing.assert_allclose(hits.barycentric.sum(axis=0), 1.0)
    assert (hits.barycentric >= 0).all()


def test_tilted_plane_depth_is_the_exact_ray_plane_intersection():
    # the plane z = 2 + 0.5 x + 0.25 y, as two triangles spanning the whole view
    corners = np.array([[-3.0, -3.0], [3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]])
    vertices = np.c_[corners, 2 + 0.5 * corners[:, 0] + 0.25 * corners[:, 1]]
    triangles = np.array([[0, 1, 2], [0, 2, 3]])
    fx, fy, cx, cy = 30.0, 30.0, 16.0, 12.0
    hits = rasterize(vertices, triangles, IDENTITY, (fx, fy, cx, cy), (32, 24))
    assert hits.mask.all()  # the diagonal both triangles share leaves no crack
    rows, columns = np.divmod(hits.pixels, 32)
    x, y = (columns + 0.5 - cx) / fx, (rows + 0.5 - cy) / fy
    # z = 2 + 0.5 x z + 0.25 y z on the ray (x z, y z, z)
    np.testing.assert_allclose(hits.depth, 2.0 / (1.0 - 0.5 * x - 0.25 * y), rtol=1e-13)


def test_pixel_centres_exactly_on_shared_edges_and_vertices_are_hit():
    # a fan of 8 triangles around a vertex on a pixel centre's ray; every edge runs through
    # pixel centres (fx = fy = 1 px per unit at z = 1: centres at x, y = k + 0.5 - c)
    size, c = 9, 4.5  # centre pixel (4, 4) has its centre on the optical axis
    ring = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], float) * 3
    vertices = np.r_[[[0.0, 0.0, 1.0]], np.c_[ring, np.ones(8)]]
    triangles = np.array([[0, 1 + k, 1 + (k + 1) % 8] for k in range(8)])
    for flip in (False, True):  # either winding
        tris = triangles[:, ::-1] if flip else triangles
        hits = rasterize(vertices, tris, IDENTITY, (1.0, 1.0, c, c), (size, size))
        assert hits.mask[1:8, 1:8].all(), hits.mask.astype(int)  # the square ±3 around the centre
        assert hits.mask[4, 4]
        np.testing.assert_array_equal(hits.depth, 1.0)


def test_closed_cube_against_slab_intersection():
    # 8 corners of the cube [-0.5, 0.5]^3 and its 12 triangles, seen from a general direction
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    triangles = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    camera = look_at((1.7, 1.3, 2.6), (0.05, -0.02, 0.0))
    intrinsics, size = (60.0, 60.0, 32.0, 32.0), (64, 64)
    hits, _ = assert_matches_brute_force(corners, triangles, camera, intrinsics, size)
    # independent: the ray/box slab test
    fx, fy, cx, cy = intrinsics
    rotation, centre = camera[:3, :3], -camera[:3, :3].T @ camera[:3, 3]
    rows, columns = np.mgrid[0:64, 0:64]
    direction = np.stack([(columns + 0.5 - cx) / fx, (rows + 0.5 - cy) / fy, np.ones((64, 64))], -1) @ rotation
    with np.errstate(divide="ignore"):
        low, high = (-0.5 - centre) / direction, (0.5 - centre) / direction
    enter = np.minimum(low, high).max(-1)
    leave = np.maximum(low, high).min(-1)
    inside = enter < leave
    depth = hits.image(hits.depth)
    np.testing.assert_array_equal(hits.mask, inside)
    np.testing.assert_allclose(depth[inside], enter[inside], rtol=1e-12)  # z of d with d_z = 1
    # face normals (per-corner normals of each face's own vertices): the outward face normals
    flat_vertices = corners[triangles].reshape(-1, 3)
    face_normals = np.cross(flat_vertices[1::3] - flat_vertices[::3], flat_vertices[2::3] - flat_vertices[::3])
    face_normals /= np.linalg.norm(face_normals, axis=1, keepdims=True)
    flat_triangles = np.arange(len(flat_vertices)).reshape(-1, 3)
    flat_hits = rasterize(flat_vertices, flat_triangles, camera, intrinsics, size)
    normals = smooth_normals(flat_hits, flat_triangles, np.repeat(face_normals, 3, axis=0))
    assert not flat_hits.backfacing.any()  # a convex closed surface seen from outside
    np.testing.assert_allclose(normals, face_normals[flat_hits.triangle], atol=1e-12)
    point = centre + direction * depth[..., None]
    expected = np.where(np.abs(np.abs(point) - 0.5) < 1e-9, np.sign(point), 0.0)[hits.mask]
    np.testing.assert_allclose(normals, expected, atol=1e-12)


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    vertices = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
             [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
             [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    vertices = [np.array(v, float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        middle: dict[tuple[int, int], int] = {}

        def midpoint(i, j, middle=middle):
            key = (min(i, j), max(i, j))
            if key not in middle:
                point = vertices[i] + vertices[j]
                vertices.append(point / np.linalg.norm(point))
                middle[key] = len(vertices) - 1
            return middle[key]

        faces = [
            f
            for a, b, c in faces
            for ab, bc, ca in [(midpoint(a, b), midpoint(b, c), midpoint(c, a))]
            for f in ([a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca])
        ]
    return np.array(vertices), np.array(faces)


@pytest.mark.parametrize("size", [64, 257])
def test_sphere_has_no_cracks_and_smooth_normals(size):
    vertices, triangles = icosphere(4)  # 5120 triangles, all edges shared
    radius = 0.2
    vertices = vertices * radius + [0.01, -0.02, 0.0]
    camera = look_at((0.1, 0.2, 0.9), (0.0, 0.0, 0.0))
    focal = size * 1.4
    intrinsics = (focal, focal, size / 2 + 0.3, size / 2 - 0.2)
    hits = rasterize(vertices, triangles, camera, intrinsics, (size, size))
    # every ray that meets the inscribed sphere (radius r cos of the largest edge's half angle)
    # must hit the mesh; none may hit beyond the circumscribed sphere
    edge = np.linalg.norm(vertices[triangles[:, 0]] - vertices[triangles[:, 1]], axis=1).max()
    inner = radius * np.sqrt(1 - (edge / radius) ** 2 / 3)
    fx, fy, cx, cy = intrinsics
    rotation, eye = camera[:3, :3], -camera[:3, :3].T @ camera[:3, 3]
    rows, columns = np.mgrid[0:size, 0:size]
    direction = np.stack([(columns + 0.5 - cx) / fx, (rows + 0.5 - cy) / fy, np.ones((size, size))], -1) @ rotation
    offset = eye - [0.01, -0.02, 0.0]
    # |offset + t d|^2 = r^2, t the camera z (d_z = 1 in camera axes)
    a, b = (direction**2).sum(-1), 2 * direction @ offset
    def first_root(r):
        disc = b**2 - 4 * a * (offset @ offset - r**2)
        return disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    meets_inner, inner_depth = first_root(inner)
    meets_outer, outer_depth = first_root(radius)
    assert meets_inner.sum() > 0.3 * size * size / 4
    assert hits.mask[meets_inner].all(), "a crack: a ray through the closed sphere found no triangle"
    assert not hits.mask[~meets_outer].any()
    depth = hits.image(hits.depth)
    assert (depth[meets_inner] >= outer_depth[meets_inner] - 1e-12).all()
    assert (depth[meets_inner] <= inner_depth[meets_inner] + 1e-12).all()
    assert not hits.backfacing.any()
    # smooth normals from the exact sphere normals at the vertices: close to the exact normal
    # at the hit, closer than the face normals are
    normals = smooth_normals(hits, triangles, (vertices - [0.01, -0.02, 0.0]) / radius)
    point = (eye + direction * depth[..., None])[hits.mask] - [0.01, -0.02, 0.0]
    exact = point / np.linalg.norm(point, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    assert np.abs(normals - exact).max() < 0.01


def test_triangles_behind_or_crossing_the_near_plane():
    near = 0.5
    vertices = np.array([
        [-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -1.0],  # wholly behind the camera
        [-1.0, -0.8, 0.1], [1.2, -0.6, 3.0], [-0.2, 1.1, 2.0],  # crossing the near plane
        [-0.5, -0.5, 0.2], [0.5, -0.5, 0.3], [0.0, 0.5, 0.4],  # between the camera and the plane
        [-2.0, 0.0, 1.0], [2.0, 0.3, -1.0], [0.0, -1.5, 0.0],  # through the camera plane, z = 0
    ])
    triangles = np.arange(12).reshape(4, 3)
    intrinsics, size = (12.0, 12.0, 12.0, 10.0), (24, 20)
    with np.errstate(all="raise"):  # no garbage: no division by zero or NaN on the way
        hits, nearest = assert_matches_brute_force(vertices, triangles, IDENTITY, intrinsics, size, near=near)
    assert hits.mask.any()
    assert set(np.unique(hits.triangle)) <= {1, 3}
    assert (hits.depth > near).all()
    # the far plane cuts too
    far_hits, _ = assert_matches_brute_force(vertices, triangles, IDENTITY, intrinsics, size, near=near, far=1.5)
    assert far_hits.mask.sum() < hits.mask.sum() and (far_hits.depth <= 1.5).all()


def test_degenerate_triangles_are_never_hit():
    vertices = np.array([[0.0, 0.0, 2.0], [0.5, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 0.5, 2.0],
                         [0.3, 0.2, 1.0], [0.6, 0.4, 2.0]])
    # collinear corners, repeated corners, and (0, 4, 5), whose plane holds the camera centre
    # (corners 4 and 5 lie on one ray): seen edge-on
    triangles = np.array([[0, 1, 2], [0, 0, 3], [3, 3, 3], [4, 5, 4], [0, 4, 5]])
    with np.errstate(all="raise"):
        hits = rasterize(vertices, triangles, IDENTITY, (20.0, 20.0, 10.0, 10.0), (20, 20))
    assert not hits.mask.any()


def test_backfaces_are_seen_with_flipped_normals():
    vertices = np.array([[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0]])
    normal = np.array([0.0, 0.0, -1.0])  # faces the camera (OpenCV: the camera looks along +z)
    size, intrinsics = (16, 16), (8.0, 8.0, 8.0, 8.0)
    for triangles, backfacing in (([[0, 2, 1]], False), ([[0, 1, 2]], True)):
        hits = rasterize(vertices, np.array(triangles), IDENTITY, intrinsics, size)
        assert hits.mask.sum() > 10 and (hits.backfacing == backfacing).all()
        # vertex normals that agree with the winding: Cycles flips them with the geometric one
        given = np.tile(normal if not backfacing else -normal, (3, 1))
        np.testing.assert_allclose(smooth_normals(hits, np.array(triangles), given), [normal] * len(hits.pixels))


def test_transformed_normals_follow_the_inverse_transpose():
    rng = np.random.default_rng(4)
    matrix = rng.normal(size=(3, 3))  # skewed and scaled, and here with a negative determinant
    matrix[:, 0] *= -np.sign(np.linalg.det(matrix))
    assert np.linalg.det(matrix) < 0
    # a plane's normal must stay perpendicular to the plane's transformed directions
    tangents = rng.normal(size=(5, 2, 3))
    normals = np.cross(tangents[:, 0], tangents[:, 1])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    moved = transform_normals(normals, matrix)
    np.testing.assert_allclose(np.einsum("ni,nki->nk", moved, tangents @ matrix.T), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0)
    expected = normals @ np.linalg.inv(matrix)
    np.testing.assert_allclose(moved, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-12)


def test_a_mesh_out_of_view_gives_background_only():
    vertices, triangles = icosphere(1)
    hits = rasterize(vertices + [5.0, 0.0, 3.0], triangles, IDENTITY, (10.0, 10.0, 8.0, 8.0), (16, 16))
    assert not hits.mask.any() and len(hits.pixels) == 0
    assert smooth_normals(hits, triangles, vertices).shape == (0, 3)
    assert not hits.image(hits.depth).any() and hits.image(hits.depth).shape == (16, 16)


def test_back_faces_seen_through_an_opening():
    # a cube without its face towards the camera: the inside of the far walls (back faces) is
    # seen through the opening, beside the outside of the side walls (front faces)
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4)]  # no +z face
    triangles = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    camera = look_at((0.9, 0.6, 2.2), (0.0, 0.0, 0.0))
    hits, _ = assert_matches_brute_force(corners, triangles, camera, (40.0, 40.0, 20.0, 20.0), (40, 40))
    assert hits.backfacing.sum() > 50 and (~hits.backfacing).sum() > 50


def test_a_back_face_in_front_of_front_faces_is_seen_and_one_behind_is_not():
    # a front-facing wall at z = 3, a back-facing triangle just in front of it (z 2.9-2.99)
    # and one behind it (z = 3.5): the depth buffer of the front faces must hide only the last
    vertices = np.array([
        [-2.0, -2.0, 3.0], [2.0, -2.0, 3.0], [2.0, 2.0, 3.0], [-2.0, 2.0, 3.0],
        [-0.8, -0.7, 2.99], [0.9, -0.6, 2.95], [0.1, 0.9, 2.9],
        [-1.0, 0.5, 3.5], [1.0, 0.6, 3.5], [0.0, -1.0, 3.5],
    ])
    triangles = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [7, 8, 9]])
    intrinsics, size = (24.0, 24.0, 16.0, 16.0), (32, 32)
    hits, _ = assert_matches_brute_force(vertices, triangles, IDENTITY, intrinsics, size)
    assert not hits.backfacing[np.isin(hits.triangle, [0, 1])].any()
    assert hits.backfacing[hits.triangle == 2].all() and (hits.triangle == 2).sum() > 20
    assert not (hits.triangle == 3).any()
