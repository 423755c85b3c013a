"""FLAME's arrays prepared for the forward pass, and the checks of its parameters (numpy only).

One preparation for every speed path (:class:`~.flame_torch.FLAME`,
:class:`~.flame_numpy.FlameNumpy`, the single-head evaluator of :mod:`.backend`): the model dict
as :func:`~.model_io.load_flame` returns it, optionally with VHAP's teeth (:mod:`.teeth`) and extra
blend shapes (:mod:`.extra_blendshapes`), rearranged coordinate-planar (``3V`` = all x, then all
y, then all z) with ``J_regressor @ shapedirs`` precomputed (the regressor is linear).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError, FlameParameterError

#: Identity coefficients come first in ``shapedirs``; expression coefficients start here.
SHAPE_SPACE_SIZE = 300
JOINT_NAMES: tuple[str, ...] = ("root", "neck", "jaw", "left_eye", "right_eye")
#: Pose arguments in joint order, with the number of values each takes.
POSE_ARGUMENTS: tuple[tuple[str, int], ...] = (
    ("global_pose", 3),
    ("neck_pose", 3),
    ("jaw_pose", 3),
    ("eye_pose", 6),
)
PARAMETER_NAMES: tuple[str, ...] = (
    "shape_params",
    "expression_params",
    "global_pose",
    "neck_pose",
    "jaw_pose",
    "eye_pose",
    "transl",
    "extra_params",
    "offsets",
)

_REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "weights", "J_regressor", "kintree_table")


@dataclass(frozen=True)
class FlameArrays:
    """FLAME's arrays rearranged for the forward pass (float64 unless stated).

    ``V`` vertices, ``J`` joints, ``K = n_shape + n_expression`` coefficients, planar vertex
    layout ``3V`` = all x, then all y, then all z.
    """

    v_template: np.ndarray  # (V, 3)
    v_template_planar: np.ndarray  # (3V,)
    faces: np.ndarray  # (F, 3) int64
    blend_directions: np.ndarray  # (K, 3V): shape rows then expression rows
    joint_template: np.ndarray  # (J*3,) = J_regressor @ v_template, row-major (J, 3)
    joint_directions: np.ndarray  # (K, J*3)
    pose_directions: np.ndarray  # (9(J-1), 3V)
    weights: np.ndarray  # (V, J)
    weights_transposed: np.ndarray  # (J, V)
    joint_regressor: np.ndarray  # (J, V)
    parents: tuple[int, ...]
    n_shape: int
    n_expression: int
    file_n_shape: int
    file_n_expression: int
    levels: tuple[tuple[int, ...], ...] = field(default=())  # joints grouped by tree depth
    extra_names: tuple[str, ...] = ()  # extra blend shapes, in coefficient order
    extra_directions: np.ndarray | None = None  # (E, 3V) planar, or None
    extra_joint_directions: np.ndarray | None = None  # (E, J*3) = J_regressor @ each extra shape

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def n_joints(self) -> int:
        return self.weights.shape[1]


def resolve_flame_source(flame: str | Path | Mapping[str, Any] | None) -> tuple[Mapping[str, Any], Path | None]:
    """The model dict and the folder its landmark files would sit in (None for a dict)."""
    if flame is None:
        from ..synthetic import builtin_flame_dir

        flame = builtin_flame_dir()
    if isinstance(flame, Mapping):
        return flame, None
    from ..io.model_io import load_flame

    path = Path(flame).expanduser()
    model = load_flame(path)
    folder = path if path.is_dir() else path.parent
    return model, folder


def load_landmarks_beside(folder: Path | None) -> dict[str, Any]:
    """Every landmark embedding in ``folder`` ({} when there is none or no folder)."""
    if folder is None:
        return {}
    from ..io.landmark_io import load_landmark_embeddings

    return dict(load_landmark_embeddings(folder))


def prepare_model(
    flame: str | Path | Mapping[str, Any] | None,
    n_shape: int | None,
    n_expression: int | None,
    teeth: bool = False,
    extra_blendshapes: bool | Mapping[str, Any] = True,
    extra_stage: str = "posed",
) -> tuple[FlameArrays, Path | None]:
    """Everything the model classes share at construction: ``(arrays, folder of the model file)``.

    ``teeth`` adds VHAP's 120 tooth vertices (:func:`~.teeth.add_teeth`); ``extra_blendshapes``:
    True loads the known files beside the model (:mod:`.extra_blendshapes`), a dict name ->
    ``(5023, 3)`` uses those, False none. ``extra_stage`` is checked here ("posed" or "shaped").
    """
    if extra_stage not in ("posed", "shaped"):
        raise FlameParameterError(f"extra_stage={extra_stage!r}: expected 'posed' (after skinning) or 'shaped'")
    model, folder = resolve_flame_source(flame)
    if isinstance(extra_blendshapes, Mapping):
        extras = {str(k): np.asarray(v, dtype=np.float64) for k, v in extra_blendshapes.items()}
    elif extra_blendshapes:
        from ..io.extra_blendshapes import find_extra_blendshapes

        extras = find_extra_blendshapes(folder, np.shape(model["v_template"])[0]) if "v_template" in model else {}
    else:
        extras = {}
    if teeth:
        from .teeth import add_teeth

        model = add_teeth(model)
    return prepare_flame_arrays(model, n_shape, n_expression, extras), folder


def prepare_flame_arrays(
    model: Mapping[str, Any],
    n_shape: int | None = 300,
    n_expression: int | None = 100,
    extra_blendshapes: Mapping[str, np.ndarray] | None = None,
) -> FlameArrays:
    """Check a model dict (the keys :func:`~.model_io.load_flame` returns) and rearrange it.

    ``n_shape``/``n_expression`` may be fewer than the model holds (DECA uses 100 and 50);
    ``None`` means all of them. More than the model holds raises :class:`FlameParameterError`.
    ``extra_blendshapes``: name -> ``(V, 3)`` displacements (``(5023, 3)`` ones are padded with
    zeros for VHAP's teeth).
    """
    missing = [key for key in _REQUIRED_KEYS if key not in model]
    if missing:
        raise FlameFileError(None, f"FLAME model dict lacks {missing}; expected the keys load_flame returns")
    v_template = _float_array(model, "v_template")
    n_vertices = v_template.shape[0]
    if v_template.shape != (n_vertices, 3):
        raise FlameFileError(None, f"v_template has shape {v_template.shape}; expected (V, 3)")
    shapedirs = _float_array(model, "shapedirs")
    if shapedirs.ndim == 2:
        shapedirs = shapedirs[:, :, None]
    if shapedirs.shape[:2] != (n_vertices, 3):
        raise FlameFileError(None, f"shapedirs has shape {shapedirs.shape}; expected ({n_vertices}, 3, N)")
    weights = _float_array(model, "weights")
    n_joints = weights.shape[1] if weights.ndim == 2 else -1
    if weights.shape != (n_vertices, 5):
        raise FlameFileError(None, f"weights has shape {weights.shape}; expected ({n_vertices}, 5): FLAME's five joints")
    posedirs = _float_array(model, "posedirs")
    if posedirs.shape != (n_vertices, 3, 9 * (n_joints - 1)):
        raise FlameFileError(None, f"posedirs has shape {posedirs.shape}; expected ({n_vertices}, 3, {9 * (n_joints - 1)})")
    regressor = model["J_regressor"]
    if hasattr(regressor, "toarray"):
        regressor = regressor.toarray()
    regressor = np.asarray(regressor, dtype=np.float64)
    if regressor.shape != (n_joints, n_vertices):
        raise FlameFileError(None, f"J_regressor has shape {regressor.shape}; expected ({n_joints}, {n_vertices})")
    faces = np.asarray(model["f"]).astype(np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise FlameFileError(None, f"f has shape {faces.shape}; expected (F, 3)")
    parents = _parents(np.asarray(model["kintree_table"]), n_joints)

    n_directions = shapedirs.shape[2]
    file_n_shape = min(SHAPE_SPACE_SIZE, n_directions)
    file_n_expression = n_directions - file_n_shape
    n_shape = file_n_shape if n_shape is None else _component_count("n_shape", n_shape, file_n_shape, "shape")
    n_expression = (
        file_n_expression
        if n_expression is None
        else _component_count("n_expression", n_expression, file_n_expression, "expression")
    )
    columns = np.r_[0:n_shape, file_n_shape : file_n_shape + n_expression]
    # (V, 3, K) -> (K, 3, V) -> (K, 3V): planar rows
    blend = np.ascontiguousarray(shapedirs[:, :, columns].transpose(2, 1, 0)).reshape(len(columns), 3 * n_vertices)
    pose = np.ascontiguousarray(posedirs.transpose(2, 1, 0)).reshape(posedirs.shape[2], -1)
    joint_template = (regressor @ v_template).reshape(-1)
    joint_directions = np.einsum("jv,vck->kjc", regressor, shapedirs[:, :, columns]).reshape(len(columns), 3 * n_joints)
    return FlameArrays(
        v_template=v_template,
        v_template_planar=np.ascontiguousarray(v_template.T).reshape(-1),
        faces=faces,
        blend_directions=blend,
        joint_template=joint_template,
        joint_directions=np.ascontiguousarray(joint_directions),
        pose_directions=pose,
        weights=np.ascontiguousarray(weights),
        weights_transposed=np.ascontiguousarray(weights.T),
        joint_regressor=regressor,
        parents=parents,
        n_shape=n_shape,
        n_expression=n_expression,
        file_n_shape=file_n_shape,
        file_n_expression=file_n_expression,
        levels=joint_levels(parents),
        **_extra_arrays(extra_blendshapes or {}, regressor, n_vertices),
    )


def _extra_arrays(extras: Mapping[str, np.ndarray], regressor: np.ndarray, n_vertices: int) -> dict[str, Any]:
    if not extras:
        return {}
    rows = []
    for name, shape in extras.items():
        if shape.shape[1:] == (3,) and shape.shape[0] < n_vertices and n_vertices - shape.shape[0] == 120:
            shape = np.concatenate([shape, np.zeros((120, 3))])  # the teeth do not follow these shapes
        if shape.shape != (n_vertices, 3) or not np.all(np.isfinite(shape)):
            raise FlameParameterError(f"extra blend shape {name!r}: expected finite ({n_vertices}, 3), got {shape.shape}")
        rows.append(shape)
    stacked = np.stack(rows)  # (E, V, 3)
    return {
        "extra_names": tuple(extras),
        "extra_directions": np.ascontiguousarray(stacked.transpose(0, 2, 1)).reshape(len(rows), -1),
        "extra_joint_directions": np.einsum("jv,evc->ejc", regressor, stacked).reshape(len(rows), -1),
    }


def joint_levels(parents: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Joints grouped by depth in the tree: level 0 is the root; each level needs only earlier ones."""
    depth: list[int] = []
    for parent in parents:
        depth.append(0 if parent < 0 else depth[parent] + 1)
    return tuple(tuple(j for j, d in enumerate(depth) if d == level) for level in range(max(depth) + 1))


def _parents(kintree_table: np.ndarray, n_joints: int) -> tuple[int, ...]:
    if kintree_table.shape != (2, n_joints):
        raise FlameFileError(None, f"kintree_table has shape {kintree_table.shape}; expected (2, {n_joints})")
    raw = [int(p) for p in kintree_table[0]]
    # 2**32 - 1 (unsigned -1) marks the root in the files
    parents = tuple(-1 if p in (-1, 2**32 - 1) or p >= n_joints else p for p in raw)
    if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
        raise FlameFileError(None, f"kintree_table parents {raw}; expected the root first and each parent before its child")
    return parents


def _float_array(model: Mapping[str, Any], key: str) -> np.ndarray:
    value = model[key]
    value = getattr(value, "x", value)  # a chumpy-like stand-in keeps its array in .x
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise FlameFileError(None, f"{key} holds NaN or inf values; expected finite numbers")
    return array


def _component_count(name: str, requested: int, available: int, what: str) -> int:
    if isinstance(requested, bool) or int(requested) != requested or requested < 0:
        raise FlameParameterError(f"{name}={requested!r}: expected a whole number >= 0")
    if requested > available:
        raise FlameParameterError(
            f"{name}={requested} but the model holds only {available} {what} components; "
            f"use at most {available}"
        )
    return int(requested)


def expected_sizes(n_shape: int, n_expression: int, n_extra: int = 0) -> dict[str, tuple[int, bool]]:
    """Parameter name -> (number of values, whether fewer are allowed (zero-padded))."""
    return {
        "shape_params": (n_shape, True),
        "expression_params": (n_expression, True),
        "global_pose": (3, False),
        "neck_pose": (3, False),
        "jaw_pose": (3, False),
        "eye_pose": (6, False),
        "transl": (3, False),
        "extra_params": (n_extra, False),
    }


def check_parameter_shapes(
    shapes: Mapping[str, tuple[int, ...]], n_shape: int, n_expression: int, n_extra: int = 0
) -> tuple[int, bool]:
    """Batch size and whether the call is batched, from the given parameters' shapes.

    Each parameter is ``(n,)`` or ``(B, n)``; unbatched ones are shared by every head of a
    batched call. Raises :class:`FlameParameterError` for a wrong shape or mismatched batches.
    """
    sizes = expected_sizes(n_shape, n_expression, n_extra)
    batch: int | None = None
    for name, shape in shapes.items():
        if name == "offsets":
            batch = _check_offsets(shape, batch)
            continue
        size, fewer_ok = sizes[name]
        if name == "extra_params" and size == 0:
            raise FlameParameterError("extra_params: this model has no extra blend shapes (extra_names is empty)")
        if len(shape) not in (1, 2):
            raise FlameParameterError(f"{name}: expected shape ({size},) or (B, {size}), got {tuple(shape)}")
        n = shape[-1]
        if (n > size) if fewer_ok else (n != size):
            wanted = f"at most {size}" if fewer_ok else f"{size}"
            extra = " (the model was built with fewer components; pass n_shape/n_expression)" if fewer_ok else ""
            raise FlameParameterError(f"{name}: expected {wanted} values in the last axis, got shape {tuple(shape)}{extra}")
        if len(shape) == 2:
            if batch is not None and shape[0] != batch:
                raise FlameParameterError(
                    f"{name}: batch size {shape[0]} does not match the other parameters' {batch}"
                )
            batch = shape[0]
    return (1, False) if batch is None else (batch, True)


def _check_offsets(shape: tuple[int, ...], batch: int | None) -> int | None:
    """``offsets`` is ``(V, 3)`` or ``(B, V, 3)``; returns the batch size so far."""
    if len(shape) not in (2, 3) or shape[-1] != 3:
        raise FlameParameterError(f"offsets: expected shape (V, 3) or (B, V, 3), got {tuple(shape)}")
    if len(shape) == 3:
        if batch is not None and shape[0] != batch:
            raise FlameParameterError(f"offsets: batch size {shape[0]} does not match the other parameters' {batch}")
        return shape[0]
    return batch


