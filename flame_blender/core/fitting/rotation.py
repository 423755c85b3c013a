"""The project's axis-angle helpers, under the one name fitting imports them by."""

from __future__ import annotations

from ..model.rotation import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["axis_angle_to_matrix", "matrix_to_axis_angle"]
