"""Fit FLAME to 3D landmark positions (iBUG 68, MediaPipe 105, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .. import FlameParameters
from ..errors import FlameParameterError
from .common import FitClock, finish, initial_theta, rest_root, run_stage
from .model import FitModel, resolve_model
from .problem import FIT_GROUPS, Problem, Term, free_mask, term_weights
from .result import Callback, FitResult, check_points, detect_units, extent
from .rigid import rigid_parameters, similarity

#: Landmarks pin far fewer values than a mesh: priors keep the head plausible.
LANDMARK_PRIORS = {"shape_prior": 1e-3, "expression_prior": 1e-3, "pose_prior": 1e-2}


def landmark_term(model: FitModel, embedding: str, targets: np.ndarray, weight: float, name: str = "landmarks") -> Term:
    """A data term pulling the ``embedding`` landmarks to ``targets (L, 3)`` (model metres)."""
    static = model.landmarks.static
    if embedding not in static:
        raise FlameParameterError(
            f"embedding {embedding!r}: this model has the landmark embeddings {sorted(static)}"
        )
    vertex_ids, barycentric = static[embedding]
    if len(targets) != len(vertex_ids):
        raise FlameParameterError(
            f"landmarks: embedding {embedding!r} has {len(vertex_ids)} points, the target {len(targets)}"
        )
    return Term(name, np.asarray(vertex_ids), np.asarray(barycentric, dtype=np.float64), targets, weight)


def landmark_count(model: FitModel, embedding: str) -> int | None:
    found = model.landmarks.static.get(embedding)
    return None if found is None else len(found[0])


def template_landmarks(model: FitModel, embedding: str, theta: np.ndarray) -> np.ndarray:
    """The ``embedding`` landmarks ``(L, 3)`` of the rest head ``theta`` describes (metres)."""
    from .solve_numpy import scaled_vertices

    rest = theta.copy()
    rest[model.n_coefficients :] = 0.0
    term = landmark_term(model, embedding, np.zeros((landmark_count(model, embedding) or 0, 3)), 1.0)
    return term.points(scaled_vertices(model, rest))


def fit_landmarks(
    model: FitModel | str | Path | None,
    points: object,
    embedding: str = "static_68",
    *,
    fit: Iterable[str] = FIT_GROUPS,
    fit_scale: bool = False,
    units: str | float = "auto",
    weights: dict[str, float] | None = None,
    iterations: int = 30,
    start: FlameParameters | None = None,
    callback: Callback | None = None,
    backend: str = "auto",
    device: str = "cpu",
) -> FitResult:
    """Shape, expression, pose and transl from 3D landmark positions.

    Args:
        points: ``(L, 3)`` in the order of ``embedding`` ("static_68", "static_51", "full_68",
            "mediapipe", whatever the model folder holds), in any frame, m, cm or mm.
        weights: "landmarks", "shape_prior", "expression_prior", "pose_prior" (the priors
            default to :data:`LANDMARK_PRIORS`: landmarks alone do not pin 400 coefficients).

    The other arguments are those of :func:`~.registered.fit_registered`. The eyes are not fitted.
    """
    clock = FitClock(callback)
    model = resolve_model(model, backend, device)
    count = landmark_count(model, embedding)
    if count is None:
        raise FlameParameterError(
            f"embedding {embedding!r}: this model has the landmark embeddings {sorted(model.landmarks.static)}"
        )
    target = check_points("landmarks", points, count=count)
    w = term_weights(weights, **LANDMARK_PRIORS)
    theta = initial_theta(model, start)
    rest_points = template_landmarks(model, embedding, theta)
    unit_name, unit_scale = detect_units(extent(target), extent(rest_points), units)
    target_m = target / unit_scale
    if start is None:
        s, rotation, translation = similarity(rest_points, target_m, with_scale=fit_scale)
        global_pose, transl, log_scale = rigid_parameters(s, rotation, translation, rest_root(model, theta))
        k = model.n_coefficients
        theta[k : k + 3] = global_pose
        theta[k + 15 : k + 18] = transl
        theta[-1] = log_scale
    problem = Problem(
        model.n_shape, model.n_expression, [landmark_term(model, embedding, target_m, w["landmarks"])],
        free_mask(model.n_shape, model.n_expression, fit, fit_scale, eyes=False),
        shape_prior=w["shape_prior"], expression_prior=w["expression_prior"], pose_prior=w["pose_prior"],
    )
    steps = iterations if model.backend == "numpy" else iterations * 4
    theta = run_stage(model, problem, theta, steps, clock, "fit")
    return finish(model, problem, theta, unit_scale, unit_name, clock)
