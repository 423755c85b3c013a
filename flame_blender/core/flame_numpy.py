"""The FLAME forward pass in plain numpy (float64), and the model preparation both backends share.

:class:`FlameNumpy` gives the same results as the PyTorch :class:`~.flame_torch.FLAME` (which is
the reference and the default when torch is importable); it is what runs inside a stock Blender,
which has no torch. The math is ``shared/flame-formats.md`` §5 (linear blend skinning with pose
correctives); two rearrangements, both exact in real arithmetic, make it fast and make zero
parameters give ``v_template`` bit for bit:

* Skinning is written as a displacement: ``v = v_posed + sum_j w_j ((R_j - I) v_posed + t_j)``
  with ``t_j`` the translation of ``A_j``. At rest every ``R_j - I`` and ``t_j`` is exactly zero,
  so nothing is added to ``v_posed``; the usual ``sum_j w_j (R_j v + t_j)`` would instead
  multiply by ``sum_j w_j``, which is 1 only up to rounding. (FLAME's weights sum to 1 per vertex.)
* Joints of the shaped mesh come from ``J_template + betas @ joint_directions`` where
  ``joint_directions = J_regressor @ shapedirs`` is precomputed (the regressor is linear).

Vertices are handled coordinate-planar inside, ``(B, 3, V)``: every step then works on long
contiguous rows, which is several times faster than ``(B, V, 3)`` for the per-vertex 3x4
transforms. Batches are processed in chunks so temporaries stay in the CPU caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FlameFileError, FlameParameterError
from .rotation import axis_angle_to_matrix

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
)
#: Heads per chunk in batched forward passes: keeps each chunk's temporaries (about 1 MB a head
#: in float64) inside the caches instead of paging in fresh memory for every step.
CHUNK_SIZE = 16

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

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def n_joints(self) -> int:
        return self.weights.shape[1]


def resolve_flame_source(flame: str | Path | Mapping[str, Any] | None) -> tuple[Mapping[str, Any], Path | None]:
    """The model dict and the folder its landmark files would sit in (None for a dict)."""
    if flame is None:
        from .synthetic import builtin_flame_dir

        flame = builtin_flame_dir()
    if isinstance(flame, Mapping):
        return flame, None
    from .model_io import load_flame

    path = Path(flame).expanduser()
    model = load_flame(path)
    folder = path if path.is_dir() else path.parent
    return model, folder


def load_landmarks_beside(folder: Path | None) -> dict[str, Any]:
    """Every landmark embedding in ``folder`` ({} when there is none or no folder)."""
    if folder is None:
        return {}
    from .landmark_io import load_landmark_embeddings

    return dict(load_landmark_embeddings(folder))


def prepare_flame_arrays(
    model: Mapping[str, Any], n_shape: int | None = 300, n_expression: int | None = 100
) -> FlameArrays:
    """Check a model dict (the keys :func:`~.model_io.load_flame` returns) and rearrange it.

    ``n_shape``/``n_expression`` may be fewer than the model holds (DECA uses 100 and 50);
    ``None`` means all of them. More than the model holds raises :class:`FlameParameterError`.
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
    )


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


def expected_sizes(n_shape: int, n_expression: int) -> dict[str, tuple[int, bool]]:
    """Parameter name -> (number of values, whether fewer are allowed (zero-padded))."""
    return {
        "shape_params": (n_shape, True),
        "expression_params": (n_expression, True),
        "global_pose": (3, False),
        "neck_pose": (3, False),
        "jaw_pose": (3, False),
        "eye_pose": (6, False),
        "transl": (3, False),
    }


def check_parameter_shapes(shapes: Mapping[str, tuple[int, ...]], n_shape: int, n_expression: int) -> tuple[int, bool]:
    """Batch size and whether the call is batched, from the given parameters' shapes.

    Each parameter is ``(n,)`` or ``(B, n)``; unbatched ones are shared by every head of a
    batched call. Raises :class:`FlameParameterError` for a wrong shape or mismatched batches.
    """
    sizes = expected_sizes(n_shape, n_expression)
    batch: int | None = None
    for name, shape in shapes.items():
        size, fewer_ok = sizes[name]
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


@dataclass
class FlameNumpyOutput:
    """What :meth:`FlameNumpy.run` returns (float64 numpy arrays; no batch axis for unbatched calls)."""

    vertices: np.ndarray  # (B, V, 3)
    joints: np.ndarray  # (B, 5, 3), posed, translated
    landmarks: dict[str, np.ndarray]  # name -> (B, L, 3)


