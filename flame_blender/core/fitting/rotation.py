"""The project's axis-angle helpers, wherever core keeps them (one import site for fitting)."""

from __future__ import annotations

try:  # core grouped by topic (core/model/rotation.py)
    from ..model.rotation import axis_angle_to_matrix, matrix_to_axis_angle
except ImportError:  # flat core (core/rotation.py)
    from ..rotation import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["axis_angle_to_matrix", "matrix_to_axis_angle"]
