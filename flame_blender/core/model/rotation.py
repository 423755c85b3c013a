"""Axis-angle rotations for numpy arrays and torch tensors, exact at zero and accurate up to a half turn.

An axis-angle vector ``r`` (radians) rotates by ``theta = |r|`` about ``r / theta``. Rodrigues'
formula, written with no ``1 - cos`` cancellation and no division by zero::

    R = I + sinc(theta) K + ((1 - cos theta) / theta^2) K^2,    K = [r]_x,  K^2 = r r^T - theta^2 I
    (1 - cos theta) / theta^2 = 2 (sin(theta / 2) / theta)^2

``theta`` is taken as ``sqrt(theta^2 + tiny)`` with ``tiny`` the smallest normal number: that
only changes ``theta`` where ``K`` is itself negligible, keeps ``sin(theta) / theta`` away from
``0 / 0``, and keeps torch gradients finite at zero (``d theta / d r = r / theta`` is 0, not 0 / 0). A zero vector gives the
identity matrix bit for bit (``K = 0``, ``K^2 = 0``), which is what makes a zero pose reproduce
``v_template`` exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# r @ SKEW gives the 9 entries of the cross-product matrix [r]_x, row-major.
SKEW = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0],
        [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)


def axis_angle_to_matrix(rotation_vectors: Any) -> Any:
    """Rotation matrices from axis-angle vectors, numpy or torch (differentiable).

    Args:
        rotation_vectors: ``(..., 3)`` radians, a numpy array (or list) or a torch tensor.
    Returns:
        ``(..., 3, 3)`` rotation matrices of the same kind (the input's floating dtype, float64
        for integers); ``R @ p`` rotates a column vector ``p``.
    """
    if type(rotation_vectors).__module__.startswith("torch"):
        import torch

        r = rotation_vectors
        skew, eye = _torch_constants(r.dtype, r.device)
        return _rodrigues(r, torch, skew, eye, torch.finfo(r.dtype).tiny)
    r = np.asarray(rotation_vectors)
    if not np.issubdtype(r.dtype, np.floating):
        r = r.astype(np.float64)
    if r.shape[-1:] != (3,):
        raise ValueError(f"axis-angle vectors must have 3 values in the last axis, got shape {r.shape}")
    return _rodrigues(r, np, SKEW.astype(r.dtype, copy=False), np.eye(3, dtype=r.dtype), np.finfo(r.dtype).tiny)


def _rodrigues(r: Any, xp: Any, skew: Any, eye: Any, tiny: float) -> Any:
    """The formula of the module docstring, with ``xp`` = numpy or torch."""
    t2 = (r * r).sum(-1)[..., None, None]
    theta = xp.sqrt(t2 + tiny)
    half = xp.sin(0.5 * theta) / theta
    versine = 2.0 * half * half
    k = (r @ skew).reshape(tuple(r.shape[:-1]) + (3, 3))
    return versine * (r[..., :, None] * r[..., None, :]) + (xp.sin(theta) / theta) * k + (1.0 - versine * t2) * eye


_TORCH_CONSTANTS: dict[Any, tuple[Any, Any]] = {}


def _torch_constants(dtype: Any, device: Any) -> tuple[Any, Any]:
    found = _TORCH_CONSTANTS.get((dtype, device))
    if found is None:
        import torch

        found = (torch.as_tensor(SKEW, dtype=dtype, device=device), torch.eye(3, dtype=dtype, device=device))
        _TORCH_CONSTANTS[(dtype, device)] = found
    return found


def matrix_to_axis_angle(matrices: np.ndarray) -> np.ndarray:
    """Axis-angle vectors ``(..., 3)`` (angle in ``[0, pi]``) from rotation matrices ``(..., 3, 3)``.

    Uses the quaternion of the matrix, which stays accurate near 0 and near pi.
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be (..., 3, 3), got shape {m.shape}")
    flat = m.reshape(-1, 3, 3)
    quats = np.empty((flat.shape[0], 4))
    for i, r in enumerate(flat):
        quats[i] = _matrix_to_quaternion(r)
    w = quats[:, 0]
    xyz = quats[:, 1:] * np.where(w < 0, -1.0, 1.0)[:, None]
    w = np.abs(w)
    sin_half = np.linalg.norm(xyz, axis=1)
    angle = 2.0 * np.arctan2(sin_half, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(sin_half > 1e-12, angle / np.where(sin_half > 1e-12, sin_half, 1.0), 2.0)
    return (xyz * scale[:, None]).reshape(m.shape[:-2] + (3,))


def _matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    # Shepperd's method: divide by the largest of the four candidates, never by a tiny one.
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    candidates = np.array([trace, r[0, 0], r[1, 1], r[2, 2]])
    k = int(np.argmax(candidates))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)
