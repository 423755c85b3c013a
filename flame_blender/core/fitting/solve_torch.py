"""L-BFGS with autograd through the torch forward pass, on a :class:`~.problem.Problem`.

Same cost as :mod:`.solve_numpy` (float64). The coefficients span effects from about 10 mm to
0.1 mm per unit, so plain L-BFGS crawls; it runs instead in coordinates whitened by the
Gauss-Newton matrix at the start (``H0 = L L^T``, ``theta = theta0 + L^-T u``), where the cost
is nearly ``|u|^2``-shaped and a few dozen evaluations converge. Gradients come from autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .model import FitModel, split_parameters
from .problem import MILLIMETRE, Problem


def _whitening(model: FitModel, problem: Problem, theta: np.ndarray) -> np.ndarray:
    """``L^-T (P_free, P_free)`` from the Gauss-Newton matrix at ``theta``."""
    from .solve_numpy import normal_equations, scaled_vertices

    hessian, _ = normal_equations(problem, model, theta, scaled_vertices(model, theta))
    diagonal = np.diag(hessian).copy()
    hessian[np.diag_indices_from(hessian)] += 1e-6 * diagonal + 1e-12
    lower = np.linalg.cholesky(hessian)
    return np.linalg.inv(lower).T


#: L-BFGS restarts, each whitened anew at the point reached (the pose makes the cost non-quadratic).
ROUNDS = 3


def solve_torch(
    model: FitModel,
    problem: Problem,
    theta: np.ndarray,
    iterations: int,
    progress: Callable[[int, float], bool] | None = None,
    rounds: int = ROUNDS,
) -> tuple[np.ndarray, int]:
    """Minimise ``problem`` from ``theta (P,)``; returns the new ``theta`` and evaluations run."""
    total = 0
    per_round = max(iterations // rounds, 1)
    for _ in range(rounds):
        theta, count, stopped = _round(model, problem, theta, per_round, progress, total)
        total += count
        if stopped or count < per_round:
            break
    return theta, total


def _round(
    model: FitModel,
    problem: Problem,
    theta: np.ndarray,
    iterations: int,
    progress: Callable[[int, float], bool] | None,
    done: int,
) -> tuple[np.ndarray, int, bool]:
    """One whitened L-BFGS run: ``(theta, evaluations, stopped by the callback)``."""
    import torch

    flame = model.forward_model
    device, dtype = flame.device, torch.float64
    free = torch.as_tensor(problem.free, device=device)
    base = torch.as_tensor(theta, device=device, dtype=dtype)
    inverse_root = torch.as_tensor(_whitening(model, problem, theta), device=device, dtype=dtype)
    variables = torch.zeros(int(problem.free.sum()), device=device, dtype=dtype, requires_grad=True)
    prior = torch.as_tensor(problem.prior_mask, device=device, dtype=dtype)
    terms = []
    for term in problem.terms:
        weights = np.ones(len(term.targets)) if term.row_weights is None else term.row_weights
        terms.append((
            torch.as_tensor(term.vertex_ids, device=device),
            torch.as_tensor(term.barycentric, device=device, dtype=dtype),
            torch.as_tensor(term.targets, device=device, dtype=dtype),
            None if term.normals is None else torch.as_tensor(term.normals, device=device, dtype=dtype),
            torch.as_tensor(weights * term.weight / max(len(weights), 1) / MILLIMETRE**2, device=device, dtype=dtype),
        ))

    def full() -> torch.Tensor:
        out = base.clone()
        out[free] = base[free] + inverse_root @ variables
        return out

    def cost() -> torch.Tensor:
        values = full()
        vertices = torch.exp(values[-1]) * flame(**split_parameters(values[:-1], model.n_shape, model.n_expression))
        total = (prior * values * values).sum()
        for ids, barycentric, targets, normals, weights in terms:
            points = (vertices[ids] * barycentric[..., None]).sum(-2)
            r = points - targets
            squared = (r * r).sum(-1) if normals is None else (r * normals).sum(-1) ** 2
            total = total + (weights * squared).sum()
        return total

    optimizer = torch.optim.LBFGS(
        [variables], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-10, tolerance_change=1e-10,
    )
    count = [0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = cost()
        value.backward()
        count[0] += 1
        if progress is not None and progress(done + count[0], float(value.detach())) is False:
            raise _Stop
        return value

    stopped = False
    try:
        optimizer.step(closure)
    except _Stop:
        stopped = True
    with torch.no_grad():
        return full().cpu().numpy(), count[0], stopped


class _Stop(Exception):
    """The callback asked to stop."""
