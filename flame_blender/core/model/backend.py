"""Single-head FLAME evaluation for the Blender layer: ``create_backend(model, kind)``.

The Blender sliders call :meth:`FlameBackend.shaped` when an identity/expression coefficient
changes and :meth:`FlameBackend.posed` on every pose change, with plain numpy arrays. Both are
built for that:

* ``posed`` never redoes shape blending: it takes the ``v_shaped`` that ``shaped`` returned
  and, when it is that very array, reuses its planar copy and rest joints;
* ``shaped`` updates incrementally when only a few coefficients changed since the last call
  (a slider drag changes one): ``v += dirs[k] * (new_k - old_k)`` accumulated in float64 on the
  float32 directions, which costs one row instead of the whole 400-row product; all-zero
  coefficients return ``v_template`` exactly, and a full product is redone every
  :data:`FULL_UPDATE_EVERY` incremental steps or when many coefficients change;
* the 5-joint rotation chain runs in numpy float64 (a few microseconds); the per-vertex work runs
  in torch (``inference_mode``) for the torch kinds or numpy for ``numpy``, into buffers reused
  from call to call. Outputs are fresh float32 C-contiguous arrays, safe to keep.

``kind``: ``"torch_cpu"``, ``"torch_cuda"``, ``"numpy"``, or ``"auto"`` = PyTorch on the CPU
when torch imports, else NumPy. (For one head the CPU beats a GPU: the work is smaller than the
cost of launching kernels and copying back.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameParameterError
from .lbs import pose_feature, rigid_transforms
from .model_arrays import prepare_flame_arrays, prepare_model
from .rotation import axis_angle_to_matrix

KINDS = ("auto", "torch_cpu", "torch_cuda", "numpy")
#: More changed coefficients than this: one full product is cheaper than row updates.
MAX_INCREMENTAL_CHANGES = 24
#: Incremental updates between full products (bounds any float drift).
FULL_UPDATE_EVERY = 256


def torch_available() -> bool:
    """Whether PyTorch can be imported here (stock Blender: no)."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def create_backend(
    model: Mapping[str, Any] | str | Path | None,
    kind: str = "auto",
    n_shape: int | None = None,
    n_expression: int | None = None,
    teeth: bool = False,
    extra_blendshapes: bool | Mapping[str, Any] = True,
    extra_stage: str = "posed",
) -> FlameBackend:
    """A single-head FLAME evaluator for ``model`` (a dict as ``load_flame`` returns, or a path).

    ``n_shape``/``n_expression``: None = all the model holds. ``teeth``, ``extra_blendshapes`` and
    ``extra_stage`` as for :class:`~.flame_torch.FLAME`. Raises ``ValueError`` for an unknown
    kind and ``RuntimeError`` when the kind cannot run here (no torch, no CUDA).
    """
    if kind not in KINDS:
        raise ValueError(f"backend kind {kind!r}: expected one of {KINDS}")
    if kind == "auto":
        kind = "torch_cpu" if torch_available() else "numpy"
    arrays, _ = prepare_model(model, n_shape, n_expression, teeth, extra_blendshapes, extra_stage)
    if kind == "numpy":
        return FlameBackend(arrays, extra_stage=extra_stage)
    if not torch_available():
        raise RuntimeError(f"backend {kind!r} needs PyTorch, which is not importable here; use 'numpy'")
    import torch

    if kind == "torch_cuda" and not torch.cuda.is_available():
        raise RuntimeError("backend 'torch_cuda': PyTorch sees no CUDA device here")
    from .torch_backend import TorchBackend

    return TorchBackend(arrays, extra_stage=extra_stage, device="cuda" if kind == "torch_cuda" else "cpu")


@dataclass
class Skinning:
    """One pose of a head, for a caller that has its ``v_shaped`` already. The posed vertices are
    ``v + x * blended[0] + y * blended[1] + z * blended[2] + blended[3] + transl``, with
    ``v = (x, y, z) = v_shaped + pose_offsets`` per vertex: :func:`.lbs.lbs` exactly."""

    blended: np.ndarray  # (4, V, 3) float32: the columns of each vertex's weighted [G - I | t]
    pose_offsets: np.ndarray  # (V, 3) float32: the pose correctives
    transl: np.ndarray  # (3,) float64


