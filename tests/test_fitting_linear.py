"""The numpy solver's exact coefficient Jacobian against central differences of the forward pass."""

from __future__ import annotations

import numpy as np

from flame_blender.core import FlameNumpy
from flame_blender.core.fitting import FitModel
from flame_blender.core.fitting.linear import coefficient_jacobian


def test_coefficient_jacobian_matches_forward_differences():
    rng = np.random.default_rng(0)
    model = FitModel(None, n_shape=20, n_expression=10, backend="numpy")
    forward = FlameNumpy(None, n_shape=20, n_expression=10)
    shape, expression = rng.normal(size=20), rng.normal(size=10)
    pose = rng.uniform(-0.4, 0.4, 15)
    kwargs = dict(global_pose=pose[:3], neck_pose=pose[3:6], jaw_pose=pose[6:9], eye_pose=pose[9:])
    ids = np.array([0, 17, 1000, 3000, 3931, 4500, 5022])
    jac = coefficient_jacobian(model.linear_arrays(), pose, ids)  # (K, 3, n)
    step = 1e-3  # affine in the coefficients: differences are exact up to rounding
    for column in range(30):
        delta = np.zeros(30)
        delta[column] = step
        coefficients = np.concatenate([shape, expression])
        plus = forward(shape_params=(coefficients + delta)[:20], expression_params=(coefficients + delta)[20:], **kwargs)
        minus = forward(shape_params=(coefficients - delta)[:20], expression_params=(coefficients - delta)[20:], **kwargs)
        expected = ((plus - minus) / (2 * step))[ids].T
        np.testing.assert_allclose(jac[column], expected, atol=1e-9)