class FlameNumpy:
    """FLAME in numpy: ``FlameNumpy(flame_dir)(jaw_pose=[0.2, 0, 0])`` -> ``(5023, 3)`` float64.

    Same constructor and call as :class:`~.flame_torch.FLAME` (see there), with numpy arrays
    (or lists) in and float64 numpy arrays out. No gradients.
    """

    def __init__(
        self,
        flame: str | Path | Mapping[str, Any] | None = None,
        n_shape: int | None = 300,
        n_expression: int | None = 100,
        dtype: Any = np.float64,
        landmarks: bool | Mapping[str, Any] = True,
        contour_convention: str = "deca",
    ) -> None:
        from .landmarks import LandmarkSet

        model, folder = resolve_flame_source(flame)
        arrays = prepare_flame_arrays(model, n_shape, n_expression)
        self.arrays = arrays
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise FlameParameterError(f"dtype {self.dtype}: expected float32 or float64")
        cast = self.dtype.type
        self.n_shape = arrays.n_shape
        self.n_expression = arrays.n_expression
        self.faces = arrays.faces
        self.parents = arrays.parents
        self.v_template = arrays.v_template.astype(cast)
        self._v_template_planar = arrays.v_template_planar.astype(cast)
        self._blend = arrays.blend_directions.astype(cast)
        self._joint_template = arrays.joint_template.astype(cast)
        self._joint_directions = arrays.joint_directions.astype(cast)
        self._pose_directions = arrays.pose_directions.astype(cast)
        self._weights_transposed = arrays.weights_transposed.astype(cast)
        self._joint_regressor = arrays.joint_regressor.astype(cast)
        if isinstance(landmarks, Mapping):
            embeddings = dict(landmarks)
        else:
            embeddings = load_landmarks_beside(folder) if landmarks else {}
        self.landmarks = LandmarkSet.from_embeddings(embeddings, arrays.faces, contour_convention)

    # -- public API -------------------------------------------------------------------------

    def __call__(self, **parameters: Any) -> np.ndarray:
        return self.forward(**parameters)

    def forward(
        self,
        shape_params: Any = None,
        expression_params: Any = None,
        global_pose: Any = None,
        neck_pose: Any = None,
        jaw_pose: Any = None,
        eye_pose: Any = None,
        transl: Any = None,
    ) -> np.ndarray:
        """Posed vertices ``(B, V, 3)``, or ``(V, 3)`` when no parameter has a batch axis."""
        return self._run(locals(), want_landmarks=False).vertices

    def run(self, **parameters: Any) -> FlameNumpyOutput:
        """Vertices, posed joints and every loaded landmark set."""
        return self._run(parameters, want_landmarks=True)

    def shape_blend(self, shape_params: Any = None, expression_params: Any = None) -> np.ndarray:
        """``v_shaped = v_template + shapedirs . betas``: ``(B, V, 3)`` or ``(V, 3)``."""
        values, batch, batched = self._parameters(
            {"shape_params": shape_params, "expression_params": expression_params}
        )
        planar, _ = self._shape_planar(values, batch)
        out = _from_planar(planar, self.arrays.n_vertices)
        return out if batched else out[0]

    def skin(
        self,
        v_shaped: Any,
        global_pose: Any = None,
        neck_pose: Any = None,
        jaw_pose: Any = None,
        eye_pose: Any = None,
        transl: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pose a shaped mesh ``(B, V, 3)`` or ``(V, 3)``: returns ``(vertices, joints)``."""
        v = np.asarray(v_shaped, dtype=self.dtype)
        n_vertices = self.arrays.n_vertices
        if v.shape[-2:] != (n_vertices, 3) or v.ndim not in (2, 3):
            raise FlameParameterError(f"v_shaped: expected shape ({n_vertices}, 3) or (B, {n_vertices}, 3), got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise FlameParameterError("v_shaped holds NaN or inf values")
        values, batch, batched = self._parameters(
            {"global_pose": global_pose, "neck_pose": neck_pose, "jaw_pose": jaw_pose, "eye_pose": eye_pose, "transl": transl}
        )
        if v.ndim == 3:
            if batched and batch != v.shape[0]:
                raise FlameParameterError(f"v_shaped has batch size {v.shape[0]}, the poses {batch}")
            batch, batched = v.shape[0], True
        vb = np.broadcast_to(v, (batch, n_vertices, 3))
        planar = np.ascontiguousarray(vb.transpose(0, 2, 1)).reshape(batch, -1)
        joints = np.einsum("jv,bvc->bjc", self._joint_regressor, vb).reshape(batch, -1)
        out = self._pose_and_skin(planar, joints, values, batch, want_landmarks=False)
        if not batched:
            return out.vertices[0], out.joints[0]
        return out.vertices, out.joints

    # -- internals --------------------------------------------------------------------------

    def _parameters(self, raw: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int, bool]:
        values: dict[str, np.ndarray] = {}
        for name, value in raw.items():
            if name == "self" or value is None:
                continue
            if name not in PARAMETER_NAMES:
                raise FlameParameterError(f"unknown parameter {name!r}; expected one of {PARAMETER_NAMES}")
            try:
                array = np.asarray(value, dtype=self.dtype)
            except (TypeError, ValueError) as error:
                raise FlameParameterError(f"{name}: not an array of numbers ({error})") from None
            values[name] = array
        batch, batched = check_parameter_shapes(
            {k: v.shape for k, v in values.items()}, self.n_shape, self.n_expression
        )
        for name, array in values.items():
            if not np.all(np.isfinite(array)):
                raise FlameParameterError(f"{name} holds NaN or inf values")
        return values, batch, batched

    def _run(self, raw: Mapping[str, Any], want_landmarks: bool) -> FlameNumpyOutput:
        values, batch, batched = self._parameters(raw)
        planar, joints = self._shape_planar(values, batch)
        out = self._pose_and_skin(planar, joints, values, batch, want_landmarks)
        if not batched:
            out = FlameNumpyOutput(out.vertices[0], out.joints[0], {k: v[0] for k, v in out.landmarks.items()})
        return out

    def _shape_planar(self, values: Mapping[str, np.ndarray], batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(B, 3V)`` shaped vertices and ``(B, J*3)`` rest joints."""
        shape = values.get("shape_params")
        expression = values.get("expression_params")
        planar = np.broadcast_to(self._v_template_planar, (batch, self._v_template_planar.size))
        joints = np.broadcast_to(self._joint_template, (batch, self._joint_template.size))
        for coefficients, start in ((shape, 0), (expression, self.n_shape)):
            if coefficients is None or coefficients.shape[-1] == 0:
                continue
            rows = slice(start, start + coefficients.shape[-1])
            c = np.broadcast_to(coefficients, (batch, coefficients.shape[-1]))
            planar = planar + c @ self._blend[rows]
            joints = joints + c @ self._joint_directions[rows]
        return planar, joints

    def _pose_and_skin(
        self, planar: np.ndarray, joints: np.ndarray, values: Mapping[str, np.ndarray], batch: int, want_landmarks: bool
    ) -> FlameNumpyOutput:
        n_vertices = self.arrays.n_vertices
        n_joints = self.arrays.n_joints
        pose = _pose_vectors(values, batch, self.dtype)
        transl = values.get("transl")
        vertices = np.empty((batch, n_vertices, 3), dtype=self.dtype)
        posed_joints = np.empty((batch, n_joints, 3), dtype=self.dtype)
        neck_rotations = np.broadcast_to(np.eye(3, dtype=self.dtype), (batch, 3, 3)).copy()
        for start in range(0, batch, CHUNK_SIZE):
            stop = min(start + CHUNK_SIZE, batch)
            v_chunk = planar[start:stop].reshape(stop - start, 3, n_vertices)
            j_chunk = joints[start:stop].reshape(stop - start, n_joints, 3)
            if pose is None:
                vertices[start:stop] = v_chunk.transpose(0, 2, 1)
                posed_joints[start:stop] = j_chunk
                continue
            skinned, world_joints, world_rotations = self._skin_chunk(v_chunk, j_chunk, pose[start:stop])
            vertices[start:stop] = skinned.transpose(0, 2, 1)
            posed_joints[start:stop] = world_joints
            neck_rotations[start:stop] = world_rotations[:, 1]
        if transl is not None:
            t = np.broadcast_to(transl, (batch, 3))[:, None, :]
            vertices += t
            posed_joints += t
        landmarks = self.landmarks.evaluate_numpy(vertices, neck_rotations) if want_landmarks else {}
        return FlameNumpyOutput(vertices, posed_joints, landmarks)

    def _skin_chunk(
        self, v_shaped: np.ndarray, joints: np.ndarray, pose: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One chunk: ``v_shaped (C, 3, V)``, rest joints ``(C, J, 3)``, pose ``(C, J, 3)``."""
        count, n_joints = pose.shape[0], pose.shape[1]
        n_vertices = v_shaped.shape[2]
        rotations = axis_angle_to_matrix(pose)  # (C, J, 3, 3)
        eye = np.eye(3, dtype=self.dtype)
        feature = (rotations[:, 1:] - eye).reshape(count, -1)
        v_posed = v_shaped + (feature @ self._pose_directions).reshape(count, 3, n_vertices)
        transforms, world_joints, world_rotations = rigid_transforms(rotations, joints, self.arrays.levels, self.parents)
        # (C, 12, J) @ (J, V) -> per-vertex 3x4 displacement transforms, planar
        blended = (transforms.reshape(count, n_joints, 12).transpose(0, 2, 1) @ self._weights_transposed)
        blended = blended.reshape(count, 3, 4, n_vertices)
        skinned = v_posed + (blended[:, :, :3] * v_posed[:, None]).sum(axis=2) + blended[:, :, 3]
        return skinned, world_joints, world_rotations


def rigid_transforms(
    rotations: np.ndarray, joints: np.ndarray, levels: tuple[tuple[int, ...], ...], parents: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-joint skinning displacements from local rotations and rest joints (numpy).

    Args:
        rotations: ``(C, J, 3, 3)`` local joint rotations.
        joints: ``(C, J, 3)`` rest joint positions.
    Returns:
        ``transforms (C, J, 3, 4)`` = ``[G_j - I | t_j]`` such that a vertex moves by
        ``(G_j - I) v + t_j`` under joint j (``G_j`` its world rotation); posed joints
        ``(C, J, 3)``; world rotations ``(C, J, 3, 3)``.
    """
    eye = np.eye(3, dtype=rotations.dtype)
    world = rotations.copy()  # the root level keeps its local rotation
    # displacement of each joint from rest: d_j = d_parent + (G_parent - I)(J_j - J_parent)
    moved = np.zeros_like(joints)
    for level, parent_index in _level_indices(levels, parents):
        parent_world = world[:, parent_index]
        world[:, level] = parent_world @ rotations[:, level]
        bone = joints[:, level] - joints[:, parent_index]
        moved[:, level] = moved[:, parent_index] + np.einsum("cjab,cjb->cja", parent_world - eye, bone)
    transforms = np.empty(rotations.shape[:2] + (3, 4), dtype=rotations.dtype)
    delta = np.subtract(world, eye, out=transforms[..., :3])
    transforms[..., 3] = moved - np.einsum("cjab,cjb->cja", delta, joints)
    return transforms, joints + moved, world


_LEVEL_INDICES: dict[tuple, list[tuple[slice | list[int], slice | list[int]]]] = {}


def _level_indices(levels: tuple[tuple[int, ...], ...], parents: tuple[int, ...]) -> list:
    """(joints of the level, their parents) per level after the root's, as slices where possible."""
    key = (levels, parents)
    found = _LEVEL_INDICES.get(key)
    if found is None:
        found = []
        for level in levels[1:]:
            found.append((_as_slice(list(level)), _as_slice([parents[j] for j in level])))
        _LEVEL_INDICES[key] = found
    return found


def _as_slice(indices: list[int]) -> slice | list[int]:
    if indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)
    if len(set(indices)) == 1:
        return slice(indices[0], indices[0] + 1)  # one parent for the whole level: broadcasts
    return indices


def _pose_vectors(values: Mapping[str, np.ndarray], batch: int, dtype: np.dtype) -> np.ndarray | None:
    """``(B, J, 3)`` axis-angle per joint, or None when no pose was given (rest pose)."""
    given = [name for name, _ in POSE_ARGUMENTS if name in values]
    if not given:
        return None
    pose = np.zeros((batch, 15), dtype=dtype)
    column = 0
    for name, size in POSE_ARGUMENTS:
        if name in values:
            pose[:, column : column + size] = values[name]
        column += size
    return pose.reshape(batch, 5, 3)


def _from_planar(planar: np.ndarray, n_vertices: int) -> np.ndarray:
    batch = planar.shape[0]
    return np.ascontiguousarray(planar.reshape(batch, 3, n_vertices).transpose(0, 2, 1))
