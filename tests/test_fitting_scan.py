"""fit_scan against scans of heads with known vertices (tests/fitting_targets.py).

Scans are points spread by area over the known head's skin (its back cut away), with 1 mm of
Gaussian noise, placed by a random rotation, translation and scale; errors are measured on the
face region against the known vertices.
"""

from __future__ import annotations

import numpy as np
import pytest

from flame_blender.core import FlameNumpy, FlameParameterError
from flame_blender.core.fitting import FitModel, fit_scan
from tests.fitting_targets import random_head, scan_of

N_SHAPE, N_EXPRESSION = 100, 50


@pytest.fixture(scope="module")
def numpy_model():
    return FitModel(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION, backend="numpy")


def face_error_mm(model, result, target) -> float:
    error = np.linalg.norm(result.vertices - target.truth, axis=1) * 1000.0 / target.scale
    return float(np.median(error[model.masks["face"]]))


def scan_target(seed: int, model, scale: float = 1000.0, count: int = 20000):
    rng = np.random.default_rng(seed)
    target = random_head(rng, N_SHAPE, N_EXPRESSION, scale=scale)
    return target, scan_of(target, count, 1.0, rng, model.faces)


def landmarks_of(target) -> np.ndarray:
    out = FlameNumpy(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION).run(**target.parameters.forward_kwargs())
    return target.place(out.landmarks["static_68"])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_scan_with_landmarks(backend):
    model = FitModel(None, n_shape=N_SHAPE, n_expression=N_EXPRESSION, backend=backend)
    target, points = scan_target(20, model)
    result = fit_scan(model, points, landmarks=landmarks_of(target), iterations=8)
    assert result.units == "mm"
    assert face_error_mm(model, result, target) <= 1.5
    # 1 mm of noise per axis: point-to-plane distances of about 1 mm
    assert 0.5 <= result.residuals["scan_to_model"] <= 1.5
    assert result.residuals["landmarks"] <= 1.0


def test_scan_without_landmarks_in_metres(numpy_model):
    target, points = scan_target(21, numpy_model, scale=1.0)
    result = fit_scan(numpy_model, points)
    assert result.units == "m"
    assert face_error_mm(numpy_model, result, target) <= 2.0


def test_scan_mesh_with_faces_is_sampled(numpy_model):
    """A scan given as a mesh: its surface is sampled, so a coarse mesh is enough."""
    rng = np.random.default_rng(22)
    target = random_head(rng, N_SHAPE, N_EXPRESSION)
    faces = numpy_model.faces[(numpy_model.faces < 3931).all(axis=1)]  # skin only
    result = fit_scan(numpy_model, target.truth, faces=faces, landmarks=landmarks_of(target), iterations=6)
    assert face_error_mm(numpy_model, result, target) <= 1.0


def test_callback_can_stop_a_scan_fit(numpy_model):
    target, points = scan_target(23, numpy_model, count=2000)
    stages = []

    def callback(progress):
        stages.append(progress.stage)
        return len(stages) < 3

    result = fit_scan(numpy_model, points, landmarks=landmarks_of(target), callback=callback)
    assert result.stopped and len(stages) == 3


def test_bad_scans_are_refused(numpy_model):
    target, points = scan_target(24, numpy_model, count=500)
    with pytest.raises(FlameParameterError, match="at least 100"):
        fit_scan(numpy_model, points[:50])
    with pytest.raises(FlameParameterError, match="NaN"):
        fit_scan(numpy_model, np.where(points > 50, np.inf, points))
    with pytest.raises(FlameParameterError, match="faces"):
        fit_scan(numpy_model, points, faces=np.array([[0, 1, 500]]))
    with pytest.raises(FlameParameterError, match="regions"):
        fit_scan(numpy_model, points, regions=("beard",))
    with pytest.raises(FlameParameterError, match="expected 68 points"):
        fit_scan(numpy_model, points, landmarks=points[:60])
    with pytest.raises(FlameParameterError, match="no head size"):
        fit_scan(numpy_model, points * 1e5)


#: Placements a scanner may hand over: upside down (half a turn about the view axis, y -> -y,
#: x -> -x) and facing away (half a turn about the vertical, z -> -z, x -> -x), each slightly
#: tilted, besides random rotations.
UPSIDE_DOWN = np.diag([-1.0, -1.0, 1.0])
FACING_AWAY = np.diag([-1.0, 1.0, -1.0])


@pytest.mark.parametrize(("seed", "placement"), [
    (30, None), (31, None), (34, UPSIDE_DOWN), (35, FACING_AWAY),
])
def test_scan_without_landmarks_finds_the_orientation(numpy_model, seed, placement):
    """Random rotations, upside down, facing away, mm and m: the rigid search (cap facing,
    principal axes, coarse fits from turned starts) must land on the face, the only way to a
    face-region median within 2 mm of the known head."""
    rng = np.random.default_rng(seed)
    rotation = None
    if placement is not None:
        q, r = np.linalg.qr(np.eye(3) + 0.1 * rng.standard_normal((3, 3)))
        rotation = placement @ (q * np.sign(np.diag(r)))  # a tilt of a few degrees
    scale = 1000.0 if seed % 2 == 0 else 1.0
    target = random_head(rng, N_SHAPE, N_EXPRESSION, scale=scale, rotation=rotation)
    points = scan_of(target, 20000, 1.0, rng, numpy_model.faces)
    result = fit_scan(numpy_model, points)
    assert result.units == ("mm" if seed % 2 == 0 else "m")
    assert face_error_mm(numpy_model, result, target) <= 2.0
