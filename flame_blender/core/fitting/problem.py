"""What a fit minimises, shared by both solvers.

The parameters are one vector ``theta``: identity, expression, the four poses (15 values:
global, neck, jaw, eyes), ``transl`` (3), and ``log`` of a relative scale (1). The model's
points in the target's frame are ``exp(theta[-1]) * FLAME(theta[:-1])`` in metres; the target
was divided by the unit scale first, so a residual of 0.001 is one millimetre of head.

The cost is a sum of data terms and priors::

    sum_t  weight_t / N_t * sum_i  row_weight_i * |r_i|^2 / (1 mm)^2
    + shape_prior |shape|^2 + expression_prior |expression|^2 + pose_prior |neck, jaw, eyes|^2

with ``r_i = point_i - target_i`` (or its component along ``normals_i``: point to plane). A
point is a barycentric combination of model vertices. Row weights carry the robust
(iteratively reweighted) kernel; both solvers see them as constants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import FlameParameterError

MILLIMETRE = 1e-3
FIT_GROUPS = ("shape", "expression", "pose")
#: Default weights of every term and prior a fit may use (names are FitResult.residuals keys).
DEFAULT_WEIGHTS = {
    "vertices": 1.0,
    "landmarks": 1.0,
    "scan_to_model": 1.0,
    "model_to_scan": 0.5,
    "shape_prior": 1e-4,
    "expression_prior": 1e-4,
    "pose_prior": 1e-3,
}


@dataclass
class Term:
    """One data term: points on the model ``(N, k)`` vertex ids and barycentric weights,
    targets ``(N, 3)`` in model metres, optional normals ``(N, 3)`` (point to plane)."""

    name: str
    vertex_ids: np.ndarray
    barycentric: np.ndarray
    targets: np.ndarray
    weight: float
    normals: np.ndarray | None = None
    row_weights: np.ndarray | None = None

    def points(self, vertices: np.ndarray) -> np.ndarray:
        """The term's model points ``(N, 3)`` on ``vertices (V, 3)``."""
        return np.einsum("nkc,nk->nc", vertices[self.vertex_ids], self.barycentric)

    def residuals(self, vertices: np.ndarray) -> np.ndarray:
        """``(N, 3)`` or ``(N,)`` (point to plane) in metres."""
        r = self.points(vertices) - self.targets
        return r if self.normals is None else np.einsum("nc,nc->n", r, self.normals)


@dataclass
class Problem:
    """Terms, priors and which entries of ``theta`` move (``free``, bool ``(P,)``)."""

    n_shape: int
    n_expression: int
    terms: list[Term]
    free: np.ndarray
    shape_prior: float = 1e-4
    expression_prior: float = 1e-4
    pose_prior: float = 1e-3
    prior_mask: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.prior_mask is None:
            k = self.n_shape + self.n_expression
            weights = np.zeros(self.free.shape[0])
            weights[: self.n_shape] = self.shape_prior
            weights[self.n_shape : k] = self.expression_prior
            weights[k + 3 : k + 15] = self.pose_prior  # neck, jaw, eyes; not the global rotation
            self.prior_mask = weights

    @property
    def coefficient_count(self) -> int:
        return self.n_shape + self.n_expression

    def cost(self, theta: np.ndarray, vertices: np.ndarray) -> float:
        """The cost of ``theta`` whose posed, scaled model vertices are ``vertices (V, 3)``."""
        total = float(np.sum(self.prior_mask * theta * theta))
        for term in self.terms:
            r = term.residuals(vertices)
            squared = (r * r).sum(-1) if r.ndim == 2 else r * r
            if term.row_weights is not None:
                squared = squared * term.row_weights
            total += term.weight / max(len(r), 1) * float(squared.sum()) / MILLIMETRE**2
        return total


def free_mask(n_shape: int, n_expression: int, fit: Iterable[str], fit_scale: bool, eyes: bool = True) -> np.ndarray:
    """Which entries of ``theta`` a fit moves: the global rotation and transl always, the
    groups named in ``fit`` ("shape", "expression", "pose" = neck, jaw and eyes), the scale."""
    groups = set(fit)
    unknown = groups - set(FIT_GROUPS)
    if unknown:
        raise FlameParameterError(f"fit: unknown groups {sorted(unknown)}; expected some of {FIT_GROUPS}")
    k = n_shape + n_expression
    free = np.zeros(k + 19, dtype=bool)
    free[:n_shape] = "shape" in groups
    free[n_shape:k] = "expression" in groups
    free[k : k + 3] = True
    free[k + 3 : k + 9] = "pose" in groups
    free[k + 9 : k + 15] = "pose" in groups and eyes
    free[k + 15 : k + 18] = True
    free[k + 18] = fit_scale
    return free


def term_weights(weights: dict[str, float] | None, **defaults: float) -> dict[str, float]:
    """:data:`DEFAULT_WEIGHTS`, then a fit's own ``defaults``, then the caller's ``weights``
    (unknown names are an error)."""
    merged = dict(DEFAULT_WEIGHTS, **defaults)
    for name, value in (weights or {}).items():
        if name not in merged:
            raise FlameParameterError(f"weights: unknown term {name!r}; expected some of {sorted(merged)}")
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise FlameParameterError(f"weights[{name!r}] = {value}: expected a finite number >= 0")
        merged[name] = value
    return merged