class FlameBackend:
    """NumPy single-head evaluator (float32 arrays, float64 joint math). See the module docstring."""

    name = "NumPy"

    def __init__(
        self,
        model: Any,
        n_shape: int | None = None,
        n_expression: int | None = None,
        extra_stage: str = "posed",
    ) -> None:
        """``model``: prepared arrays (:func:`~.model_arrays.prepare_model`) or a model dict."""
        arrays = model if hasattr(model, "blend_directions") else prepare_flame_arrays(model, n_shape, n_expression)
        self.arrays = arrays
        self.extra_names = list(arrays.extra_names)
        self.extra_stage = extra_stage
        n_extra = len(arrays.extra_names)
        self.n_shape = arrays.n_shape
        self.n_expression = arrays.n_expression
        self.n_vertices = arrays.n_vertices
        self.faces = arrays.faces
        self.v_template = arrays.v_template.astype(np.float32)
        self._template_planar64 = arrays.v_template_planar
        # shape, expression, then (for extra_stage "shaped") extra rows: one coefficient vector
        shaped_extras = n_extra if extra_stage == "shaped" else 0
        self._n_coefficients = self.n_shape + self.n_expression + shaped_extras
        extra_rows = [arrays.extra_directions] if shaped_extras else []
        self._blend32 = np.concatenate([arrays.blend_directions, *extra_rows]).astype(np.float32)
        self._joint_template = arrays.joint_template
        extra_joint_rows = [arrays.extra_joint_directions] if shaped_extras else []
        self._joint_directions = np.concatenate([arrays.joint_directions, *extra_joint_rows])
        self._posed_extra = arrays.extra_directions.astype(np.float32) if n_extra and not shaped_extras else None
        self._offsets: np.ndarray | None = None
        self._joint_regressor = arrays.joint_regressor
        self._parents = arrays.parents
        self._coefficients: np.ndarray | None = None
        self._planar64: np.ndarray | None = None
        self._incremental_steps = 0
        self._last_shaped: np.ndarray | None = None
        self._last_planar: Any = None
        self._last_joints: np.ndarray | None = None
        self._skinning_arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._setup_heavy(arrays)

    # -- the two calls the Blender layer makes ------------------------------------------------

    def shaped(self, shape: Any = None, expression: Any = None, extra_params: Any = None, offsets: Any = None) -> np.ndarray:
        """``v_shaped`` ``(V, 3)`` float32 for ``shape (n_shape,)`` and ``expression (n_expression,)``.

        ``offsets (V, 3)`` are added before the joints are regressed; ``extra_params (E,)`` go
        here when the extra blend shapes enter before skinning (``extra_stage="shaped"``) and to
        :meth:`posed` otherwise.
        """
        n_extra = self._n_coefficients - self.n_shape - self.n_expression
        if extra_params is not None and not n_extra:
            where = "posed()" if self._posed_extra is not None else "nothing: the model has no extra blend shapes"
            raise FlameParameterError(f"extra_params: with extra_stage={self.extra_stage!r} they go to {where}")
        coefficients = self._coefficient_vector(shape, expression, extra_params, n_extra)
        offsets = self._check_offsets(offsets)
        same_offsets = (offsets is None) == (self._offsets is None) and (offsets is None or np.array_equal(offsets, self._offsets))
        previous = self._coefficients
        changed = None if previous is None else np.flatnonzero(coefficients != previous)
        if changed is not None and changed.size == 0 and self._last_shaped is not None and same_offsets:
            return self._last_shaped.copy()
        if not coefficients.any():
            planar64 = self._template_planar64.copy()
            self._incremental_steps = 0
        elif (
            changed is None
            or changed.size > MAX_INCREMENTAL_CHANGES
            or self._incremental_steps >= FULL_UPDATE_EVERY
            or self._planar64 is None
        ):
            planar64 = self._full_blend(coefficients)
            self._incremental_steps = 0
        else:
            step = (coefficients[changed] - previous[changed]) @ self._blend32[changed].astype(np.float64)
            planar64 = self._planar64 + step
            self._incremental_steps += 1
        self._coefficients = coefficients
        self._planar64 = planar64
        self._offsets = offsets
        joints = self._rest_joints(coefficients, offsets)
        if offsets is not None:
            planar64 = planar64 + offsets.T.reshape(-1)
        out = np.ascontiguousarray(planar64.reshape(3, -1).T, dtype=np.float32)
        self._remember(out, joints, planar64)
        return out

    def _check_offsets(self, offsets: Any) -> np.ndarray | None:
        if offsets is None:
            return None
        try:
            array = np.asarray(offsets, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise FlameParameterError(f"offsets: not an array of numbers ({error})") from None
        if array.shape != (self.n_vertices, 3):
            raise FlameParameterError(f"offsets: expected shape ({self.n_vertices}, 3), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise FlameParameterError("offsets holds NaN or inf values")
        return array

    def posed(
        self,
        v_shaped: np.ndarray,
        global_pose: Any = None,
        neck_pose: Any = None,
        jaw_pose: Any = None,
        eye_pose: Any = None,
        transl: Any = None,
        extra_params: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pose ``v_shaped (V, 3)``: ``(vertices (V, 3) float32 C-contiguous, joints (5, 3) float64)``.

        ``extra_params (E,)``: the extra blend shapes added after skinning (``extra_stage="posed"``).
        """
        extra = None
        if extra_params is not None:
            if self._posed_extra is None:
                where = "shaped()" if self.extra_names else "nothing: the model has no extra blend shapes"
                raise FlameParameterError(f"extra_params: with extra_stage={self.extra_stage!r} they go to {where}")
            extra = _vector("extra_params", extra_params)
            if extra.size != len(self.extra_names):
                raise FlameParameterError(f"extra_params: expected {len(self.extra_names)} values, got {extra.size}")
        pose, offset = _pose_and_transl(global_pose, neck_pose, jaw_pose, eye_pose, transl)
        if v_shaped is self._last_shaped and self._last_planar is not None:
            planar, rest_joints = self._last_planar, self._last_joints
        else:
            v = np.asarray(v_shaped)
            if v.shape != (self.n_vertices, 3):
                raise FlameParameterError(f"v_shaped: expected shape ({self.n_vertices}, 3), got {v.shape}")
            if not np.all(np.isfinite(v)):
                raise FlameParameterError("v_shaped holds NaN or inf values")
            rest_joints = self._joint_regressor @ v.astype(np.float64)
            planar = self._to_planar(v)
        feature, per_joint, world_joints = self._joint_terms(pose, rest_joints)
        if extra is not None:  # metrical-tracker: after skinning, before the translation
            shift = (extra.astype(np.float32) @ self._posed_extra).reshape(3, -1)
            if offset is not None:
                shift += offset.astype(np.float32)[:, None]
            vertices = self._skin(planar, feature, per_joint, None)
            vertices += shift.T
        else:
            vertices = self._skin(planar, feature, per_joint, offset)
        joints = world_joints if offset is None else world_joints + offset
        return vertices, joints

    def skinning(
        self,
        shape: Any = None,
        expression: Any = None,
        global_pose: Any = None,
        neck_pose: Any = None,
        jaw_pose: Any = None,
        eye_pose: Any = None,
        transl: Any = None,
        offsets: Any = None,
    ) -> Skinning:
        """What the pose does to a head whose ``v_shaped`` someone else computes (Blender's
        shape-key mix): the per-vertex skinning map and the pose correctives, without blending
        one shape direction. Arguments as for :meth:`shaped` and :meth:`posed`."""
        coefficients = self._coefficient_vector(shape, expression)
        pose, offset = _pose_and_transl(global_pose, neck_pose, jaw_pose, eye_pose, transl)
        rest_joints = self._rest_joints(coefficients, self._check_offsets(offsets))
        feature, per_joint, _ = self._joint_terms(pose, rest_joints)
        if self._skinning_arrays is None:  # float32, vertex-major, whatever the backend (2 MB)
            arrays, n = self.arrays, self.n_vertices
            pose_directions = arrays.pose_directions.reshape(-1, 3, n).transpose(0, 2, 1).reshape(-1, 3 * n)
            self._skinning_arrays = (
                np.ascontiguousarray(pose_directions, np.float32),
                np.ascontiguousarray(arrays.weights_transposed.T, np.float32),
            )
        pose_directions, weights = self._skinning_arrays
        # column c of every joint's [G - I | t] (rows r * 4 + c of per_joint), (J, 3) each and
        # contiguous, so that each (V, J) @ (J, 3) product below is one plain BLAS call writing
        # its (V, 3) block in place
        columns = np.ascontiguousarray(per_joint.reshape(3, 4, -1).transpose(1, 2, 0), np.float32)
        blended = np.empty((4, self.n_vertices, 3), np.float32)
        for column in range(4):
            np.matmul(weights, columns[column], out=blended[column])
        return Skinning(
            blended=blended,
            pose_offsets=(feature.astype(np.float32) @ pose_directions).reshape(-1, 3),
            transl=np.zeros(3) if offset is None else offset,
        )

    def _coefficient_vector(self, shape: Any, expression: Any, extra_params: Any = None, n_extra: int = 0) -> np.ndarray:
        """Shape, expression (fewer is zero-padded) and ``n_extra`` extra coefficients (exactly
        that many), checked, as one float64 vector."""
        coefficients = np.zeros(self.n_shape + self.n_expression + n_extra)
        for name, value, start, size, fewer in (
            ("shape", shape, 0, self.n_shape, True),
            ("expression", expression, self.n_shape, self.n_expression, True),
            ("extra_params", extra_params, self.n_shape + self.n_expression, n_extra, False),
        ):
            if value is None:
                continue
            vector = _vector(name, value)
            if vector.size > size or (not fewer and vector.size != size):
                raise FlameParameterError(f"{name}: {'at most ' if fewer else ''}{size} values, got {vector.size}")
            coefficients[start : start + vector.size] = vector
        return coefficients

    def _rest_joints(self, coefficients: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
        """Rest joints ``(5, 3)`` float64 of ``v_shaped``, from the regressed directions."""
        joints = (self._joint_template + coefficients @ self._joint_directions[: coefficients.size]).reshape(-1, 3)
        return joints if offsets is None else joints + self._joint_regressor @ offsets

    def _joint_terms(self, pose: np.ndarray, rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For ``pose (5, 3)`` about ``rest_joints (5, 3)``: the pose feature ``(36,)``, each
        joint's ``[G - I | t]`` as ``(12, J)`` and the posed joints ``(5, 3)``."""
        rotations = axis_angle_to_matrix(pose[None])
        transforms, world_joints, _ = rigid_transforms(rotations, rest_joints[None], self._parents)
        return pose_feature(rotations)[0], transforms[0].reshape(5, 12).T, world_joints[0]

    # -- the heavy parts (numpy here, torch in :class:`.torch_backend.TorchBackend`) ------------------------------------

    def _setup_heavy(self, arrays: Any) -> None:
        self._pose32 = arrays.pose_directions.astype(np.float32)
        self._weights32 = arrays.weights_transposed.astype(np.float32)
        n = self.n_vertices
        self._posed_buffer = np.empty(3 * n, dtype=np.float32)
        self._blended_buffer = np.empty((12, n), dtype=np.float32)
        self._product_buffer = np.empty((3, 3, n), dtype=np.float32)

    def _full_blend(self, coefficients: np.ndarray) -> np.ndarray:
        # The identity part is cached: in a played sequence only the expressions change, and
        # re-blending the 300 identity directions every frame would cost 3/4 of the work.
        n = self.n_shape
        shape = coefficients[:n]
        if getattr(self, "_identity_shape", None) is None or not np.array_equal(shape, self._identity_shape):
            self._identity_planar64 = self._template_planar64 + (shape.astype(np.float32) @ self._blend32[:n]).astype(np.float64)
            self._identity_shape = shape.copy()
        return self._identity_planar64 + (coefficients[n:].astype(np.float32) @ self._blend32[n:]).astype(np.float64)

    def _remember(self, shaped: np.ndarray, joints: np.ndarray, planar64: np.ndarray) -> None:
        self._last_shaped = shaped
        self._last_joints = joints
        self._last_planar = planar64.astype(np.float32)

    def _to_planar(self, v: np.ndarray) -> Any:
        return np.ascontiguousarray(v.T, dtype=np.float32).reshape(-1)

    def _skin(self, planar: Any, feature: np.ndarray, per_joint: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
        n = self.n_vertices
        v_posed = np.matmul(feature.astype(np.float32), self._pose32, out=self._posed_buffer)
        v_posed += planar
        v_posed = v_posed.reshape(3, n)
        blended = np.matmul(per_joint.astype(np.float32), self._weights32, out=self._blended_buffer).reshape(3, 4, n)
        product = np.multiply(blended[:, :3], v_posed[None], out=self._product_buffer)
        out = np.empty((n, 3), dtype=np.float32)
        skinned = out.T  # planar view of the interleaved result: the last sum writes it in place
        np.sum(product, axis=1, out=skinned)
        skinned += blended[:, 3]
        skinned += v_posed
        if offset is not None:
            skinned += offset.astype(np.float32)[:, None]
        return out


def _pose_and_transl(global_pose: Any, neck_pose: Any, jaw_pose: Any, eye_pose: Any, transl: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The pose as ``(5, 3)`` axis-angle rows (None: zero) and ``transl (3,)`` or None, checked."""
    pose = np.zeros((5, 3))
    for name, value, row, size in (
        ("global_pose", global_pose, 0, 3),
        ("neck_pose", neck_pose, 1, 3),
        ("jaw_pose", jaw_pose, 2, 3),
        ("eye_pose", eye_pose, 3, 6),
    ):
        if value is not None:
            vector = _vector(name, value)
            if vector.size != size:
                raise FlameParameterError(f"{name}: expected {size} values, got {vector.size}")
            pose.reshape(-1)[3 * row : 3 * row + size] = vector
    offset = None if transl is None else _vector("transl", transl)
    if offset is not None and offset.size != 3:
        raise FlameParameterError(f"transl: expected 3 values, got {offset.size}")
    return pose, offset


def _vector(name: str, value: Any) -> np.ndarray:
    try:
        vector = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise FlameParameterError(f"{name}: not an array of numbers ({error})") from None
    if not np.all(np.isfinite(vector)):
        raise FlameParameterError(f"{name} holds NaN or inf values")
    return vector
