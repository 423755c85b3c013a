"""Fit FLAME to a mesh in FLAME topology (a registration, a tracker's output mesh)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .. import FlameParameters
from .common import FitClock, finish, initial_theta, rest_root, run_stage
from .model import FitModel, resolve_model
from .problem import FIT_GROUPS, Problem, Term, free_mask, term_weights
from .result import Callback, FitResult, check_points, detect_units, extent
from .rigid import rigid_parameters, similarity


def fit_registered(
    model: FitModel | str | Path | None,
    vertices: object,
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
    """Shape, expression, pose, transl (and optionally scale) of a FLAME-topology mesh.

    Args:
        model: a :class:`FitModel`, a FLAME folder, or None for the built-in synthetic model.
        vertices: ``(5023, 3)`` in any frame and in m, cm or mm.
        fit: the groups to fit ("shape", "expression", "pose"); the global rotation and transl
            always are.
        fit_scale: also fit a free scale (else the unit's scale is exact).
        units: "auto" (from the extent), "m", "cm", "mm" or target units per metre.
        weights: term weights ("vertices", "shape_prior", "expression_prior", "pose_prior").
        iterations: solver iterations (Gauss-Newton steps, or L-BFGS evaluations x 1/10 for torch).
        start: parameters to start from (identity, expression, pose); None = template.
        callback: called with a :class:`FitProgress`; returning False stops.
        backend, device: see :class:`FitModel` (ignored when ``model`` is one).
    """
    clock = FitClock(callback)
    model = resolve_model(model, backend, device)
    target = check_points("vertices", vertices, count=model.n_vertices)
    unit_name, unit_scale = detect_units(extent(target), extent(model.v_template), units)
    target_m = target / unit_scale
    # a dense target pins every component: priors only need to keep the solve well posed
    w = term_weights(weights, shape_prior=1e-7, expression_prior=1e-7, pose_prior=1e-6)
    theta = initial_theta(model, start)

    # rigid (and scale) start: align the start head's rest vertices to the target
    rest = theta.copy()
    rest[model.n_coefficients :] = 0.0
    from .solve_numpy import scaled_vertices

    s, rotation, translation = similarity(scaled_vertices(model, rest), target_m, with_scale=fit_scale)
    global_pose, transl, log_scale = rigid_parameters(s, rotation, translation, rest_root(model, theta))
    k = model.n_coefficients
    if start is None:
        theta[k : k + 3] = global_pose
        theta[k + 15 : k + 18] = transl
        theta[-1] = log_scale
    ids = np.arange(model.n_vertices)[:, None]
    term = Term("vertices", ids, np.ones((model.n_vertices, 1)), target_m, w["vertices"])
    problem = Problem(
        model.n_shape, model.n_expression, [term], free_mask(model.n_shape, model.n_expression, fit, fit_scale),
        shape_prior=w["shape_prior"], expression_prior=w["expression_prior"], pose_prior=w["pose_prior"],
    )
    steps = iterations if model.backend == "numpy" else iterations * 8
    theta = run_stage(model, problem, theta, steps, clock, "fit")
    return finish(model, problem, theta, unit_scale, unit_name, clock)
