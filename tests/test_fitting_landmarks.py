"""fit_landmarks against landmarks of heads with known parameters, both backends.

The target landmarks are the forward pass's own landmark output (FlameNumpy.run) for random
parameters, placed by a random rotation, translation and scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from flame_blender.core import FlameNumpy, FlameParameterError
from flame_blender.core.fitting import FitModel, fit_landmarks
from tests.fitting_targets import random_head

N_SHAPE, N_EXPRESSION = 100, 50


def landmark_target(seed: int, embedding: str, scale: float = 1000.0):
    target = random_head(np.random.default_rng(seed), N_SHAPE, N_EXPRESSION, scale=scale)
    out = FlameNumpy(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION).run(**target.parameters.forward_kwargs())
    return target, target.place(out.landmarks[embedding])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("embedding, count", [("static_68", 68), ("mediapipe", 105)])
def test_landmarks_are_reached(backend, embedding, count):
    model = FitModel(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION, backend=backend)
    target, points = landmark_target(11, embedding)
    assert points.shape == (count, 3)
    result = fit_landmarks(model, points, embedding)
    assert result.units == "mm"
    fitted = FlameNumpy(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION).run(**result.parameters.forward_kwargs())
    placed = result.scale * fitted.landmarks[embedding]
    distance = np.linalg.norm(placed - points, axis=1)
    assert distance.max() <= 1.0, distance.max()
    assert result.residuals["landmarks"] == pytest.approx(np.sqrt((distance**2).mean()), rel=1e-6)
    # the priors keep the rest of the head close to the truth (a few millimetres)
    assert np.median(np.linalg.norm(result.vertices - target.truth, axis=1)) <= 3.0


def test_bad_landmarks_are_refused():
    model = FitModel(None, n_shape=10, n_expression=5, backend="numpy")
    _, points = landmark_target(12, "static_68")
    with pytest.raises(FlameParameterError, match="expected 68 points"):
        fit_landmarks(model, points[:51], "static_68")
    with pytest.raises(FlameParameterError, match="expected 105 points"):
        fit_landmarks(model, points, "mediapipe")
    with pytest.raises(FlameParameterError, match="landmark embeddings"):
        fit_landmarks(model, points, "dlib_81")
    with pytest.raises(FlameParameterError, match="NaN"):
        fit_landmarks(model, np.where(points > 0, np.nan, points), "static_68")
