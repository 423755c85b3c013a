"""FLAME parameter sets: one head's identity, expression and pose, and files of them.

A parameter set is what the panel's Load/Save buttons and the batch renderer's ``--params`` read
and write. On disk it is a ``.json`` object or an ``.npz`` archive with the keys ``shape``,
``expression``, ``global_pose``, ``neck_pose``, ``jaw_pose``, ``eye_pose`` and ``transl``;
a sequence is a ``.jsonl`` file (one such object a line) or an ``.npz`` whose arrays carry a
leading sample axis. Missing keys mean zeros; poses are axis-angle in radians, ``eye_pose`` is
left eye then right eye, ``transl`` is in metres.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError, FlameParameterError
from ..io.json_lines import read_json_lines
from ..io.numpy_files import load_npz
from ..io.reader_guard import file_reader

#: Most parameter sets one file may hold (5.5 minutes at 30 fps; the batch renderer makes one
#: picture per set). Each set costs ~80 us and ~2 KB however few bytes the file spends on it
#: (``{}`` in JSON, a zero-width row in an ``.npz``), so this bounds a hostile file's cost.
MAX_PARAMETER_SAMPLES = 10_000
#: Largest ``.json`` / ``.jsonl`` parameter file read (10,000 sets of 400 numbers in full
#: precision are ~100 MB of text).
MAX_JSON_BYTES = 256 << 20

#: Parameter name -> fixed length, for the pose-like parameters.
POSE_SIZES: dict[str, int] = {
    "global_pose": 3,
    "neck_pose": 3,
    "jaw_pose": 3,
    "eye_pose": 6,
    "transl": 3,
}
#: Every key a parameter file may hold, in file order.
PARAMETER_NAMES: tuple[str, ...] = ("shape", "expression", *POSE_SIZES)

#: Default spread of :meth:`FlameParameters.random` poses, radians (one standard deviation,
#: clipped at three): about the axes x (pitch), y (yaw), z (roll) of each joint.
RANDOM_POSE_SIGMA: dict[str, tuple[float, ...]] = {
    "global_pose": (0.10, 0.25, 0.05),
    "neck_pose": (0.10, 0.15, 0.05),
    "jaw_pose": (0.12, 0.01, 0.01),
    "eye_pose": (0.10, 0.15, 0.0, 0.10, 0.15, 0.0),
}
RANDOM_GROUPS: tuple[str, ...] = ("shape", "expression", "pose")


@dataclass
class FlameParameters:
    """One head's FLAME parameters (float64 numpy arrays).

    Attributes:
        shape: identity coefficients, ``(n_shape,)``.
        expression: expression coefficients, ``(n_expression,)``.
        global_pose: root rotation, axis-angle radians, ``(3,)``.
        neck_pose: ``(3,)``.
        jaw_pose: ``(3,)``.
        eye_pose: left then right eye, ``(6,)``.
        transl: translation in metres, ``(3,)``.
    """

    shape: np.ndarray
    expression: np.ndarray
    global_pose: np.ndarray
    neck_pose: np.ndarray
    jaw_pose: np.ndarray
    eye_pose: np.ndarray
    transl: np.ndarray

    def __post_init__(self) -> None:
        for field in fields(self):
            value = _as_vector(getattr(self, field.name), field.name)
            expected = POSE_SIZES.get(field.name)
            if expected is not None and value.shape != (expected,):
                raise FlameParameterError(
                    f"{field.name}: expected {expected} values, got shape {value.shape}"
                )
            setattr(self, field.name, value)

    @property
    def n_shape(self) -> int:
        return int(self.shape.shape[0])

    @property
    def n_expression(self) -> int:
        return int(self.expression.shape[0])

    @classmethod
    def zeros(cls, n_shape: int = 300, n_expression: int = 100) -> FlameParameters:
        """The template head: every coefficient and pose zero."""
        return cls(
            shape=np.zeros(n_shape),
            expression=np.zeros(n_expression),
            **{name: np.zeros(size) for name, size in POSE_SIZES.items()},
        )

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        n_shape: int = 300,
        n_expression: int = 100,
        *,
        shape_sigma: float = 1.0,
        expression_sigma: float = 1.0,
        pose_scale: float = 1.0,
        groups: Iterable[str] = RANDOM_GROUPS,
    ) -> FlameParameters:
        """A random head: coefficients ~ N(0, sigma²), poses ~ N(0, (scale·RANDOM_POSE_SIGMA)²).

        Draws are clipped at three standard deviations. Groups not named in ``groups``
        ("shape", "expression", "pose") stay zero; the random stream is consumed the same way
        whatever the groups, so a seed gives the same shape with or without random poses.
        """
        groups = set(groups)
        unknown = groups - set(RANDOM_GROUPS)
        if unknown:
            raise FlameParameterError(
                f"unknown random groups {sorted(unknown)}; expected some of {RANDOM_GROUPS}"
            )

        def normal(size: int, sigma: float | np.ndarray, group: str) -> np.ndarray:
            draw = np.clip(rng.standard_normal(size), -3.0, 3.0) * sigma
            return draw if group in groups else np.zeros(size)

        params = cls.zeros(n_shape, n_expression)
        params.shape = normal(n_shape, shape_sigma, "shape")
        params.expression = normal(n_expression, expression_sigma, "expression")
        for name, sigma in RANDOM_POSE_SIGMA.items():
            setattr(params, name, normal(len(sigma), pose_scale * np.asarray(sigma), "pose"))
        return params

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists, ready for ``json.dumps``."""
        return {name: getattr(self, name).tolist() for name in PARAMETER_NAMES}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str | Path | None = None
    ) -> FlameParameters:
        """From a mapping with any of :data:`PARAMETER_NAMES`; missing ones are zeros.

        ``source`` names the file in error messages.
        """
        if not isinstance(data, Mapping):
            raise FlameFileError(
                source, f"expected an object with keys {list(PARAMETER_NAMES)}, got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(PARAMETER_NAMES))
        if unknown:
            raise FlameFileError(
                source, f"unknown parameter keys {unknown}; expected some of {list(PARAMETER_NAMES)}"
            )
        values: dict[str, np.ndarray] = {}
        for name in PARAMETER_NAMES:
            size = POSE_SIZES.get(name, 0)
            try:
                values[name] = _as_vector(data.get(name, np.zeros(size)), name)
            except FlameParameterError as error:
                raise FlameFileError(source, str(error)) from None
        try:
            return cls(**values)
        except FlameParameterError as error:
            raise FlameFileError(source, str(error)) from None

    def forward_kwargs(self) -> dict[str, np.ndarray]:
        """Keyword arguments for ``FLAME(...)`` / ``FlameNumpy(...)`` calls."""
        return {
            "shape_params": self.shape,
            "expression_params": self.expression,
            "global_pose": self.global_pose,
            "neck_pose": self.neck_pose,
            "jaw_pose": self.jaw_pose,
            "eye_pose": self.eye_pose,
            "transl": self.transl,
        }

    def resized(self, n_shape: int, n_expression: int) -> FlameParameters:
        """The same head with coefficients zero-padded or truncated to the given counts."""
        return FlameParameters(
            shape=_resize(self.shape, n_shape),
            expression=_resize(self.expression, n_expression),
            **{name: getattr(self, name).copy() for name in POSE_SIZES},
        )

    def allclose(self, other: FlameParameters, atol: float = 0.0) -> bool:
        return all(
            getattr(self, name).shape == getattr(other, name).shape
            and np.allclose(getattr(self, name), getattr(other, name), rtol=0.0, atol=atol)
            for name in PARAMETER_NAMES
        )


def save_parameters(params: FlameParameters, path: str | Path) -> Path:
    """Write one parameter set to ``.json`` or ``.npz`` (atomically: temp file, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npz"):
        raise FlameFileError(path, "unsupported parameter file type; expected .json or .npz")
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".json":
            temporary.write_text(json.dumps(params.to_dict(), indent=1) + "\n", encoding="utf-8")
        else:
            with open(temporary, "wb") as stream:
                np.savez(stream, **{name: getattr(params, name) for name in PARAMETER_NAMES})
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise FlameFileError(path, f"cannot write parameters: {error.strerror or error}") from None
    return path


@file_reader
def load_parameters(path: str | Path) -> FlameParameters:
    """Read one parameter set from ``.json`` or ``.npz``.

    Raises:
        FlameFileError: the file is missing, unreadable, not JSON or a strict ``.npz`` of
            numbers (see ``numpy_files.load_npz``), or holds unknown keys or bad values.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return FlameParameters.from_dict(_read_json(path), source=path)
    if suffix == ".npz":
        arrays = _read_npz(path)
        for name, value in arrays.items():
            if value.ndim > 1:
                raise FlameFileError(
                    path, f"key {name!r} has shape {value.shape}; expected a 1-D array "
                    "(use load_parameter_sequence for a sequence)"
                )
        return FlameParameters.from_dict(arrays, source=path)
    raise FlameFileError(path, "unsupported parameter file type; expected .json or .npz")


@file_reader
def load_parameter_sequence(path: str | Path) -> list[FlameParameters]:
    """Read many parameter sets: ``.jsonl`` (one JSON object a line) or ``.npz``.

    In an ``.npz`` every array has a leading sample axis (``shape`` ``(N, n_shape)``,
    ``jaw_pose`` ``(N, 3)``, ...) of the same length N. A ``.json`` file holding a list of
    objects is accepted too. At most :data:`MAX_PARAMETER_SAMPLES` sets.

    Raises:
        FlameFileError: as :func:`load_parameters`, or arrays that disagree on N, or too many
            sets.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        _check_json_size(path)
        lines = read_json_lines(path, "parameters")
        _check_sample_count(path, len(lines))
        return [
            FlameParameters.from_dict(record, source=f"{path}, line {line}")
            for line, record in lines
        ]
    if suffix == ".json":
        data = _read_json(path)
        records = data if isinstance(data, list) else [data]
        _check_sample_count(path, len(records))
        return [
            FlameParameters.from_dict(record, source=f"{path}, item {index}")
            for index, record in enumerate(records)
        ]
    if suffix == ".npz":
        arrays = _read_npz(path)
        lengths = {name: (value.shape[0] if value.ndim == 2 else None) for name, value in arrays.items()}
        bad = [name for name, length in lengths.items() if length is None]
        if bad:
            raise FlameFileError(
                path, f"keys {bad} are not 2-D; expected arrays of shape (samples, values)"
            )
        if len(set(lengths.values())) > 1:
            raise FlameFileError(
                path, f"keys disagree on the number of samples: {lengths}; expected one length"
            )
        count = next(iter(lengths.values()), 0)
        _check_sample_count(path, count)
        return [
            FlameParameters.from_dict({name: value[i] for name, value in arrays.items()}, source=path)
            for i in range(count)
        ]
    raise FlameFileError(path, "unsupported parameter file type; expected .jsonl, .json or .npz")


def _as_vector(value: Any, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FlameParameterError(f"{name}: expected a list of numbers, got {value!r:.60}") from None
    if np.ndim(value) > 1 and np.shape(value)[0] != 1:
        raise FlameParameterError(f"{name}: expected a 1-D list of numbers, got shape {np.shape(value)}")
    if not np.all(np.isfinite(array)):
        raise FlameParameterError(f"{name}: values must be finite, got NaN or inf")
    return array


def _resize(vector: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size)
    count = min(size, vector.shape[0])
    out[:count] = vector[:count]
    return out


def _check_sample_count(path: Path, count: int) -> None:
    if count > MAX_PARAMETER_SAMPLES:
        raise FlameFileError(
            path, f"holds {count} parameter sets; the limit is {MAX_PARAMETER_SAMPLES}"
        )


def _check_json_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise FlameFileError(path, f"cannot read parameters: {error.strerror or error}") from None
    if size > MAX_JSON_BYTES:
        raise FlameFileError(
            path, f"is {size} bytes; JSON parameter files are read up to {MAX_JSON_BYTES}"
        )


def _read_json(path: Path) -> Any:
    _check_json_size(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FlameFileError(path, f"cannot read parameters: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise FlameFileError(path, f"not UTF-8 text ({error.reason} at byte {error.start}); expected JSON") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # also 10**5-digit numbers, deep nesting
        raise FlameFileError(path, f"not valid JSON ({type(error).__name__}: {error!s:.200})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a parameter ``.npz``, read by the strict reader (no pickles, headers and
    sizes checked before anything is allocated)."""
    return load_npz(path)

