"""fit_registered against heads with known vertices (tests/fitting_targets.py), both backends."""

from __future__ import annotations

import numpy as np
import pytest

from flame_blender.core import FlameParameterError
from flame_blender.core.fitting import FitModel, fit_registered
from tests.fitting_targets import random_head

N_SHAPE, N_EXPRESSION = 100, 50


@pytest.fixture(scope="module", params=["numpy", "torch"])
def model(request):
    return FitModel(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION, backend=request.param)


def test_noise_free_recovers_the_vertices(model):
    target = random_head(np.random.default_rng(3), N_SHAPE, N_EXPRESSION, scale=1000.0)
    result = fit_registered(model, target.truth)
    error = np.linalg.norm(result.vertices - target.truth, axis=1)
    assert result.units == "mm" and result.scale == pytest.approx(1000.0)
    assert error.max() <= 0.1, error.max()
    assert result.residuals["vertices"] <= 0.05
    assert result.iterations > 0 and result.seconds > 0 and result.backend == model.backend
    # the parameters describe the same head: the forward pass of them, placed, is the result
    from flame_blender.core import FlameNumpy

    again = FlameNumpy(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION)(**result.parameters.forward_kwargs())
    np.testing.assert_allclose(result.scale * again, result.vertices, atol=1e-6)


def test_noisy_target_in_metres(model):
    rng = np.random.default_rng(4)
    target = random_head(rng, N_SHAPE, N_EXPRESSION, scale=1.0)
    noisy = target.truth + rng.normal(0, 0.001, target.truth.shape)  # 1 mm
    result = fit_registered(model, noisy)
    error_mm = 1000 * np.linalg.norm(result.vertices - target.truth, axis=1)
    assert result.units == "m"
    assert np.median(error_mm) <= 0.5, np.median(error_mm)
    # the residual is the noise: 1 mm per axis, sqrt(3) mm per point
    assert result.residual_mm("vertices") == pytest.approx(np.sqrt(3), rel=0.1)


def test_free_scale_and_centimetres(model):
    target = random_head(np.random.default_rng(5), N_SHAPE, N_EXPRESSION, scale=100.0 * 1.08)
    result = fit_registered(model, target.truth, fit_scale=True)
    assert result.units == "cm"
    assert result.scale == pytest.approx(108.0, rel=2e-3)
    assert np.abs(result.vertices - target.truth).max() <= 0.01  # 0.1 mm in cm


def test_backends_agree():
    target = random_head(np.random.default_rng(6), N_SHAPE, N_EXPRESSION)
    noisy = target.truth + np.random.default_rng(7).normal(0, 1.0, target.truth.shape)
    results = [
        fit_registered(FitModel(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION, backend=b), noisy)
        for b in ("numpy", "torch")
    ]
    assert np.abs(results[0].vertices - results[1].vertices).max() <= 0.05  # mm


def test_callback_stops_and_reports(model):
    target = random_head(np.random.default_rng(8), N_SHAPE, N_EXPRESSION)
    seen = []

    def callback(progress):
        seen.append(progress)
        return False

    result = fit_registered(model, target.truth, callback=callback)
    assert result.stopped and len(seen) == 1 and seen[0].stage == "fit" and np.isfinite(seen[0].cost)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda v: v[:-1], "expected 5023 points"),
        (lambda v: np.zeros((0, 3)), "expected 5023 points"),
        (lambda v: np.where(np.arange(len(v))[:, None] == 7, np.nan, v), "NaN"),
        (lambda v: np.ones_like(v), "degenerate"),
        (lambda v: v * 1e6, "no head size"),
        (lambda v: v * 1e-7, "no head size"),
        (lambda v: v[:, :2], "expected shape"),
    ],
)
def test_bad_targets_are_refused(make, message):
    model = FitModel(None, n_shape=10, n_expression=5, backend="numpy")
    vertices = random_head(np.random.default_rng(9), 10, 5).truth
    with pytest.raises(FlameParameterError, match=message):
        fit_registered(model, make(vertices))


def test_bad_options_are_refused():
    model = FitModel(None, n_shape=10, n_expression=5, backend="numpy")
    vertices = random_head(np.random.default_rng(10), 10, 5).truth
    with pytest.raises(FlameParameterError, match="unknown term"):
        fit_registered(model, vertices, weights={"shapes": 1.0})
    with pytest.raises(FlameParameterError, match="unknown groups"):
        fit_registered(model, vertices, fit=("shape", "hair"))
    with pytest.raises(FlameParameterError, match="units"):
        fit_registered(model, vertices, units="inch")
    with pytest.raises(FlameParameterError, match="backend"):
        fit_registered(model, vertices, backend="torch")
