"""Extra blend shapes stored beside a FLAME model, each driven by one more coefficient.

metrical-tracker ships two: ``l_eyelid.npy`` and ``r_eyelid.npy`` (``flame/blendshapes/``), each
a float ``(5023, 3)`` array of vertex displacements for closing one eyelid. Its ``FLAME.forward``
adds them **after** skinning and before the translation, weighted by ``eyelid_params[:, 0]``
(left) and ``eyelid_params[:, 1]`` (right). Other tools add such shapes to the template before
skinning; :class:`~.flame_torch.FLAME` offers both (``extra_stage``).

Only the known names are picked up (an unknown ``.npy`` beside a model, such as
``flame_dynamic_embedding.npy``, is something else), in :data:`KNOWN_EXTRA_BLENDSHAPES` order,
from the model's folder or its ``blendshapes/`` subfolder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FlameFileError
from .numpy_files import load_npy

#: Names (file stems) of the extra blend shapes looked for, in coefficient order.
KNOWN_EXTRA_BLENDSHAPES = ("l_eyelid", "r_eyelid")


def find_extra_blendshapes(folder: str | Path | None, n_vertices: int = 5023) -> dict[str, np.ndarray]:
    """Every known extra blend shape in ``folder`` or ``folder/blendshapes``: name -> ``(V, 3)`` float64.

    Raises:
        FlameFileError: a file that is there but is not a finite float ``(n_vertices, 3)`` array.
    """
    if folder is None:
        return {}
    folder = Path(folder)
    found: dict[str, np.ndarray] = {}
    for name in KNOWN_EXTRA_BLENDSHAPES:
        for candidate in (folder / f"{name}.npy", folder / "blendshapes" / f"{name}.npy"):
            if candidate.is_file():
                found[name] = load_extra_blendshape(candidate, n_vertices)
                break
    return found


def load_extra_blendshape(path: str | Path, n_vertices: int = 5023) -> np.ndarray:
    """One blend shape file: a float ``(n_vertices, 3)`` ``.npy`` array, returned as float64."""
    value = load_npy(path)
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        kind = getattr(value, "dtype", type(value).__name__)
        raise FlameFileError(path, f"holds {kind}; expected a float ({n_vertices}, 3) array of vertex displacements")
    if value.shape != (n_vertices, 3):
        raise FlameFileError(path, f"has shape {value.shape}; expected ({n_vertices}, 3), one displacement per vertex")
    array = value.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise FlameFileError(path, "holds NaN or inf values; expected finite displacements")
    return array
