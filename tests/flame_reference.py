"""The textbook FLAME forward pass in plain numpy, and random models and parameters for it.

No torch: the Blender-facing tests import it on the bpy 4.x environments too. It calls nothing
from the package.
"""

from __future__ import annotations

import numpy as np

V = 5023


def random_model(seed: int = 0, n_vertices: int = V, n_directions: int = 400) -> dict:
    """A FLAME-shaped model dict of random numbers (the load_flame contract, nothing more)."""
    rng = np.random.default_rng(seed)
    weights = rng.random((n_vertices, 5)) ** 3
    weights /= weights.sum(axis=1, keepdims=True)
    regressor = np.zeros((5, n_vertices))
    for joint in range(5):
        regressor[joint, rng.choice(n_vertices, min(20, n_vertices), replace=False)] = 1.0
    regressor /= regressor.sum(axis=1, keepdims=True)
    v_template = rng.normal(size=(n_vertices, 3)) * 0.1
    return {
        "v_template": v_template,
        "f": rng.integers(0, n_vertices, (2 * n_vertices, 3)).astype(np.uint32),
        "shapedirs": rng.normal(size=(n_vertices, 3, n_directions)) * 1e-3,
        "posedirs": rng.normal(size=(n_vertices, 3, 36)) * 1e-2,
        "weights": weights,
        "J_regressor": regressor,
        "J": regressor @ v_template,
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def rodrigues_reference(r: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(r)
    if theta == 0.0:
        return np.eye(3)
    k = r / theta
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * skew + (1 - np.cos(theta)) * skew @ skew


def reference_flame(
    model: dict,
    p: dict,
    offsets: np.ndarray | None = None,
    extra: np.ndarray | None = None,
    extra_params: np.ndarray | None = None,
    extra_stage: str = "posed",
) -> tuple[np.ndarray, np.ndarray]:
    """One head, float64: (vertices (V, 3), joints (5, 3)). ``p`` holds every parameter.

    ``offsets (V, 3)`` join the shaped mesh before the joints are regressed (VHAP); ``extra
    (E, V, 3)`` blend shapes weighed by ``extra_params (E,)`` join it too ("shaped") or are added
    after skinning, before the translation ("posed", metrical-tracker's FLAME.forward).
    """
    shapedirs = model["shapedirs"]
    n_s, n_e = len(p["shape_params"]), len(p["expression_params"])
    directions = np.concatenate([shapedirs[:, :, :n_s], shapedirs[:, :, 300 : 300 + n_e]], axis=2)
    betas = np.concatenate([p["shape_params"], p["expression_params"]])
    v_shaped = model["v_template"] + directions @ betas
    if offsets is not None:
        v_shaped = v_shaped + offsets
    extra_shift = 0.0 if extra is None else sum(c * shape for c, shape in zip(extra_params, extra, strict=True))
    if extra_stage == "shaped":
        v_shaped, extra_shift = v_shaped + extra_shift, 0.0
    joints = model["J_regressor"] @ v_shaped
    axis_angles = [p["global_pose"], p["neck_pose"], p["jaw_pose"], p["eye_pose"][:3], p["eye_pose"][3:]]
    rotations = [rodrigues_reference(np.asarray(a, dtype=np.float64)) for a in axis_angles]
    feature = np.concatenate([(r - np.eye(3)).ravel() for r in rotations[1:]])
    v_posed = v_shaped + (model["posedirs"].reshape(-1, 36) @ feature).reshape(-1, 3)
    parents = [-1, 0, 1, 1, 1]
    world = []
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0.0)
        world.append(local if parents[j] < 0 else world[parents[j]] @ local)
    relative = []
    for j in range(5):
        a = world[j].copy()
        a[:3, 3] -= world[j][:3, :3] @ joints[j]
        relative.append(a)
    blended = np.einsum("vj,jab->vab", model["weights"], np.stack(relative))
    homogeneous = np.concatenate([v_posed, np.ones((len(v_posed), 1))], axis=1)
    vertices = np.einsum("vab,vb->va", blended, homogeneous)[:, :3] + extra_shift + p["transl"]
    posed_joints = np.stack([w[:3, 3] for w in world]) + p["transl"]
    return vertices, posed_joints


def random_rotation_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    """Axis-angle vectors with angles spread over (0, pi], including near pi."""
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0.0, np.pi, count)
    angles[: max(1, count // 8)] = np.pi - rng.uniform(0, 1e-6, max(1, count // 8))
    return axes * angles[:, None]


def random_parameters(rng: np.random.Generator, n_shape: int = 300, n_expression: int = 100) -> dict:
    rotations = random_rotation_vectors(rng, 5)
    return {
        "shape_params": rng.normal(size=n_shape),
        "expression_params": rng.normal(size=n_expression),
        "global_pose": rotations[0],
        "neck_pose": rotations[1],
        "jaw_pose": rotations[2],
        "eye_pose": rotations[3:].reshape(-1),
        "transl": rng.normal(size=3),
    }


# VHAP's two 15-vertex lip rings (vhap/model/flame.py add_teeth), copied from its source
RING_UPPER = [1713, 1715, 1716, 1735, 1696, 1694, 1657, 3543, 2774, 2811, 2813, 2850, 2833, 2832, 2830]
RING_LOWER = [1576, 1577, 1773, 1774, 1795, 1802, 1865, 3503, 2948, 2905, 2898, 2881, 2880, 2713, 2712]


def teeth_model_by_hand(model: dict) -> dict:
    """The model with 120 tooth vertices, built vertex by vertex from VHAP's add_teeth."""
    v = model["v_template"]
    d = float(np.mean([np.linalg.norm(v[u] - v[w]) for u, w in zip(RING_UPPER, RING_LOWER, strict=True)]))
    height = float(np.mean([(v[u][1] + v[w][1]) / 2 for u, w in zip(RING_UPPER, RING_LOWER, strict=True)]))
    rows: dict[str, list] = {key: [] for key in ("ur", "lr", "ue", "le")}
    for u, w in zip(RING_UPPER, RING_LOWER, strict=True):
        x, z = (v[u][0] + v[w][0]) / 2, (v[u][2] + v[w][2]) / 2 - 1.5 * d
        rows["ue"].append([x, height + 0.1 * d, z])
        rows["ur"].append([x, height + 0.1 * d + 2 * d, z])
        rows["le"].append([x, height - 0.1 * d, z - 0.4 * d])
        rows["lr"].append([x, height - 0.1 * d - 2 * d, z - 0.4 * d])
    back = lambda row: [[x, y, z - d] for x, y, z in row]  # noqa: E731
    order = [rows["ur"], rows["lr"], rows["ue"], rows["le"], back(rows["ur"]), back(rows["ue"]), back(rows["lr"]), back(rows["le"])]
    teeth = np.array([vertex for row in order for vertex in row])
    upper = [0, 2, 4, 5]  # which of the eight rows are upper teeth (neck joint)
    weights = np.zeros((120, 5))
    shape_rows = np.zeros((120, 3, model["shapedirs"].shape[2]))
    for r in range(8):
        for k in range(15):
            weights[15 * r + k, 1 if r in upper else 2] = 1.0
            ring_mean = (model["shapedirs"][RING_UPPER[k]] + model["shapedirs"][RING_LOWER[k]]) / 2
            shape_rows[15 * r + k, :, :300] = ring_mean[:, :300]
    return dict(model, v_template=np.concatenate([v, teeth]), weights=np.concatenate([model["weights"], weights]),
                shapedirs=np.concatenate([model["shapedirs"], shape_rows]),
                posedirs=np.concatenate([model["posedirs"], np.zeros((120, 3, 36))]),
                J_regressor=np.concatenate([model["J_regressor"], np.zeros((5, 120))], axis=1))  # fmt: skip
