"""Axis-angle rotations for torch tensors: the one formula of :mod:`.rotation`, which takes both.

Kept so that ``from flame_blender.core.rotation_torch import axis_angle_to_matrix`` still works.
"""

from __future__ import annotations

from .rotation import axis_angle_to_matrix

__all__ = ["axis_angle_to_matrix"]
