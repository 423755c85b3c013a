"""Axis-angle rotations in PyTorch: batched, exact at zero, differentiable everywhere, fine up to pi.

The same formula as :mod:`.rotation` (see there). At a zero vector ``theta = sqrt(tiny)``, so
``d theta / d r = r / theta`` is exactly zero rather than ``0 / 0``: gradients are finite.
"""

from __future__ import annotations

import torch

from .rotation import SKEW

_constants: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _skew_and_eye(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (dtype, device)
    found = _constants.get(key)
    if found is None:
        found = (
            torch.as_tensor(SKEW, dtype=dtype, device=device),
            torch.eye(3, dtype=dtype, device=device),
        )
        _constants[key] = found
    return found


def axis_angle_to_matrix(rotation_vectors: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` from axis-angle vectors ``(..., 3)`` (radians).

    ``R = I + sinc(theta) K + ((1 - cos theta) / theta^2) K^2`` with ``K = [r]_x`` and
    ``K^2 = r r^T - theta^2 I``; a zero vector gives the identity exactly.
    """
    r = rotation_vectors
    skew, eye = _skew_and_eye(r.dtype, r.device)
    t2 = (r * r).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    theta = torch.sqrt(t2 + torch.finfo(r.dtype).tiny)
    half = torch.sin(theta * 0.5) / theta
    versine = 2.0 * half * half
    k = (r @ skew).unflatten(-1, (3, 3))
    return versine * (r.unsqueeze(-1) * r.unsqueeze(-2)) + (torch.sin(theta) / theta) * k + (1.0 - versine * t2) * eye
