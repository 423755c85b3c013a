"""A tracked FLAME sequence: per-frame parameters, frame ids, cameras, offsets, extra blendshapes.

Everything is in FLAME's conventions once loaded: poses axis-angle radians (``eye_pose`` left
eye then right eye), metres, and cameras as OpenCV intrinsics with an OpenCV world-to-camera
matrix (x right, y down, z forward) whose *world* is FLAME's model space after ``transl`` (and
after :attr:`FlameSequence.object_transform` when there is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FlameFileError
from ..model.parameters import POSE_SIZES, FlameParameters

#: Per-frame parameter arrays of a sequence and their widths (0: any width).
FRAME_ARRAYS: dict[str, int] = {"shape": 0, "expression": 0, **POSE_SIZES}


@dataclass
class SequenceCameras:
    """One camera per frame, OpenCV conventions (see :mod:`..camera`).

    Attributes:
        intrinsics: ``(F, 3, 3)`` ``K`` in pixels.
        world_to_camera: ``(F, 4, 4)`` OpenCV world-to-camera.
        image_size: ``(F, 2)`` ``(width, height)`` in pixels.
    """

    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    image_size: np.ndarray

    def take(self, order: np.ndarray) -> SequenceCameras:
        return SequenceCameras(self.intrinsics[order], self.world_to_camera[order], self.image_size[order])


@dataclass
class FlameSequence:
    """Per-frame FLAME parameters of one tracked sequence (float64 arrays, F frames).

    Attributes:
        shape: ``(F, n_shape)`` identity (repeated when the file has one fixed identity).
        expression: ``(F, n_expression)``.
        global_pose, neck_pose, jaw_pose, transl: ``(F, 3)``; eye_pose ``(F, 6)``.
        frame_ids: ``(F,)`` int64, increasing; gaps are kept.
        fps: the file's frame rate, or None.
        format: the format's name (see :data:`~.readers.FORMATS`).
        cameras: per-frame cameras, or None.
        object_transform: ``(F, 4, 4)`` model-to-world transform applied after skinning
            (NeRSemble's rotation, scale and translation), or None.
        static_offset: ``(V, 3)`` per-vertex offsets added before joint regression, or None.
        dynamic_offset: ``(F, V, 3)`` per-frame offsets (same place), or None.
        extra_names: names of extra blendshapes (``("l_eyelid", "r_eyelid")``).
        extra_params: ``(F, len(extra_names))`` their coefficients.
        model: the FLAME version the writer used ("FLAME 2020" / "FLAME 2023"), or "".
        source: the file or folder read.
    """

    shape: np.ndarray
    expression: np.ndarray
    global_pose: np.ndarray
    neck_pose: np.ndarray
    jaw_pose: np.ndarray
    eye_pose: np.ndarray
    transl: np.ndarray
    frame_ids: np.ndarray
    fps: float | None = None
    format: str = ""
    cameras: SequenceCameras | None = None
    object_transform: np.ndarray | None = None
    static_offset: np.ndarray | None = None
    dynamic_offset: np.ndarray | None = None
    extra_names: tuple[str, ...] = ()
    extra_params: np.ndarray | None = None
    model: str = ""
    source: Path | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shape.shape[1])

    @property
    def n_expression(self) -> int:
        return int(self.expression.shape[1])

    @property
    def fixed_shape(self) -> bool:
        """True when every frame has the same identity."""
        return bool(np.all(self.shape == self.shape[:1]))

    @property
    def n_vertices(self) -> int | None:
        """The vertex count the offsets were written for (5023, or 5143 with VHAP's teeth)."""
        for offsets in (self.static_offset, self.dynamic_offset):
            if offsets is not None:
                return int(offsets.shape[-2])
        return None

    def poses(self) -> np.ndarray:
        """``(F, 18)``: global, neck, jaw, eyes, transl, the order of the Blender pose channels."""
        return np.concatenate([getattr(self, name) for name in POSE_SIZES], axis=1)

    def parameters(self, index: int) -> FlameParameters:
        """Frame ``index`` (a position, not a frame id) as a :class:`FlameParameters`."""
        return FlameParameters(**{name: getattr(self, name)[index] for name in FRAME_ARRAYS})

    def offsets(self, index: int) -> np.ndarray | None:
        """``(V, 3)`` static + dynamic offsets of frame ``index``, or None without offsets."""
        if self.static_offset is None and self.dynamic_offset is None:
            return None
        total = 0.0
        if self.static_offset is not None:
            total = total + self.static_offset
        if self.dynamic_offset is not None:
            total = total + self.dynamic_offset[index]
        return np.asarray(total, dtype=np.float64)


def build_sequence(
    path: Path,
    format_name: str,
    frames: dict[str, np.ndarray],
    frame_ids: np.ndarray | None = None,
    **extras,
) -> FlameSequence:
    """Validate per-frame arrays and make a :class:`FlameSequence` sorted by frame id.

    ``frames`` maps names of :data:`FRAME_ARRAYS` to ``(F, n)`` arrays or, for a fixed identity,
    ``(n,)``; missing pose arrays are zeros. Raises ``FlameFileError`` naming the file and the key
    for disagreeing frame counts, wrong widths, NaN or inf, and offsets of the wrong shape.
    """
    counts = {name: value.shape[0] for name, value in frames.items() if np.ndim(value) == 2}
    if not counts:
        raise FlameFileError(path, "holds no per-frame parameters; expected (frames, n) arrays")
    if len(set(counts.values())) > 1:
        raise FlameFileError(path, f"frame counts disagree between keys: {counts}; expected one count")
    count = next(iter(counts.values()))
    values: dict[str, np.ndarray] = {}
    for name, width in FRAME_ARRAYS.items():
        value = frames.get(name)
        if value is None:
            value = np.zeros((count, width))
        value = np.asarray(value, dtype=np.float64)
        if value.ndim == 1:
            value = np.broadcast_to(value, (count, value.shape[0])).copy()
        if value.ndim != 2 or (width and value.shape[1] != width):
            raise FlameFileError(
                path, f"{name}: shape {value.shape}; expected ({count}, {width or 'n'})"
            )
        values[name] = value
    extra_params = extras.get("extra_params")
    for name, value in [*values.items(), ("extra_params", extra_params)]:
        if value is not None and not np.all(np.isfinite(value)):
            raise FlameFileError(path, f"{name} holds NaN or inf; expected finite numbers")
    if extra_params is not None and np.shape(extra_params)[0] != count:
        raise FlameFileError(path, f"extra_params has {np.shape(extra_params)[0]} frames, the rest {count}")
    ids = np.arange(count, dtype=np.int64) if frame_ids is None else np.asarray(frame_ids).astype(np.int64).reshape(-1)
    if ids.shape[0] != count:
        raise FlameFileError(path, f"{ids.shape[0]} frame ids for {count} frames; expected one id a frame")
    if np.unique(ids).shape[0] != count:
        raise FlameFileError(path, "frame ids repeat; expected one set of parameters a frame")
    _check_offsets(path, extras, count)
    sequence = FlameSequence(**values, frame_ids=ids, format=format_name, source=path, **extras)
    order = np.argsort(ids, kind="stable")
    if np.any(order != np.arange(count)):
        sequence = take_frames(sequence, order)
    return sequence


def _check_offsets(path: Path, extras: dict, count: int) -> None:
    static, dynamic = extras.get("static_offset"), extras.get("dynamic_offset")
    vertex_counts = set()
    if static is not None:
        if static.ndim != 2 or static.shape[1] != 3:
            raise FlameFileError(path, f"static_offset: shape {static.shape}; expected (V, 3)")
        vertex_counts.add(static.shape[0])
    if dynamic is not None:
        if dynamic.ndim != 3 or dynamic.shape[0] != count or dynamic.shape[2] != 3:
            raise FlameFileError(path, f"dynamic_offset: shape {dynamic.shape}; expected ({count}, V, 3)")
        vertex_counts.add(dynamic.shape[1])
    if len(vertex_counts) > 1:
        raise FlameFileError(path, f"static and dynamic offsets disagree on the vertex count: {sorted(vertex_counts)}")
    for name, value in (("static_offset", static), ("dynamic_offset", dynamic)):
        if value is not None and not np.all(np.isfinite(value)):
            raise FlameFileError(path, f"{name} holds NaN or inf; expected finite numbers")


def take_frames(sequence: FlameSequence, order: np.ndarray) -> FlameSequence:
    """The sequence with its frames reordered or selected by position ``order``."""
    import dataclasses

    changes = {name: getattr(sequence, name)[order] for name in FRAME_ARRAYS}
    changes["frame_ids"] = sequence.frame_ids[order]
    for name in ("object_transform", "dynamic_offset", "extra_params"):
        value = getattr(sequence, name)
        if value is not None:
            changes[name] = value[order]
    if sequence.cameras is not None:
        changes["cameras"] = sequence.cameras.take(order)
    return dataclasses.replace(sequence, **changes)
