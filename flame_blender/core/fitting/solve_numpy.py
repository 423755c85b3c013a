"""Levenberg-Marquardt (damped Gauss-Newton) on a :class:`~.problem.Problem`, numpy only.

The identity and expression columns of the Jacobian are exact (:mod:`.linear`); the pose
columns are forward differences of the forward pass (one batched call); transl and scale are
closed form. A few iterations suffice: the cost is quadratic in all but the pose.
Jacobians are kept coordinate-planar, ``(P, 3, n)``, so that every step is a long matrix product.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .linear import coefficient_jacobian
from .model import FitModel
from .problem import MILLIMETRE, Problem

POSE_STEP = 1e-7
#: A step that moves no vertex by more than this (metres of head: 0.01 mm) ends the solve: the
#: next would move them by far less (Gauss-Newton converges quadratically near the minimum).
STEP_TOLERANCE = 1e-5


def scaled_vertices(model: FitModel, theta: np.ndarray) -> np.ndarray:
    """``exp(theta[-1]) * FLAME(theta[:-1])``: ``(V, 3)`` metres."""
    return np.exp(theta[-1]) * model.vertices(theta[:-1])


def vertex_jacobian(model: FitModel, theta: np.ndarray, vertices: np.ndarray, ids: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``d vertices[ids] / d theta[free]``: ``(P_free, 3, n)``."""
    k = model.n_coefficients
    scale = np.exp(theta[-1])
    columns = np.flatnonzero(free)
    out = np.zeros((len(columns), 3, len(ids)))
    coefficient_columns = columns[columns < k]
    first = len(coefficient_columns)
    if first:
        out[:first] = coefficient_jacobian(model.linear_arrays(), theta[k : k + 15], ids, coefficient_columns)
        out[:first] *= scale
    pose_columns = columns[(columns >= k) & (columns < k + 15)]
    if len(pose_columns):
        probes = np.repeat(theta[None, :-1], len(pose_columns), axis=0)
        probes[np.arange(len(pose_columns)), pose_columns] += POSE_STEP
        moved = scale * model.vertices(probes)[:, ids]  # (m, n, 3)
        difference = (moved - vertices[ids][None]) / POSE_STEP
        out[first : first + len(pose_columns)] = difference.transpose(0, 2, 1)
    for position, column in enumerate(columns):
        if k + 15 <= column < k + 18:
            out[position, column - k - 15] = scale
        elif column == k + 18:
            out[position] = vertices[ids].T
    return out


def normal_equations(problem: Problem, model: FitModel, theta: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Newton ``(H, g)`` of the cost over the free parameters (``g`` = half the gradient)."""
    free = problem.free
    ids = np.unique(np.concatenate([t.vertex_ids.reshape(-1) for t in problem.terms]))
    position = np.full(model.n_vertices, -1)
    position[ids] = np.arange(len(ids))
    jac = vertex_jacobian(model, theta, vertices, ids, free)
    count = int(free.sum())
    hessian = np.zeros((count, count))
    gradient = np.zeros(count)
    for term in problem.terms:
        r = term.residuals(vertices)
        factor = term.weight / max(len(r), 1) / MILLIMETRE**2
        weights = np.full(len(r), factor) if term.row_weights is None else term.row_weights * factor
        root = np.sqrt(weights) * term.barycentric[:, 0]
        if len(problem.terms) == 1 and term.vertex_ids.shape[1] == 1 and np.array_equal(term.vertex_ids[:, 0], ids):
            jac *= root  # the whole Jacobian is this term's: scale it in place, no copy
            rows = jac
        else:
            rows = jac[:, :, position[term.vertex_ids[:, 0]]] * root
            for corner in range(1, term.vertex_ids.shape[1]):
                rows += jac[:, :, position[term.vertex_ids[:, corner]]] * (np.sqrt(weights) * term.barycentric[:, corner])
        if term.normals is not None:
            flat = np.einsum("pcn,nc->pn", rows, term.normals)  # (P, N)
            residual = r * np.sqrt(weights)
        else:
            flat = rows.reshape(count, -1)  # (P, 3N)
            residual = (r.T * np.sqrt(weights)).reshape(-1)
        hessian += flat @ flat.T
        gradient += flat @ residual
    prior = problem.prior_mask[free]
    hessian[np.diag_indices(count)] += prior
    gradient += prior * theta[free]
    return hessian, gradient


def solve_numpy(
    model: FitModel,
    problem: Problem,
    theta: np.ndarray,
    iterations: int,
    progress: Callable[[int, float], bool] | None = None,
) -> tuple[np.ndarray, int]:
    """Minimise ``problem`` from ``theta (P,)``; returns the new ``theta`` and iterations run.

    ``progress(iteration, cost)`` returning False stops early.
    """
    theta = theta.copy()
    vertices = scaled_vertices(model, theta)
    cost = problem.cost(theta, vertices)
    damping = 1e-6
    done = 0
    moved = np.inf
    for done in range(1, iterations + 1):
        hessian, gradient = normal_equations(problem, model, theta, vertices)
        improved = False
        relative = 0.0
        for _ in range(8):
            system = hessian + damping * np.diag(np.diag(hessian) + 1e-12)
            try:
                step = np.linalg.solve(system, -gradient)
            except np.linalg.LinAlgError:
                damping *= 10.0
                continue
            trial = theta.copy()
            trial[problem.free] += step
            trial_vertices = scaled_vertices(model, trial)
            trial_cost = problem.cost(trial, trial_vertices)
            if trial_cost <= cost:
                improved = True
                relative = (cost - trial_cost) / max(cost, 1e-300)
                moved = float(np.abs(trial_vertices - vertices).max())
                theta, vertices, cost = trial, trial_vertices, trial_cost
                damping = max(damping / 10.0, 1e-9)
                break
            damping *= 10.0
        if progress is not None and progress(done, cost) is False:
            break
        if not improved or relative < 1e-9 or moved < STEP_TOLERANCE:
            break
    return theta, done
