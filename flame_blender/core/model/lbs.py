"""The FLAME forward pass, written once, for numpy arrays and torch tensors alike.

Every function here takes numpy arrays or torch tensors (all of one kind) and returns the same
kind, so torch callers get autograd and numpy callers (a stock Blender has no torch) get the same
arithmetic. The steps, in the order :func:`lbs` runs them (``B`` heads, ``V`` vertices, ``J``
joints, ``K`` blend-shape coefficients, ``E`` extra blend shapes)::

    v_shaped = v_template + shapedirs . betas (+ offsets) (+ extra . extra_params, "shaped")  (B, V, 3)
    joints   = J_regressor @ v_shaped                                                        (B, J, 3)
    R        = rodrigues(pose)                                                               (B, J, 3, 3)
    v_posed  = v_shaped + posedirs . (R[1:] - I)                                             (B, V, 3)
    G, t     = rigid transforms down the kinematic tree                                      (B, J, 3, 4)
    vertices = v_posed + sum_j w_j ((G_j - I) v_posed + t_j) (+ extra . extra_params, "posed") + transl

Skinning is written as a displacement from ``v_posed`` (``G_j - I``, not ``G_j``): at rest every
term is exactly zero, so zero parameters give ``v_template`` bit for bit, whereas ``sum_j w_j G_j``
would multiply by ``sum_j w_j``, which is 1 only up to rounding.

The model classes (:class:`~.flame_torch.FLAME`, :class:`~.flame_numpy.FlameNumpy`, the Blender
single-head evaluator in :mod:`.backend`) are speed paths over these functions: they keep the
vertices coordinate-planar ``(B, 3, V)`` and precompute ``J_regressor @ shapedirs``, and the tests
prove each of them equal to :func:`lbs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .rotation import axis_angle_to_matrix

Array = Any  # a numpy array or a torch tensor
EXTRA_STAGES = ("posed", "shaped")


def is_torch(array: Array) -> bool:
    """Whether ``array`` is a torch tensor (without importing torch when it is not)."""
    return type(array).__module__.startswith("torch")


def concatenate(parts: Sequence[Array], axis: int) -> Array:
    """``np.concatenate`` or ``torch.cat``, whichever fits the parts."""
    if is_torch(parts[0]):
        import torch

        return torch.cat(list(parts), dim=axis)
    return np.concatenate(parts, axis=axis)


def identity_like(array: Array) -> Array:
    """The 3x3 identity in ``array``'s dtype (and device)."""
    if is_torch(array):
        import torch

        return torch.eye(3, dtype=array.dtype, device=array.device)
    return np.eye(3, dtype=array.dtype)


def blend_shapes(coefficients: Array, directions: Array) -> Array:
    """``sum_k coefficients[b, k] * directions[:, :, k]``: ``(B, K)``, ``(V, 3, K)`` -> ``(B, V, 3)``."""
    if is_torch(coefficients):
        import torch

        return torch.einsum("bk,vck->bvc", coefficients, directions)
    return np.einsum("bk,vck->bvc", coefficients, directions)


def vertices_to_joints(regressor: Array, vertices: Array) -> Array:
    """Joints ``(B, J, 3)`` from the regressor ``(J, V)`` and vertices ``(B, V, 3)``."""
    if is_torch(vertices):
        import torch

        return torch.einsum("jv,bvc->bjc", regressor, vertices)
    return np.einsum("jv,bvc->bjc", regressor, vertices)


def pose_feature(rotations: Array) -> Array:
    """The pose-corrective input ``(B, 9(J-1))`` = ``(R_j - I)`` flattened for j >= 1 (root excluded)."""
    return (rotations[:, 1:] - identity_like(rotations)).reshape(rotations.shape[0], -1)


