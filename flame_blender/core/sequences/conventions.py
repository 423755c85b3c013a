"""Rotation conventions trackers write, normalised into FLAME's axis-angle (radians).

* **6D** (pytorch3d ``matrix_to_rotation_6d``): the first two *rows* of the rotation matrix,
  ``(..., 6)``. The matrix is rebuilt by Gram-Schmidt exactly as ``rotation_6d_to_matrix`` does.
* **Euler**: three angles and an order of *intrinsic* axes, as scipy's upper-case orders
  (``"XYZ"`` is ``Rx @ Ry @ Rz``); lower-case orders are extrinsic (``"xyz"`` is
  ``Rz @ Ry @ Rx``). Units are radians unless ``degrees=True``.
* **Matrix**: ``(..., 3, 3)`` rotation matrices.
"""

from __future__ import annotations

import numpy as np

from ..model.rotation import axis_angle_to_matrix, matrix_to_axis_angle

#: Rotation conventions accepted by :func:`to_axis_angle` (and the key-mapping option).
CONVENTIONS = ("axis_angle", "6d", "matrix", "euler")


def rotation_6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """``(..., 6)`` -> ``(..., 3, 3)``: rows ``b1, b2, b1 x b2`` (Zhou et al., pytorch3d)."""
    d6 = np.asarray(d6, dtype=np.float64)
    if d6.shape[-1:] != (6,):
        raise ValueError(f"6D rotations need 6 values in the last axis, got shape {d6.shape}")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-2)


def _axis_matrix(axis: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def euler_to_matrix(angles: np.ndarray, order: str, degrees: bool = False) -> np.ndarray:
    """``(..., 3)`` angles, in the order the axes are named -> ``(..., 3, 3)``.

    ``order`` upper case is intrinsic (``"XYZ"`` -> ``Rx(a0) @ Ry(a1) @ Rz(a2)``, scipy's
    convention), lower case extrinsic (``"xyz"`` -> ``Rz(a2) @ Ry(a1) @ Rx(a0)``).
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape[-1:] != (3,) or len(order) != 3 or not (order.isupper() or order.islower()):
        raise ValueError(f"Euler angles (..., 3) with an order like 'XYZ' or 'xyz', got {order!r}")
    if set(order.upper()) - set("XYZ"):
        raise ValueError(f"Euler order {order!r}: axes must be X, Y, Z")
    if degrees:
        angles = np.deg2rad(angles)
    mats = [_axis_matrix(axis.upper(), angles[..., i]) for i, axis in enumerate(order)]
    if order.islower():
        mats = mats[::-1]
    return mats[0] @ mats[1] @ mats[2]


def to_axis_angle(values: np.ndarray, convention: str, order: str = "XYZ", degrees: bool = False) -> np.ndarray:
    """Rotations in ``convention`` -> axis-angle ``(..., 3)``.

    ``values`` is ``(..., 3)`` for axis-angle and Euler, ``(..., 6)`` for 6D, ``(..., 3, 3)``
    for matrices.
    """
    if convention == "axis_angle":
        return np.asarray(values, dtype=np.float64)
    if convention == "6d":
        return matrix_to_axis_angle(rotation_6d_to_matrix(values))
    if convention == "matrix":
        return matrix_to_axis_angle(np.asarray(values, dtype=np.float64))
    if convention == "euler":
        return matrix_to_axis_angle(euler_to_matrix(values, order, degrees))
    raise ValueError(f"rotation convention {convention!r}: expected one of {CONVENTIONS}")


__all__ = [
    "CONVENTIONS", "axis_angle_to_matrix", "euler_to_matrix", "rotation_6d_to_matrix", "to_axis_angle",
]
