"""The synthetic statistical model: joints, skinning weights, shape, expression and pose bases.

Everything here is smooth functions of the template's vertex positions, so the directions look
like plausible head variations rather than noise. Scales follow FLAME's convention that
coefficients are about N(0, 1): one unit moves vertices by millimetres to about a centimetre.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

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
    N_VERTICES,
    NOSE_TIP_Y,
    RIGHT_EYEBALL,
    HeadMesh,
    _smoothstep,
    build_head_mesh,
)

N_SHAPE = 300
N_EXPRESSION = 100
N_JOINTS = 5
# the designed expression that narrows the eyes
SQUINT = 10
KINTREE_TABLE = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)


@lru_cache(maxsize=1)
def head_mesh() -> HeadMesh:
    return build_head_mesh()


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals: (V, 3)."""
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _nearest(vertices: np.ndarray, candidates: np.ndarray, target: np.ndarray,
             count: int, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """The ``count`` candidate vertices nearest ``target`` under an axis-scaled distance."""
    d = ((vertices[candidates] - target) / np.asarray(scale)) ** 2
    order = np.argsort(d.sum(axis=1), kind="stable")
    return candidates[order[:count]]


def joint_regressor(mesh: HeadMesh) -> np.ndarray:
    """(5, 5023) dense: each joint an evenly weighted ring or patch of vertices."""
    v = mesh.vertices
    regressor = np.zeros((N_JOINTS, N_VERTICES))
    ring_y = np.array([v[r, 1].mean() for r in mesh.head_rings])
    # root: the neck ring near the base of the neck; neck: a ring higher up the neck
    for joint, target_y in ((0, -0.165), (1, -0.125)):
        ring = mesh.head_rings[int(np.argmin(np.abs(ring_y[40:] - target_y))) + 40]
        regressor[joint, ring] = 1.0 / len(ring)
    # jaw: patches in front of both ears (the jaw hinges), their mean lies between them
    head = np.arange(HEAD_VERTICES)
    patch = np.concatenate([
        _nearest(v, head, np.array([sign * 0.062, EYE_Y - 0.036, 0.0]), 6) for sign in (1.0, -1.0)
    ])
    regressor[2, patch] = 1.0 / len(patch)
    regressor[3, np.array(LEFT_EYEBALL)] = 1.0 / len(LEFT_EYEBALL)
    regressor[4, np.array(RIGHT_EYEBALL)] = 1.0 / len(RIGHT_EYEBALL)
    return regressor


def jaw_weight(p: np.ndarray, lip_side: np.ndarray | None = None,
               softness: float = 0.012) -> np.ndarray:
    """How much each point follows the jaw: chin, lower lip, lower cheeks; smooth falloff.

    ``lip_side`` (+1 upper lip, -1 lower lip, 0 elsewhere) separates the two sides of the
    mouth slit, whose vertices share their places at rest. ``softness`` (metres) widens the
    falloff out on the cheeks (not across the lips).
    """
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    if lip_side is not None:
        y = y + np.where(lip_side > 0, 0.002, np.where(lip_side < 0, -0.006, 0.0))
    # a line from the mouth (front) back to below the ear
    line = MOUTH_Y + (0.095 - np.minimum(z, 0.095)) / 0.1 * 0.025
    # sharp across the lips, softer out on the cheeks
    width = 0.005 + softness * _smoothstep(MOUTH_HALF_WIDTH - 0.004, MOUTH_HALF_WIDTH + 0.02,
                                        np.abs(x))
    below_mouth = _smoothstep(line + 0.0012, line - width, y)
    forward = _smoothstep(-0.03, 0.015, z)
    # the throat under the chin goes with the neck
    not_throat = _smoothstep(-0.15, -0.118, y + 0.25 * np.maximum(0.0, 0.04 - z))
    narrow = _smoothstep(0.085, 0.06, np.abs(x))
    return below_mouth * forward * not_throat * narrow


def lip_sides(mesh: HeadMesh) -> np.ndarray:
    """(3931,) +1 on the slit's upper-lip vertices, -1 on their lower-lip copies, else 0."""
    side = np.zeros(HEAD_VERTICES)
    side[mesh.upper_lip] = 1.0
    side[mesh.lower_lip] = -1.0
    return side


def skinning_weights(mesh: HeadMesh) -> np.ndarray:
    p = mesh.vertices
    weights = np.zeros((N_VERTICES, N_JOINTS))
    head = slice(0, HEAD_VERTICES)
    jaw = jaw_weight(p[head], lip_sides(mesh))
    root = _smoothstep(-0.135, -0.185, p[head, 1]) * (1.0 - jaw)
    weights[head, 2] = jaw
    weights[head, 0] = root
    weights[head, 1] = 1.0 - jaw - root
    weights[np.array(LEFT_EYEBALL), 3] = 1.0
    weights[np.array(RIGHT_EYEBALL), 4] = 1.0
    return weights / weights.sum(axis=1, keepdims=True)


def _random_field(rng: np.random.Generator, p: np.ndarray, wavelength: float,
                  waves: int = 4) -> np.ndarray:
    """A smooth random vector field: a few plane waves of about ``wavelength`` metres. (N, 3)."""
    field = np.zeros_like(p)
    for _ in range(waves):
        k = rng.normal(size=3)
        k *= 2 * np.pi / wavelength / np.linalg.norm(k) * rng.uniform(0.7, 1.3)
        # (explicit sum: a BLAS matrix-vector product is slower for this size here)
        phase = p[:, 0] * k[0] + p[:, 1] * k[1] + p[:, 2] * k[2] + rng.uniform(0, 2 * np.pi)
        field += np.sin(phase)[:, None] * rng.normal(size=3)
    return field / np.sqrt(waves)


def _bump(p: np.ndarray, centre, sigma) -> np.ndarray:
    d = ((p - np.asarray(centre)) / np.asarray(sigma)) ** 2
    return np.exp(-0.5 * d.sum(axis=-1))


def _eye_sockets(mesh: HeadMesh) -> list[np.ndarray]:
    """The head vertices around each eyeball (left, right)."""
    head = np.arange(HEAD_VERTICES)
    return [_nearest(mesh.vertices, head, centre + np.array([0, 0, 0.01]), 60)
            for centre in mesh.eye_centres]


def _move_eyeballs_with_sockets(directions: np.ndarray, sockets: list[np.ndarray]) -> None:
    """Eyeballs move rigidly with the head vertices around their sockets (in place)."""
    for eye, socket in zip((LEFT_EYEBALL, RIGHT_EYEBALL), sockets, strict=True):
        directions[eye.start:eye.stop] = directions[socket].mean(axis=0)


def shape_directions(mesh: HeadMesh, rng: np.random.Generator) -> np.ndarray:
    """(5023, 3, 300) identity directions."""
    p = mesh.vertices[:HEAD_VERTICES]
    n = vertex_normals(mesh.vertices, mesh.faces)[:HEAD_VERTICES]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    front = _smoothstep(0.0, 0.05, z)
    jaw = jaw_weight(p, lip_sides(mesh), softness=0.035)
    ax = np.abs(x)
    designed = [
        0.045 * (p - np.array([0.0, -0.02, 0.0])),                       # overall size
        np.stack([0.07 * x, 0 * y, 0 * z], axis=1),                       # width
        np.stack([0 * x, 0.06 * np.maximum(y, -0.12), 0 * z], axis=1),   # height
        np.stack([0 * x, 0 * y, 0.06 * z], axis=1),                       # depth
        0.005 * (_bump(p, (0, NOSE_TIP_Y + 0.012, 0.1), (0.01, 0.02, 0.05)) * front)[:, None] * n,  # nose
        0.006 * (_bump(p, (0, CHIN_Y, 0.08), (0.02, 0.015, 0.05)) * front)[:, None] * n,  # chin
        np.stack([0.08 * x * jaw, 0 * y, 0 * z], axis=1),                 # jaw width
        0.004 * (_bump(np.c_[ax, y, z], (0.045, EYE_Y - 0.035, 0.06), (0.015, 0.02, 0.04)))[:, None] * n,
        0.004 * (_bump(p, (0, FOREHEAD_Y, 0.07), (0.04, 0.02, 0.05)))[:, None] * n,  # forehead
        0.005 * (_bump(np.c_[ax, y, z], (0.075, EAR_Y, EAR_Z), (0.012, 0.025, 0.018)))[:, None]
        * n,                                                               # ears
        0.003 * (_bump(np.c_[ax, y, z], (0.03, BROW_Y, 0.08), (0.02, 0.008, 0.04)))[:, None] * n,
        0.003 * (_bump(np.c_[ax, y, z], (EYE_X, EYE_Y, 0.075), (0.012, 0.01, 0.03)))[:, None]
        * n,                                                               # eye sockets
    ]
    dirs = np.zeros((N_VERTICES, 3, N_SHAPE))
    sockets = _eye_sockets(mesh)
    eye_calm = 1.0 - 0.85 * np.maximum.reduce(
        [_bump(p, centre, (0.016, 0.013, 0.03)) for centre in mesh.eye_centres])
    for k in range(N_SHAPE):
        if k < len(designed):
            field = designed[k]
        else:
            # local smooth variations, weaker for later components (as PCA variances decay)
            field = np.zeros_like(p)
            for _ in range(3):
                centre = p[rng.integers(len(p))]
                sigma = rng.uniform(0.015, 0.05)
                field += (_bump(p, centre, (sigma,) * 3)[:, None]
                          * (n * rng.normal() + 0.3 * rng.normal(size=3)))
            field += 0.3 * _random_field(rng, p, 0.15)
            # the eyelids keep their shape around the (rigid) eyeballs
            field *= eye_calm[:, None]
            field *= 0.004 * (1 + k - len(designed)) ** -0.75
        dirs[:HEAD_VERTICES, :, k] = field
        _move_eyeballs_with_sockets(dirs[:, :, k], sockets)
    return dirs


def expression_directions(mesh: HeadMesh, rng: np.random.Generator,
                          joints: np.ndarray) -> np.ndarray:
    """(5023, 3, 100): mouth, jaw, cheeks and brows; nearly zero on the back of the head."""
    p = mesh.vertices[:HEAD_VERTICES]
    n = vertex_normals(mesh.vertices, mesh.faces)[:HEAD_VERTICES]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax, sx = np.abs(x), np.sign(x)
    front = _smoothstep(-0.01, 0.05, z)
    # expressions blend smoothly over the cheeks (skinning's jaw weight is tighter)
    jaw = jaw_weight(p, lip_sides(mesh), softness=0.035)
    # jaw opening: rotation of the jaw region about the jaw hinge's x axis
    angle = 0.08
    rel = p - joints[2]
    c, s = np.cos(angle), np.sin(angle)
    rotated = np.stack([rel[:, 0], c * rel[:, 1] - s * rel[:, 2], s * rel[:, 1] + c * rel[:, 2]],
                       axis=1)
    corners = _bump(np.c_[ax, y, z], (MOUTH_HALF_WIDTH, MOUTH_Y, 0.08), (0.012, 0.01, 0.04)) * front
    lips_upper = _bump(p, (0, MOUTH_Y + 0.007, 0.09), (0.02, 0.006, 0.04)) * front
    lips_lower = _bump(p, (0, MOUTH_Y - 0.008, 0.09), (0.02, 0.007, 0.04)) * front
    lips = np.maximum(lips_upper, lips_lower)
    brows = _bump(np.c_[ax, y, z], (0.03, BROW_Y, 0.08), (0.02, 0.012, 0.04)) * front
    cheeks = _bump(np.c_[ax, y, z], (0.045, MOUTH_Y + 0.028, 0.06), (0.018, 0.02, 0.04)) * front
    lids = _bump(np.c_[ax, y, z], (EYE_X, EYE_Y - 0.0065, 0.075), (0.011, 0.003, 0.03)) * front
    # the eye openings stay put (the eyeballs do not move with expressions), except in the
    # squint, which lifts the lower lids
    eye_calm = 1.0 - 0.9 * _bump(np.c_[ax, y, z], (EYE_X, EYE_Y, 0.075), (0.015, 0.009, 0.04))
    zero = np.zeros_like(x)

    def vec(a, b, c_):
        return np.stack([a + zero, b + zero, c_ + zero], axis=1)

    left = _smoothstep(-0.005, 0.005, x)
    smile = corners[:, None] * vec(0.003 * sx, 0.004, -0.002) + cheeks[:, None] * vec(0, 0.002, 0.001)
    designed = [
        (rotated - rel) * jaw[:, None],                                           # jaw open
        smile,                                                                    # smile
        lips[:, None] * vec(-0.1 * x, 0, 0.005) + corners[:, None] * vec(-0.003 * sx, 0, 0.001),
        brows[:, None] * vec(0, 0.004, 0.0005),                                   # brows up
        brows[:, None] * vec(-0.002 * sx, -0.003, 0.001),                         # frown
        corners[:, None] * vec(0.004 * sx, -0.001, -0.001),                       # stretch
        (lips * (1 - 2 * jaw))[:, None] * vec(0, 0.003, 0.0),                    # lips part
        smile * left[:, None],                                                    # half smile
        smile * (1 - left)[:, None],
        0.004 * cheeks[:, None] * n,                                              # cheek puff
        lids[:, None] * vec(0, 0.0012, 0.0004),                                   # squint
        corners[:, None] * vec(0.0, -0.004, 0.0),                                 # sad
        (lips + 0.5 * jaw)[:, None] * vec(0.004, 0, 0),                           # mouth sideways
    ]
    # random expressions act on a smooth region around the mouth, jaw and cheeks (the lids
    # are left to the designed squint, so random faces keep their eyes open)
    lower_face = _bump(p, (0.0, MOUTH_Y - 0.01, 0.09), (0.04, 0.035, 0.06)) * front
    mouth_region = np.maximum.reduce([lower_face, corners, lips, cheeks, 0.5 * brows])
    dirs = np.zeros((N_VERTICES, 3, N_EXPRESSION))
    for k in range(N_EXPRESSION):
        if k < len(designed):
            field = designed[k]
        else:
            field = np.zeros_like(p)
            for _ in range(2):
                centre = p[rng.integers(len(p))]
                field += (_bump(p, centre, (rng.uniform(0.01, 0.03),) * 3)[:, None]
                          * rng.normal(size=3))
            field += 0.5 * _random_field(rng, p, 0.08)
            field *= mouth_region[:, None] * 0.003 * (1 + k - len(designed)) ** -0.8
        if k != SQUINT:
            field = field * eye_calm[:, None]
        dirs[:HEAD_VERTICES, :, k] = field
    return dirs


def pose_directions(mesh: HeadMesh, rng: np.random.Generator,
                    weights: np.ndarray) -> np.ndarray:
    """(5023, 3, 36): small smooth correctives (mm per radian) near each joint's region."""
    p = mesh.vertices
    neck_region = _smoothstep(-0.04, -0.12, p[:, 1]) * (weights[:, 3] + weights[:, 4] == 0)
    jaw_region = weights[:, 2]
    eyelids = [
        _bump(p, centre + np.array([0, 0, 0.008]), (0.015, 0.012, 0.015))
        * (np.arange(N_VERTICES) < HEAD_VERTICES)
        for centre in mesh.eye_centres
    ]
    regions = [neck_region, jaw_region, eyelids[0], eyelids[1]]
    dirs = np.zeros((N_VERTICES, 3, 36))
    for joint, region in enumerate(regions):
        for entry in range(9):
            field = _random_field(rng, p, 0.1, waves=3)
            dirs[:, :, joint * 9 + entry] = 0.002 * region[:, None] * field
    return dirs


def synthetic_flame_model(seed: int = 0) -> dict:
    """The in-memory synthetic model, with the keys and dtypes of a real FLAME pickle.

    ``v_template`` (5023, 3) float64, ``f`` (9976, 3) uint32, ``shapedirs`` (5023, 3, 400)
    float64 (300 identity then 100 expression), ``posedirs`` (5023, 3, 36), ``weights``
    (5023, 5), ``J_regressor`` dense (5, 5023), ``J`` (5, 3), ``kintree_table`` (2, 5) int64,
    ``bs_style`` ``'lbs'``, ``bs_type`` ``'lrotmin'``.
    """
    mesh = head_mesh()
    rng = np.random.default_rng([seed, 20260])
    v_template = mesh.vertices.copy()
    regressor = joint_regressor(mesh)
    joints = regressor @ v_template
    weights = skinning_weights(mesh)
    shapedirs = np.concatenate(
        [shape_directions(mesh, rng), expression_directions(mesh, rng, joints)], axis=2
    )
    posedirs = pose_directions(mesh, rng, weights)
    return {
        "f": mesh.faces.astype(np.uint32),
        "J_regressor": regressor,
        "kintree_table": KINTREE_TABLE.copy(),
        "J": joints,
        "bs_style": "lbs",
        "weights": weights,
        "posedirs": posedirs,
        "v_template": v_template,
        "shapedirs": shapedirs,
        "bs_type": "lrotmin",
    }
