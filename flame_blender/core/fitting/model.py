"""The model side of a fit: the forward pass of the chosen backend, plus the arrays fitting needs.

:class:`FitModel` wraps the public forward pass (:class:`~..flame_torch.FLAME` or
:class:`~..flame_numpy.FlameNumpy`) and keeps, from :func:`~..model_io.load_flame`, the few raw
arrays the numpy solver needs for its exact linear part (see :mod:`.linear`). Build one once
and pass it to many fits; every ``fit_*`` function also accepts a FLAME folder or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError, FlameParameterError

BACKENDS = ("auto", "torch", "numpy")
#: Joints of FLAME's kinematic tree, in the order of the pose arguments.
POSE_SLICES: dict[str, slice] = {
    "global_pose": slice(0, 3),
    "neck_pose": slice(3, 6),
    "jaw_pose": slice(6, 9),
    "eye_pose": slice(9, 15),
}


class FitModel:
    """FLAME ready for fitting.

    Args:
        flame: a FLAME folder or model file, or None for the built-in synthetic model.
        n_shape, n_expression: components to fit (None = all the file holds).
        backend: "torch" (autograd, CPU or CUDA), "numpy" (Gauss-Newton, runs in a stock
            Blender), or "auto" (torch when importable).
        device: torch device ("cpu", "cuda"); ignored by the numpy backend.

    Attributes:
        faces: ``(F, 3)`` int64 triangles.
        masks: FLAME_masks region name -> vertex indices (empty when the folder has none).
        landmarks: the forward pass's :class:`~..landmarks.LandmarkSet`.
    """

    def __init__(
        self,
        flame: str | Path | None = None,
        n_shape: int | None = None,
        n_expression: int | None = None,
        backend: str = "auto",
        device: str = "cpu",
    ) -> None:
        from .. import builtin_flame_dir, load_flame, load_flame_masks

        if backend not in BACKENDS:
            raise FlameParameterError(f"backend {backend!r}: expected one of {BACKENDS}")
        if backend == "auto":
            backend = "torch" if _torch_available() else "numpy"
        if backend == "torch" and not _torch_available():
            raise FlameParameterError("backend 'torch' needs PyTorch, which is not importable here; use 'numpy'")
        self.backend = backend
        self.device = device if backend == "torch" else "cpu"
        path = Path(builtin_flame_dir() if flame is None else flame).expanduser()
        self.source = path
        raw = load_flame(path)
        folder = path if path.is_dir() else path.parent
        try:
            self.masks = load_flame_masks(folder)
        except FlameFileError:
            self.masks = {}
        if backend == "torch":
            import torch

            from .. import FLAME

            self.forward_model: Any = FLAME(
                raw, n_shape=n_shape, n_expression=n_expression, dtype=torch.float64, device=device,
                landmarks=_landmarks_beside(folder),
            )
        else:
            from .. import FlameNumpy

            self.forward_model = FlameNumpy(
                raw, n_shape=n_shape, n_expression=n_expression, landmarks=_landmarks_beside(folder)
            )
        self.n_shape = int(self.forward_model.n_shape)
        self.n_expression = int(self.forward_model.n_expression)
        self.landmarks = self.forward_model.landmarks
        self.faces = np.asarray(raw["f"], dtype=np.int64)
        self.v_template = np.asarray(raw["v_template"], dtype=np.float64)
        self.n_vertices = self.v_template.shape[0]
        self._raw = raw
        self._linear: Any = None

    @property
    def n_coefficients(self) -> int:
        return self.n_shape + self.n_expression

    def linear_arrays(self) -> Any:
        """The arrays of :mod:`.linear` (built on first use)."""
        if self._linear is None:
            from .linear import LinearArrays

            self._linear = LinearArrays.from_model(self._raw, self.n_shape, self.n_expression)
        return self._linear

    def vertices(self, theta: np.ndarray) -> np.ndarray:
        """Posed vertices ``(V, 3)`` (or ``(B, V, 3)`` for ``theta (B, P)``) in metres, numpy."""
        kwargs = split_parameters(theta, self.n_shape, self.n_expression)
        if self.backend == "torch":
            import torch

            with torch.no_grad():
                return self.forward_model(**kwargs).cpu().numpy()
        return self.forward_model(**kwargs)


def split_parameters(theta: Any, n_shape: int, n_expression: int) -> dict[str, Any]:
    """Forward-pass keyword arguments from a parameter vector ``(..., n_shape + n_expression + 18)``:
    shape, expression, the four poses (15) and transl (3)."""
    k = n_shape + n_expression
    out = {
        "shape_params": theta[..., :n_shape],
        "expression_params": theta[..., n_shape:k],
        "transl": theta[..., k + 15 : k + 18],
    }
    for name, columns in POSE_SLICES.items():
        out[name] = theta[..., k + columns.start : k + columns.stop]
    return out


def parameter_count(n_shape: int, n_expression: int) -> int:
    return n_shape + n_expression + 18


def _torch_available() -> bool:
    """Whether PyTorch is importable (stock Blender: no)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _landmarks_beside(folder: Path) -> Mapping[str, Any]:
    from .. import load_landmark_embeddings

    try:
        return dict(load_landmark_embeddings(folder))
    except FlameFileError:
        return {}


def resolve_model(
    model: FitModel | str | Path | None, backend: str = "auto", device: str = "cpu",
    n_shape: int | None = None, n_expression: int | None = None,
) -> FitModel:
    """``model`` itself when it is a :class:`FitModel` (whose backend then wins), else a new one."""
    if isinstance(model, FitModel):
        if backend not in ("auto", model.backend):
            raise FlameParameterError(
                f"backend {backend!r} was asked for, but the FitModel was built for {model.backend!r}"
            )
        return model
    return FitModel(model, n_shape=n_shape, n_expression=n_expression, backend=backend, device=device)
