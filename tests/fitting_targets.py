"""Fitting targets made from synthetic heads with known parameters (shared by the fitting tests).

The ground truth is the public forward pass (FlameNumpy) of random parameters; the rigid motion
is a random orthogonal matrix from a QR decomposition (no rotation code of the project), so the
fitters' conventions play no part in making the targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Target:
    truth: np.ndarray  # (5023, 3) ground-truth vertices in the target frame and units
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    scale: float  # target units per metre
    parameters: object  # FlameParameters

    def place(self, points_m: np.ndarray) -> np.ndarray:
        """Points in FLAME metres ``(N, 3)`` -> the target frame and units."""
        return self.scale * (points_m @ self.rotation.T) + self.translation


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_head(rng: np.random.Generator, n_shape: int = 300, n_expression: int = 100, scale: float = 1000.0,
                rotation: np.ndarray | None = None) -> Target:
    """A random head (shape and expression within 2 sigma, jaw and neck up to 0.5 rad), rotated
    at random (or by ``rotation (3, 3)``), translated and scaled to ``scale`` units per metre."""
    from flame_blender.core import FlameNumpy, FlameParameters

    params = FlameParameters.zeros(n_shape, n_expression)
    params.shape = np.clip(rng.standard_normal(n_shape), -2, 2)
    params.expression = np.clip(rng.standard_normal(n_expression), -2, 2)
    params.jaw_pose = np.array([rng.uniform(0.0, 0.5), 0.0, 0.0])
    params.neck_pose = rng.uniform(-0.5, 0.5, 3) * np.array([1.0, 1.0, 0.3])
    truth_m = FlameNumpy(None, n_shape=n_shape, n_expression=n_expression)(**params.forward_kwargs())
    rotation = random_rotation(rng) if rotation is None else np.asarray(rotation, dtype=np.float64)
    translation = rng.uniform(-1, 1, 3) * 0.3 * scale
    target = Target(np.zeros(0), rotation, translation, scale, params)
    target.truth = target.place(truth_m)
    return target


def scan_of(target: Target, count: int, noise_mm: float, rng: np.random.Generator, faces: np.ndarray) -> np.ndarray:
    """``count`` points on the head's skin (eyeballs left out, as a scanner sees skin), uniform
    by area, the back of the head (behind the ears) cut away, Gaussian noise of ``noise_mm``
    per axis; in the target's frame and units."""
    head_frame = ((target.truth - target.translation) / target.scale) @ target.rotation
    skin = faces[(faces < 3931).all(axis=1)]
    corners = head_frame[skin]
    front = corners[:, :, 2].mean(axis=1) > -0.03  # FLAME looks along +z; drop the back
    corners = corners[front]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    chosen = rng.choice(len(corners), size=count, p=area / area.sum())
    a, b = rng.random(count), rng.random(count)
    swap = a + b > 1
    a[swap], b[swap] = 1 - a[swap], 1 - b[swap]
    c = corners[chosen]
    points = c[:, 0] + a[:, None] * (c[:, 1] - c[:, 0]) + b[:, None] * (c[:, 2] - c[:, 0])
    return target.place(points) + rng.normal(0.0, noise_mm * target.scale / 1000.0, points.shape)
