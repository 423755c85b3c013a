"""The single-head evaluator of :mod:`.backend` with PyTorch for the per-vertex work (CPU or
CUDA); :func:`.backend.create_backend` makes it for the torch kinds."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import FlameBackend


class TorchBackend(FlameBackend):
    """The same with PyTorch for the per-vertex work (CPU or CUDA), in ``inference_mode``."""

    def __init__(
        self,
        model: Any,
        n_shape: int | None = None,
        n_expression: int | None = None,
        extra_stage: str = "posed",
        device: str = "cpu",
    ) -> None:
        self.device = device
        self.name = "PyTorch CUDA" if device == "cuda" else "PyTorch CPU"
        super().__init__(model, n_shape, n_expression, extra_stage)

    def _setup_heavy(self, arrays: Any) -> None:
        import torch

        self._torch = torch
        n = self.n_vertices

        def tensor(array: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

        self._pose_t = tensor(arrays.pose_directions)
        self._weights_t = tensor(arrays.weights_transposed)
        # on the CPU the tensor shares the numpy array's memory (no second 24 MB copy)
        self._blend_t = torch.from_numpy(self._blend32) if self.device == "cpu" else tensor(self._blend32)
        self._template_t = tensor(arrays.v_template_planar)
        with torch.inference_mode():
            self._posed_t = torch.empty(3 * n, device=self.device)
            self._blended_t = torch.empty(12, n, device=self.device)
            self._product_t = torch.empty(3, 3, n, device=self.device)
            self._sum_t = torch.empty(3, n, device=self.device)

    def _full_blend(self, coefficients: np.ndarray) -> np.ndarray:
        if self.device == "cpu":
            # memory-bound matrix-vector product: numpy's BLAS streams it faster than MKL on AMD
            return super()._full_blend(coefficients)
        torch = self._torch
        with torch.inference_mode():
            c = torch.from_numpy(coefficients.astype(np.float32)).to(self.device)
            planar = torch.addmm(self._template_t, c[None], self._blend_t)[0]
            return planar.cpu().numpy().astype(np.float64)

    def _remember(self, shaped: np.ndarray, joints: np.ndarray, planar64: np.ndarray) -> None:
        self._last_shaped = shaped
        self._last_joints = joints
        self._last_planar = self._torch.from_numpy(planar64.astype(np.float32)).to(self.device)

    def _to_planar(self, v: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(v.T, dtype=np.float32).reshape(-1)).to(self.device)

    def _skin(self, planar: Any, feature: np.ndarray, per_joint: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
        torch = self._torch
        n = self.n_vertices
        with torch.inference_mode():
            f = torch.from_numpy(feature.astype(np.float32)).to(self.device)
            rows = torch.from_numpy(np.ascontiguousarray(per_joint, dtype=np.float32)).to(self.device)
            v_posed = torch.addmm(planar[None], f[None], self._pose_t, out=self._posed_t[None]).view(3, n)
            blended = torch.mm(rows, self._weights_t, out=self._blended_t).view(3, 4, n)
            product = torch.mul(blended[:, :3], v_posed.unsqueeze(0), out=self._product_t)
            target = torch.sum(product, dim=1, out=self._sum_t)
            target += blended[:, 3]
            if offset is not None:
                target += torch.from_numpy(offset.astype(np.float32)).to(self.device)[:, None]
            if self.device == "cpu":
                out = np.empty((n, 3), dtype=np.float32)
                # the last addition writes the planar result straight into the (V, 3) array
                torch.add(target, v_posed, out=torch.from_numpy(out).T)
            else:
                out = (target + v_posed).T.contiguous().cpu().numpy()
        return out
