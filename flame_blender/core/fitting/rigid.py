"""Similarity alignment of corresponding points (Umeyama 1991), and its FLAME parameters."""

from __future__ import annotations

import numpy as np

from .rotation import matrix_to_axis_angle


def similarity(source: np.ndarray, target: np.ndarray, with_scale: bool = True, weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` minimising ``sum w |s R source_i + t - target_i|^2`` (``(N, 3)`` each)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = w @ source
    mu_t = w @ target
    a = source - mu_s
    b = target - mu_t
    covariance = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(covariance)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rotation = (u * sign) @ vt
    scale = float((d * sign).sum() / (w @ (a * a).sum(1))) if with_scale else 1.0
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation


def rigid_parameters(scale: float, rotation: np.ndarray, translation: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """FLAME ``global_pose``, ``transl`` and log-scale that move rest points ``x`` to
    ``scale (R x + translation / scale)``: FLAME rotates about the rest root joint ``root (3,)``."""
    transl = translation / scale - root + rotation @ root
    return matrix_to_axis_angle(rotation), transl, float(np.log(scale))
