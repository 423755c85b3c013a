"""The steps every fit shares: the starting vector, running a solver stage, the result."""

from __future__ import annotations

import time

import numpy as np

from .. import FlameParameters
from .model import FitModel, parameter_count, split_parameters
from .problem import Problem
from .result import Callback, FitProgress, FitResult


class FitClock:
    """Counts iterations and time across stages and relays progress to the user's callback."""

    def __init__(self, callback: Callback | None) -> None:
        self.start = time.perf_counter()
        self.callback = callback
        self.iterations = 0
        self.stopped = False

    def progress(self, stage: str):
        def report(iteration: int, cost: float) -> bool:
            self.iterations += 1
            if self.callback is not None and self.callback(FitProgress(stage, iteration, cost)) is False:
                self.stopped = True
                return False
            return True

        return report


def run_stage(model: FitModel, problem: Problem, theta: np.ndarray, iterations: int, clock: FitClock, stage: str, rounds: int = 3) -> np.ndarray:
    """Run the model's solver for one stage (nothing once the callback has stopped the fit).

    ``rounds``: whitened L-BFGS restarts of the torch solver (see :mod:`.solve_torch`)."""
    if clock.stopped:
        return theta
    if model.backend == "torch":
        from .solve_torch import solve_torch

        theta, _ = solve_torch(model, problem, theta, iterations, clock.progress(stage), rounds=rounds)
    else:
        from .solve_numpy import solve_numpy

        theta, _ = solve_numpy(model, problem, theta, iterations, clock.progress(stage))
    return theta


def initial_theta(model: FitModel, start: FlameParameters | None = None) -> np.ndarray:
    """``theta (P,)`` from a start (resized to the model's components) or zeros."""
    theta = np.zeros(parameter_count(model.n_shape, model.n_expression) + 1)
    if start is not None:
        p = start.resized(model.n_shape, model.n_expression)
        k = model.n_coefficients
        theta[: model.n_shape] = p.shape
        theta[model.n_shape : k] = p.expression
        theta[k : k + 15] = np.concatenate([p.global_pose, p.neck_pose, p.jaw_pose, p.eye_pose])
        theta[k + 15 : k + 18] = p.transl
    return theta


def to_parameters(model: FitModel, theta: np.ndarray) -> FlameParameters:
    values = split_parameters(theta[:-1], model.n_shape, model.n_expression)
    return FlameParameters(
        shape=values["shape_params"], expression=values["expression_params"],
        global_pose=values["global_pose"], neck_pose=values["neck_pose"], jaw_pose=values["jaw_pose"],
        eye_pose=values["eye_pose"], transl=values["transl"],
    )


def rest_root(model: FitModel, theta: np.ndarray) -> np.ndarray:
    """The rest-pose root joint ``(3,)`` of the head ``theta`` describes (its identity/expression)."""
    rest = theta[:-1].copy()
    rest[model.n_coefficients :] = 0.0
    values = split_parameters(rest, model.n_shape, model.n_expression)
    out = model.forward_model.run(**values)
    joints = out.joints
    if hasattr(joints, "detach"):
        joints = joints.detach().cpu().numpy()
    return np.asarray(joints[0], dtype=np.float64)


def finish(model: FitModel, problem: Problem, theta: np.ndarray, unit_scale: float, units: str, clock: FitClock) -> FitResult:
    """The :class:`FitResult` of ``theta`` for a target in units of ``unit_scale`` per metre."""
    from .solve_numpy import scaled_vertices

    vertices = scaled_vertices(model, theta)
    residuals = {}
    for term in problem.terms:
        r = term.residuals(vertices)
        squared = (r * r).sum(-1) if r.ndim == 2 else r * r
        if term.row_weights is not None:  # robust terms: the inliers' distances
            squared = squared[term.row_weights > 0.5]
        residuals[term.name] = float(np.sqrt(squared.mean())) * unit_scale if len(squared) else 0.0
    return FitResult(
        parameters=to_parameters(model, theta),
        vertices=vertices * unit_scale,
        residuals=residuals,
        scale=float(unit_scale * np.exp(theta[-1])),
        units=units,
        iterations=clock.iterations,
        seconds=time.perf_counter() - clock.start,
        backend=model.backend,
        stopped=clock.stopped,
    )
