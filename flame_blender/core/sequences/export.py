"""Write sequences: VHAP's layout (which GaussianAvatars reads too), this project's
``.jsonl``/``.npz``, and per-frame vertices for evaluation scripts. Files are written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import FlameFileError
from ..io.atomic import atomic_write_text, atomic_write_with
from ..model.parameters import PARAMETER_NAMES
from .sequence import FlameSequence

SAVE_FORMATS = ("VHAP", "JSONL", "NPZ")


def _vhap_arrays(sequence: FlameSequence) -> dict[str, np.ndarray]:
    if not sequence.fixed_shape:
        raise FlameFileError(sequence.source, "VHAP files hold one identity; this sequence's shape changes per frame")
    arrays = {
        "rotation": sequence.global_pose, "translation": sequence.transl,
        "neck_pose": sequence.neck_pose, "jaw_pose": sequence.jaw_pose, "eyes_pose": sequence.eye_pose,
        "shape": sequence.shape[0], "expr": sequence.expression,
        # VHAP saves np.array(dataset.timestep_ids): strings
        "timestep_id": np.array([f"{int(i):05d}" for i in sequence.frame_ids]),
    }
    arrays = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    if sequence.static_offset is not None:
        arrays["static_offset"] = np.asarray(sequence.static_offset, dtype=np.float32)[None]
    if sequence.dynamic_offset is not None:
        arrays["dynamic_offset"] = np.asarray(sequence.dynamic_offset, dtype=np.float32)
    return arrays


def save_sequence(sequence: FlameSequence, path: str | Path, format: str = "JSONL") -> Path:
    """Write ``sequence`` to ``path``.

    ``format``: "VHAP" (``tracked_flame_params.npz`` layout, float32 like VHAP's tensors),
    "JSONL" (one parameter object a line with ``frame_id`` and ``fps``; exact: floats are
    written with all their digits) or "NPZ" (this project's npz, float64).
    """
    path = Path(path)
    format = format.upper()
    if format == "VHAP":
        arrays = _vhap_arrays(sequence)
        return atomic_write_with(path, lambda temp: _savez(temp, arrays))
    if format == "NPZ":
        arrays = {name: getattr(sequence, name) for name in PARAMETER_NAMES}
        arrays["frame_ids"] = sequence.frame_ids
        if sequence.fps:
            arrays["fps"] = np.float64(sequence.fps)
        if sequence.extra_params is not None:
            arrays["extra_params"] = sequence.extra_params
            arrays["extra_names"] = np.array(sequence.extra_names, dtype=str)
        return atomic_write_with(path, lambda temp: _savez(temp, arrays))
    if format == "JSONL":
        lines = []
        for index in range(len(sequence)):
            record = {name: getattr(sequence, name)[index].tolist() for name in PARAMETER_NAMES}
            record["frame_id"] = int(sequence.frame_ids[index])
            if sequence.fps:
                record["fps"] = float(sequence.fps)
            if sequence.extra_params is not None:
                record["extra_params"] = sequence.extra_params[index].tolist()
                record["extra_names"] = list(sequence.extra_names)
            lines.append(json.dumps(record))
        return atomic_write_text(path, "\n".join(lines) + "\n")
    raise FlameFileError(path, f"unknown sequence format {format!r}; expected one of {SAVE_FORMATS}")


def _savez(temp: Path, arrays: dict) -> None:
    with open(temp, "wb") as stream:
        np.savez(stream, **arrays)


def save_vertices(path: str | Path, vertices: np.ndarray, frame_ids: np.ndarray,
                  landmarks: dict[str, np.ndarray] | None = None, fps: float | None = None) -> Path:
    """Per-frame vertices ``(F, V, 3)`` float32 (metres, FLAME axes), ``frame_ids (F,)`` and
    landmarks ``{name: (F, L, 3)}`` (keys ``landmarks_<name>``) as one ``.npz``."""
    arrays = {"vertices": np.ascontiguousarray(vertices, dtype=np.float32),
              "frame_ids": np.asarray(frame_ids, dtype=np.int64)}
    for name, points in (landmarks or {}).items():
        arrays[f"landmarks_{name}"] = np.asarray(points, dtype=np.float32)
    if fps:
        arrays["fps"] = np.float64(fps)
    return atomic_write_with(Path(path), lambda temp: _savez(temp, arrays))
