"""Fit FLAME to what the user has: a registered mesh, landmark points, a scan. No bpy.

Example::

    from flame_blender.core.fitting import FitModel, fit_registered
    model = FitModel("~/FLAME2020", backend="numpy")      # or "torch"; None = synthetic head
    result = fit_registered(model, vertices_in_mm)        # (5023, 3)
    result.parameters, result.residuals, result.units     # FlameParameters, {"vertices": ...}, "mm"

See ``docs/fitting.md`` for the terms, units and backends.
"""

from __future__ import annotations

from .landmark_fit import fit_landmarks
from .model import FitModel
from .registered import fit_registered
from .result import FitProgress, FitResult, detect_units
from .scan import fit_scan

__all__ = ["FitModel", "FitProgress", "FitResult", "detect_units", "fit_landmarks", "fit_registered", "fit_scan"]
