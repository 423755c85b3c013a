"""What a fit returns, the progress it reports, units, and the checks of its input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import FlameParameters
from ..errors import FlameParameterError

#: Target units per metre.
UNIT_SCALES: dict[str, float] = {"m": 1.0, "cm": 100.0, "mm": 1000.0}
#: A target whose size is further than this factor from a head in every unit is refused.
UNIT_TOLERANCE = 4.0


@dataclass
class FitProgress:
    """Passed to a fit's ``callback``: the stage ("rigid", "fit", "refine"...), the iteration
    within it, and the current cost. Return False from the callback to stop."""

    stage: str
    iteration: int
    cost: float


Callback = Callable[[FitProgress], "bool | None"]


@dataclass
class FitResult:
    """The outcome of a fit.

    Attributes:
        parameters: the fitted :class:`~..parameters.FlameParameters` (``transl`` in metres).
        vertices: ``(5023, 3)`` the fitted head in the target's own frame and units
            (``scale * FLAME(parameters)``).
        residuals: term name -> root-mean-square distance of that term, in the target's units.
        scale: target units per FLAME metre (1000 for millimetres, times any fitted scale).
        units: "m", "cm", "mm", or "custom" when a number was given.
        iterations: solver iterations, all stages together.
        seconds: wall time of the whole fit.
        backend: "torch" or "numpy".
        stopped: True when the callback stopped the fit early.
    """

    parameters: FlameParameters
    vertices: np.ndarray
    residuals: dict[str, float]
    scale: float
    units: str
    iterations: int
    seconds: float
    backend: str
    stopped: bool = False
    details: dict[str, np.ndarray] = field(default_factory=dict)

    def residual_mm(self, term: str) -> float:
        """A term's residual in millimetres of the fitted head."""
        return self.residuals[term] / self.scale * 1000.0


def check_points(name: str, value: object, count: int | None = None, minimum: int = 3) -> np.ndarray:
    """``value`` as float64 ``(N, 3)``: finite, ``N`` = ``count`` if given (else >= minimum),
    and spread in at least two directions; otherwise a :class:`FlameParameterError` saying so."""
    try:
        points = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FlameParameterError(f"{name}: expected an (N, 3) array of numbers") from None
    if points.ndim != 2 or points.shape[1] != 3:
        raise FlameParameterError(f"{name}: expected shape (N, 3), got {points.shape}")
    if count is not None and points.shape[0] != count:
        raise FlameParameterError(f"{name}: expected {count} points, got {points.shape[0]}")
    if points.shape[0] < minimum:
        raise FlameParameterError(f"{name}: expected at least {minimum} points, got {points.shape[0]}")
    if not np.all(np.isfinite(points)):
        bad = int(np.sum(~np.isfinite(points).all(axis=1)))
        raise FlameParameterError(f"{name}: {bad} points hold NaN or inf")
    centred = points - points.mean(axis=0)
    singular = np.linalg.svd(centred[:: max(1, len(points) // 20000)], compute_uv=False)
    if singular[0] <= 0 or singular[1] <= 1e-9 * singular[0]:
        raise FlameParameterError(f"{name}: degenerate target (all points on one point or line)")
    return points


def extent(points: np.ndarray) -> float:
    """Bounding-box diagonal of ``(N, 3)`` points, ignoring the outer 0.5 % on each side."""
    low, high = np.percentile(points, [0.5, 99.5], axis=0)
    return float(np.linalg.norm(high - low))


def detect_units(target_extent: float, model_extent: float, units: str | float = "auto") -> tuple[str, float]:
    """The units of a target whose extent matches a model extent (metres) of the same points.

    ``units``: "auto", "m", "cm", "mm", or a number (target units per metre). Returns
    ``(name, scale)``; "auto" refuses a target no unit makes head-sized.
    """
    if not isinstance(units, str):
        scale = float(units)
        if not np.isfinite(scale) or scale <= 0:
            raise FlameParameterError(f"units = {units!r}: expected a positive number of target units per metre")
        return "custom", scale
    if units in UNIT_SCALES:
        return units, UNIT_SCALES[units]
    if units != "auto":
        raise FlameParameterError(f"units = {units!r}: expected 'auto', {sorted(UNIT_SCALES)} or a number")
    ratio = target_extent / model_extent
    name = min(UNIT_SCALES, key=lambda unit: abs(np.log(ratio / UNIT_SCALES[unit])))
    if abs(np.log(ratio / UNIT_SCALES[name])) > np.log(UNIT_TOLERANCE):
        raise FlameParameterError(
            f"target extent {target_extent:.4g} is no head size in m, cm or mm (a FLAME head here "
            f"spans {model_extent:.3g} m); pass units= to say which units it is in"
        )
    return name, UNIT_SCALES[name]
