"""The exact derivative of FLAME's vertices with respect to identity and expression, numpy.

For a fixed pose FLAME is affine in its coefficients: the pose correctives depend on the pose
alone, the rest joints ``J = J_regressor @ v_shaped`` are linear in the coefficients, and linear
blend skinning with fixed rotations is affine in the shaped vertices and the joints. Writing the
skinning as ``v = sum_j w_j (Rw_j (x - J_j) + P_j)`` (``Rw_j`` world rotations, ``P_j`` posed
joints, ``P_root = J_root``, ``P_j = P_parent + Rw_parent (J_j - J_parent)``), a change ``dx``
of the shaped mesh and ``dJ`` of the joints moves a vertex by

    dv = (sum_j w_j Rw_j) dx + sum_j w_j (dP_j - Rw_j dJ_j)

so the Jacobian of all vertices for K coefficients costs one ``(V, 3, 3)`` blended rotation and a
five-joint chain, not K forward passes. ``tests/test_fitting_linear.py`` checks it against finite
differences of the forward pass. The pose columns (few) are finite differences of the forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .rotation import axis_angle_to_matrix

SHAPE_SPACE_SIZE = 300


@dataclass(frozen=True)
class LinearArrays:
    """What the linear part needs (float64): ``directions (3, K, V)`` (coordinate-planar; shape
    then expression rows), ``joint_directions (K, J, 3)``, ``weights (V, J)``, ``parents``."""

    directions: np.ndarray
    joint_directions: np.ndarray
    weights: np.ndarray
    parents: tuple[int, ...]

    @classmethod
    def from_model(cls, model: Mapping[str, Any], n_shape: int, n_expression: int) -> LinearArrays:
        shapedirs = np.asarray(model["shapedirs"], dtype=np.float64)
        file_shape = min(SHAPE_SPACE_SIZE, shapedirs.shape[2])
        columns = np.r_[0:n_shape, file_shape : file_shape + n_expression]
        directions = np.ascontiguousarray(shapedirs[:, :, columns].transpose(1, 2, 0))
        regressor = model["J_regressor"]
        if hasattr(regressor, "toarray"):
            regressor = regressor.toarray()
        regressor = np.asarray(regressor, dtype=np.float64)
        joint_directions = np.einsum("jv,ckv->kjc", regressor, directions)
        kintree = np.asarray(model["kintree_table"])
        parents = tuple(-1 if i == 0 else int(kintree[0, i]) for i in range(kintree.shape[1]))
        weights = np.asarray(model["weights"], dtype=np.float64)
        return cls(directions, joint_directions, weights, parents)


def coefficient_jacobian(arrays: LinearArrays, pose: np.ndarray, vertex_ids: np.ndarray | None = None, columns: np.ndarray | None = None) -> np.ndarray:
    """``d vertices / d coefficients`` at a pose, ``(K, 3, n)`` (coordinate-planar) for
    ``vertex_ids`` (all vertices if None) and the coefficients ``columns`` (all if None).

    Args:
        pose: ``(15,)`` the four poses (global, neck, jaw, eyes) in joint order.
    """
    n_joints = len(arrays.parents)
    rotations = axis_angle_to_matrix(np.asarray(pose, dtype=np.float64).reshape(n_joints, 3))
    world = np.empty_like(rotations)
    for j, parent in enumerate(arrays.parents):
        world[j] = rotations[j] if parent < 0 else world[parent] @ rotations[j]
    every_column = columns is None or len(columns) == arrays.joint_directions.shape[0]
    dj = arrays.joint_directions if every_column else arrays.joint_directions[columns]  # (K, J, 3)
    dp = np.empty_like(dj)
    for j, parent in enumerate(arrays.parents):
        if parent < 0:
            dp[:, j] = dj[:, j]
        else:
            dp[:, j] = dp[:, parent] + (dj[:, j] - dj[:, parent]) @ world[parent].T
    joint_terms = dp - np.einsum("jab,kjb->kja", world, dj)  # (K, J, 3)
    every = vertex_ids is None or (len(vertex_ids) == arrays.weights.shape[0] and np.array_equal(vertex_ids, np.arange(len(vertex_ids))))
    weights = arrays.weights if every else arrays.weights[vertex_ids]
    directions = arrays.directions if every_column else arrays.directions[:, columns]
    directions = directions if every else directions[:, :, vertex_ids]
    blended = (weights @ world.reshape(n_joints, 9)).T.reshape(3, 3, -1)  # (3, 3, n)
    count = directions.shape[1]
    out = np.empty((count, 3, directions.shape[2]))
    scratch = np.empty((count, directions.shape[2]))
    for a in range(3):
        row = out[:, a]
        np.matmul(joint_terms[:, :, a], weights.T, out=row)
        for b in range(3):
            np.multiply(directions[b], blended[a, b], out=scratch)
            row += scratch
    return out