@lru_cache(maxsize=16)
def level_plan(parents: tuple[int, ...]) -> tuple[Any, ...]:
    """How :func:`rigid_transforms` walks the tree: joints of one depth are done together.

    Returns ``(root, steps, order)``: the root index (a slice), per deeper level ``(its joints,
    positions of their parents in the previous level)`` as slices where possible, and the joint
    order to undo the grouping (None when the grouping keeps the joints in order).
    """
    depth: list[int] = []
    for parent in parents:
        depth.append(0 if parent < 0 else depth[parent] + 1)
    levels = [[j for j, d in enumerate(depth) if d == level] for level in range(max(depth) + 1)]
    if len(levels[0]) != 1:
        raise ValueError(f"parents {parents}: expected exactly one root")
    steps = []
    for previous, level in zip(levels, levels[1:], strict=False):
        positions = [previous.index(parents[j]) for j in level]
        steps.append((_as_index(level), _as_index(positions)))
    flat = [j for level in levels for j in level]
    order = None if flat == list(range(len(flat))) else [flat.index(j) for j in range(len(flat))]
    return _as_index(levels[0]), tuple(steps), order


def _as_index(indices: list[int]) -> slice | list[int]:
    if indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)
    if len(set(indices)) == 1:
        return slice(indices[0], indices[0] + 1)  # one parent for the whole level: broadcasts
    return indices


def rigid_transforms(rotations: Array, joints: Array, parents: Sequence[int]) -> tuple[Array, Array, Array]:
    """World transforms of the kinematic tree, as displacements.

    Args:
        rotations: ``(B, J, 3, 3)`` local joint rotations.
        joints: ``(B, J, 3)`` rest joint positions.
        parents: parent of each joint, -1 for the root, each parent before its children.
    Returns:
        ``transforms (B, J, 3, 4)`` = ``[G_j - I | t_j]``, so a vertex moves by ``(G_j - I) v + t_j``
        under joint j (``G_j`` its world rotation); posed joints ``(B, J, 3)``; world rotations
        ``(B, J, 3, 3)``.

    ``G_j = G_parent R_j``; the joint moves by ``d_j = d_parent + (G_parent - I)(J_j - J_parent)``
    (``d_root = 0``), and ``t_j = d_j - (G_j - I) J_j``.
    """
    root, steps, order = level_plan(tuple(int(p) for p in parents))
    eye = identity_like(rotations)
    world = rotations[:, root]
    moved = joints[:, root] * 0.0
    previous_joints = joints[:, root]
    world_parts, moved_parts = [world], [moved]
    for level, parent_positions in steps:
        parent_world = world[:, parent_positions]
        level_joints = joints[:, level]
        bone = level_joints - previous_joints[:, parent_positions]
        moved = moved[:, parent_positions] + ((parent_world - eye) @ bone[..., None])[..., 0]
        world = parent_world @ rotations[:, level]  # a one-parent level broadcasts over its joints
        world_parts.append(world)
        moved_parts.append(moved)
        previous_joints = level_joints
    world = concatenate(world_parts, axis=1)
    moved = concatenate(moved_parts, axis=1)
    if order is not None:
        world, moved = world[:, order], moved[:, order]
    delta = world - eye
    offset = moved - (delta @ joints[..., None])[..., 0]
    transforms = concatenate([delta, offset[..., None]], axis=-1)
    return transforms, joints + moved, world


def skinning_displacement(v_planar: Array, per_joint: Array, weights_transposed: Array) -> Array:
    """How far skinning moves each vertex, coordinate-planar: ``sum_j w_j ((G_j - I) v + t_j)``.

    Args:
        v_planar: ``(B, 3, V)`` posed vertices (all x, all y, all z: long contiguous rows).
        per_joint: ``(B, 12, J)`` each joint's ``[G_j - I | t_j]`` flattened row-major (``transforms``
            of :func:`rigid_transforms` as ``reshape(B, J, 12)`` with the last two axes swapped).
        weights_transposed: ``(J, V)`` skinning weights.
    Returns:
        ``(B, 3, V)``; add it to ``v_planar``.
    """
    batch, n_vertices = v_planar.shape[0], v_planar.shape[-1]
    blended = (per_joint @ weights_transposed).reshape(batch, 3, 4, n_vertices)  # per-vertex [G - I | t]
    change = (blended[:, :, :3] * v_planar[:, None]).sum(2)
    change += blended[:, :, 3]
    return change


