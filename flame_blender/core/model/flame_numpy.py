"""The FLAME forward pass in plain numpy (float64): a speed path over :mod:`.lbs`.

:class:`FlameNumpy` computes what :func:`.lbs.lbs` computes (the tests prove it); it is what runs
inside a stock Blender, which has no torch. It reuses :mod:`.lbs` for the rotations and the
kinematic tree and lays the per-vertex work out for speed; two rearrangements, both exact in real
arithmetic, make it fast and make zero parameters give ``v_template`` bit for bit:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameParameterError
from .lbs import rigid_transforms as _tree_transforms
from .lbs import skinning_displacement
from .model_arrays import (  # noqa: F401  (re-exported: their historical home)
    JOINT_NAMES,
    PARAMETER_NAMES,
    POSE_ARGUMENTS,
    SHAPE_SPACE_SIZE,
    FlameArrays,
    check_parameter_shapes,
    expected_sizes,
    joint_levels,
    load_landmarks_beside,
    prepare_flame_arrays,
    prepare_model,
    resolve_flame_source,
)
from .rotation import axis_angle_to_matrix

#: Heads per chunk in batched forward passes: keeps each chunk's temporaries (about 1 MB a head
#: in float64) inside the caches instead of paging in fresh memory for every step.
CHUNK_SIZE = 16


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
        teeth: bool = False,
        extra_blendshapes: bool | Mapping[str, Any] = True,
        extra_stage: str = "posed",
        contour_convention: str = "deca",
    ) -> None:
        from .landmarks import LandmarkSet

        arrays, folder = prepare_model(flame, n_shape, n_expression, teeth, extra_blendshapes, extra_stage)
        self.arrays = arrays
        self.extra_names = list(arrays.extra_names)
        self.extra_stage = extra_stage
        self.teeth = bool(teeth)
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
        if arrays.extra_directions is not None:
            self._extra = arrays.extra_directions.astype(cast)
            self._extra_joints = arrays.extra_joint_directions.astype(cast)
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
        extra_params: Any = None,
        offsets: Any = None,
    ) -> np.ndarray:
        """Posed vertices ``(B, V, 3)``, or ``(V, 3)`` when no parameter has a batch axis.

        ``extra_params`` ``(E,)`` or ``(B, E)`` weigh :attr:`extra_names`; ``offsets`` ``(V, 3)``
        or ``(B, V, 3)`` are added to the shaped vertices before the joints are regressed.
        """
        return self._run(locals(), want_landmarks=False).vertices

    def run(self, **parameters: Any) -> FlameNumpyOutput:
        """Vertices, posed joints and every loaded landmark set."""
        return self._run(parameters, want_landmarks=True)

    def shape_blend(self, shape_params: Any = None, expression_params: Any = None, offsets: Any = None) -> np.ndarray:
        """``v_shaped = v_template + shapedirs . betas (+ offsets)``: ``(B, V, 3)`` or ``(V, 3)``."""
        values, batch, batched = self._parameters(
            {"shape_params": shape_params, "expression_params": expression_params, "offsets": offsets}
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
            {k: v.shape for k, v in values.items()}, self.n_shape, self.n_expression, len(self.extra_names)
        )
        offsets = values.get("offsets")
        if offsets is not None and offsets.shape[-2] != self.arrays.n_vertices:
            raise FlameParameterError(f"offsets: expected {self.arrays.n_vertices} vertices, got shape {offsets.shape}")
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
        extra = values.get("extra_params")
        if extra is not None and self.extra_stage == "shaped":
            c = np.broadcast_to(extra, (batch, extra.shape[-1]))
            planar = planar + c @ self._extra
            joints = joints + c @ self._extra_joints
        offsets = values.get("offsets")
        if offsets is not None:
            offsets = np.broadcast_to(offsets, (batch,) + offsets.shape[-2:])
            planar = planar + offsets.transpose(0, 2, 1).reshape(batch, -1)
            joints = joints + np.einsum("jv,bvc->bjc", self._joint_regressor, offsets).reshape(batch, -1)
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
        extra = values.get("extra_params")
        if extra is not None and self.extra_stage == "posed":
            # metrical-tracker: after skinning, before the translation
            c = np.broadcast_to(extra, (batch, extra.shape[-1]))
            vertices += (c @ self._extra).reshape(batch, 3, n_vertices).transpose(0, 2, 1)
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
        transforms, world_joints, world_rotations = _tree_transforms(rotations, joints, self.parents)
        # (C, 12, J) @ (J, V) -> per-vertex 3x4 displacement transforms, planar
        per_joint = transforms.reshape(count, n_joints, 12).transpose(0, 2, 1)
        skinned = v_posed + skinning_displacement(v_posed, per_joint, self._weights_transposed)
        return skinned, world_joints, world_rotations


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
