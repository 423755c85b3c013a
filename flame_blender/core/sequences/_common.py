"""Small helpers shared by the format readers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from .conventions import to_axis_angle

#: OpenGL/Blender camera axes (y up, looking down -z) <-> OpenCV camera axes (y down, +z).
FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def get(arrays: dict[str, Any], path: Path, key: str, required: bool = True) -> np.ndarray | None:
    """A numeric array from ``arrays``; a clear error names the file and the key when it is
    missing (``required``) or not numeric."""
    if key not in arrays:
        if required:
            raise FlameFileError(path, f"has no key {key!r}; found {sorted(arrays)[:20]}")
        return None
    value = np.asarray(arrays[key])
    if value.dtype.kind not in "biuf":
        raise FlameFileError(path, f"key {key!r} has dtype {value.dtype}; expected numbers")
    return value


def per_frame(value: np.ndarray, path: Path, key: str, width: int | None = None) -> np.ndarray:
    """``(F, width)`` from a writer's ``(F, w)``, ``(F, 1, w)`` or unbatched ``(w,)`` array."""
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 1:
        value = value[None]
    elif value.ndim == 3 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim != 2 or (width is not None and value.shape[1] != width):
        raise FlameFileError(
            path, f"key {key!r} has shape {value.shape}; expected (frames, {width or 'n'})"
        )
    return value


def identity(value: np.ndarray, path: Path, key: str) -> np.ndarray:
    """A fixed identity ``(n,)`` from ``(n,)`` or ``(1, n)``; a per-frame ``(F, n)`` stays 2-D."""
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 2 and value.shape[0] == 1:
        return value[0]
    if value.ndim in (1, 2):
        return value
    raise FlameFileError(path, f"key {key!r} has shape {value.shape}; expected (n,) or (frames, n)")


def rotation_frames(value: np.ndarray, path: Path, key: str, joints: int, convention: str,
                    order: str = "XYZ", degrees: bool = False) -> np.ndarray:
    """``(F, 3 * joints)`` axis-angle from per-frame rotations in ``convention``."""
    per = {"axis_angle": 3, "euler": 3, "6d": 6, "matrix": 9}[convention]
    value = np.asarray(value, dtype=np.float64)
    frames = value.shape[0] if value.ndim > 1 else 1
    if value.size != frames * joints * per:
        raise FlameFileError(
            path, f"key {key!r} has shape {value.shape}; expected {joints} rotation(s) of {per} "
            f"values a frame ({convention})"
        )
    shaped = value.reshape(frames, joints, 3, 3) if per == 9 else value.reshape(frames, joints, per)
    try:
        return to_axis_angle(shaped, convention, order, degrees).reshape(frames, 3 * joints)
    except ValueError as error:
        raise FlameFileError(path, f"key {key!r}: {error}") from None


def frame_number(text: str) -> int | None:
    """The last run of digits in a name (``"00042.frame"`` -> 42, ``"frame_7"`` -> 7)."""
    digits = re.findall(r"\d+", text)
    return int(digits[-1]) if digits else None


def frame_ids_from(values: Any, count: int) -> np.ndarray:
    """Integer frame ids from numbers or strings like ``"frame_00010"``; positions when they
    cannot all be read."""
    array = np.asarray(values).reshape(-1)
    if array.shape[0] == count:
        if array.dtype.kind in "iu":
            return array.astype(np.int64)
        if array.dtype.kind == "f" and np.all(array == np.round(array)):
            return array.astype(np.int64)
        for pick in (-1, 0):  # the last run of digits, else the first ("000010_000" -> 10)
            numbers = [re.findall(r"\d+", str(item)) for item in array]
            numbers = [int(n[pick]) if n else None for n in numbers]
            if all(n is not None for n in numbers) and len(set(numbers)) == count:
                return np.array(numbers, dtype=np.int64)
    return np.arange(count, dtype=np.int64)


def numbered_files(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    """``(frame number, path)`` of the files matching ``pattern``, in frame order."""
    found = []
    for index, path in enumerate(sorted(folder.glob(pattern))):
        number = frame_number(path.stem)
        found.append((index if number is None else number, path))
    return sorted(found)


def intrinsic(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