def skin(v_posed: Array, transforms: Array, weights: Array) -> Array:
    """Linear blend skinning as a displacement: ``(B, V, 3)``, ``(B, J, 3, 4)``, ``(V, J)`` -> ``(B, V, 3)``."""
    batch, n_joints = transforms.shape[:2]
    v = v_posed.swapaxes(1, 2)  # (B, 3, V)
    per_joint = transforms.reshape(batch, n_joints, 12).swapaxes(1, 2)
    return (v + skinning_displacement(v, per_joint, weights.T)).swapaxes(1, 2)


def barycentric_points(vertices: Array, vertex_indices: Array, barycentric: Array) -> Array:
    """Points on triangles: ``(B, V, 3)``, corners ``(L, 3)`` or ``(B, L, 3)``, weights likewise -> ``(B, L, 3)``."""
    if vertex_indices.ndim == 2:
        corners = vertices[:, vertex_indices]  # (B, L, 3, 3)
        weights = barycentric[None]
    else:
        rows = np.arange(vertices.shape[0])[:, None, None]
        if is_torch(vertices):
            import torch

            rows = torch.as_tensor(rows, device=vertices.device)
        corners = vertices[rows, vertex_indices]
        weights = barycentric
    return (corners * weights[..., None]).sum(2)


def lbs(
    v_template: Array,
    shapedirs: Array,
    posedirs: Array,
    regressor: Array,
    parents: Sequence[int],
    weights: Array,
    betas: Array,
    pose: Array,
    transl: Array | None = None,
    offsets: Array | None = None,
    extra_directions: Array | None = None,
    extra_params: Array | None = None,
    extra_stage: str = "posed",
) -> tuple[Array, Array, Array]:
    """The whole forward pass, in the textbook layout.

    Args:
        v_template: ``(V, 3)``.
        shapedirs: ``(V, 3, K)``, the columns ``betas`` weigh (identity then expression).
        posedirs: ``(V, 3, 9(J-1))``.
        regressor: ``(J, V)`` joint regressor.
        parents: ``J`` parent indices (-1 for the root).
        weights: ``(V, J)`` skinning weights.
        betas: ``(B, K)``.
        pose: ``(B, J, 3)`` axis-angle per joint (radians).
        transl: ``(B, 3)`` or None.
        offsets: ``(B, V, 3)`` or None, added to the shaped vertices before the joints are regressed.
        extra_directions: ``(V, 3, E)`` extra blend shapes, weighed by ``extra_params (B, E)``.
        extra_stage: "posed" adds them after skinning and before ``transl`` (metrical-tracker);
            "shaped" adds them to the shaped vertices (they move joints and correctives).
    Returns:
        ``vertices (B, V, 3)``, posed joints ``(B, J, 3)`` (both translated), world rotations
        ``(B, J, 3, 3)``.
    """
    if extra_stage not in EXTRA_STAGES:
        raise ValueError(f"extra_stage={extra_stage!r}: expected one of {EXTRA_STAGES}")
    v_shaped = v_template[None] + blend_shapes(betas, shapedirs)
    if offsets is not None:
        v_shaped = v_shaped + offsets
    extra = None
    if extra_directions is not None and extra_params is not None:
        extra = blend_shapes(extra_params, extra_directions)
        if extra_stage == "shaped":
            v_shaped, extra = v_shaped + extra, None
    joints = vertices_to_joints(regressor, v_shaped)
    rotations = axis_angle_to_matrix(pose)
    feature = pose_feature(rotations)
    n_pose = posedirs.shape[-1]
    v_posed = v_shaped + (posedirs.reshape(-1, n_pose) @ feature.T).T.reshape(v_shaped.shape)
    transforms, posed_joints, world = rigid_transforms(rotations, joints, parents)
    vertices = skin(v_posed, transforms, weights)
    if extra is not None:
        vertices = vertices + extra
    if transl is not None:
        vertices = vertices + transl[:, None]
        posed_joints = posed_joints + transl[:, None]
    return vertices, posed_joints, world
