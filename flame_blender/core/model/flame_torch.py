"""FLAME as a PyTorch module: exact, batched, differentiable linear blend skinning.

Example::

    import torch
    from flame_blender.core import FLAME
    flame = FLAME("~/FLAME2020", n_shape=100, n_expression=50)   # or FLAME() for the synthetic head
    vertices = flame(shape_params=torch.randn(8, 100), jaw_pose=torch.tensor([0.2, 0.0, 0.0]))
    out = flame.run(global_pose=torch.tensor([0.0, 0.5, 0.0]))   # vertices, joints, landmarks

Every argument is optional (zeros) and is either ``(n,)`` or ``(B, n)``; unbatched arguments are
shared by the heads of a batched call, and the output has a batch axis only when some argument
has one. ``shape_params`` and ``expression_params`` may hold fewer values than the module was
built with (the missing ones are zero). Poses are axis-angle radians, 3 values each, ``eye_pose``
6 (left eye, then right eye); ``transl`` is metres. The math and its two exact rearrangements are
described in :mod:`.flame_numpy`; this module computes the same thing with autograd, on CPU or
CUDA, in float32 or float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FlameParameterError
from .landmarks import LandmarkSet
from .landmarks import contour_bin as contour_bin_numpy
from .lbs import barycentric_points, pose_feature, rigid_transforms
from .model_arrays import (
    PARAMETER_NAMES,
    POSE_ARGUMENTS,
    check_parameter_shapes,
    load_landmarks_beside,
    prepare_model,
)
from .rotation import axis_angle_to_matrix
from .torch_speed import blend, finish, merge_adjacent


@dataclass
class FlameOutput:
    """What :meth:`FLAME.run` returns (no batch axis for unbatched calls)."""

    vertices: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, 5, 3) posed and translated: root, neck, jaw, left eye, right eye
    landmarks: dict[str, torch.Tensor]  # name -> (B, L, 3)


class FLAME(torch.nn.Module):
    """The FLAME head model.

    Args:
        flame: a FLAME folder or model file (read with :func:`~.model_io.load_flame`), a dict with
            the keys ``load_flame`` returns, or None for the built-in synthetic model.
        n_shape, n_expression: how many identity / expression components to use (at most what
            the model holds, 300 and 100 for the real files); None = all.
        dtype, device: of every buffer and output.
        landmarks: True loads every landmark embedding found beside the model file; a dict of
            :class:`~.landmark_io.LandmarkEmbedding` uses those; False none.
        teeth: add VHAP's 120 tooth vertices (:mod:`.teeth`): 5143 vertices.
        extra_blendshapes: True loads the known extra blend shapes beside the model
            (metrical-tracker's ``l_eyelid.npy``/``r_eyelid.npy``, see :mod:`.extra_blendshapes`);
            a dict name -> ``(5023, 3)`` uses those; False none. Their names: :attr:`extra_names`.
        extra_stage: where they enter: "posed" (after skinning, before ``transl``, as
            metrical-tracker does) or "shaped" (added to the shaped mesh: they move the joints
            and the pose correctives).
        contour_convention: how the head's yaw picks the jaw-contour row: ``"deca"`` (DECA's
            sign, which puts the contour on the silhouette of the real files) or ``"smplx"``
            (smplx / FLAME_PyTorch's mirrored choice); see :mod:`.landmarks`.

    Attributes:
        faces: ``(F, 3)`` int64 triangles.
        parents: parent joint of each joint (-1 for the root).
        landmarks: the loaded :class:`~.landmarks.LandmarkSet`; ``landmarks.names`` are the sets
            :meth:`run` returns.
    """

    def __init__(
        self,
        flame: str | Path | Mapping[str, Any] | None = None,
        n_shape: int | None = 300,
        n_expression: int | None = 100,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        landmarks: bool | Mapping[str, Any] = True,
        teeth: bool = False,
        extra_blendshapes: bool | Mapping[str, Any] = True,
        extra_stage: str = "posed",
        contour_convention: str = "deca",
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise FlameParameterError(f"dtype {dtype}: expected torch.float32 or torch.float64")
        arrays, folder = prepare_model(flame, n_shape, n_expression, teeth, extra_blendshapes, extra_stage)
        self.teeth = bool(teeth)
        self.extra_names = list(arrays.extra_names)
        self.extra_stage = extra_stage
        self.n_shape = arrays.n_shape
        self.n_expression = arrays.n_expression
        self.n_vertices = arrays.n_vertices
        self.n_joints = arrays.n_joints
        self.parents = arrays.parents

        def buffer(name: str, array: np.ndarray, floating: bool = True) -> None:
            tensor = torch.as_tensor(np.ascontiguousarray(array))
            tensor = tensor.to(device=device, dtype=dtype if floating else torch.int64)
            self.register_buffer(name, tensor, persistent=False)

        buffer("faces", arrays.faces, floating=False)
        buffer("v_template", arrays.v_template)
        buffer("v_template_planar", arrays.v_template_planar)
        # pose correctives, then shape, expression and extra rows: one product gives v_posed
        extra_rows = [] if arrays.extra_directions is None else [arrays.extra_directions]
        buffer("directions", np.concatenate([arrays.pose_directions, arrays.blend_directions, *extra_rows]))
        self.n_pose_rows = arrays.pose_directions.shape[0]
        start = self.n_pose_rows + arrays.blend_directions.shape[0]
        self._extra_rows = slice(start, start + len(self.extra_names))
        extra_joint_rows = [] if arrays.extra_joint_directions is None else [arrays.extra_joint_directions]
        buffer("joint_template", arrays.joint_template)
        buffer("joint_directions", np.concatenate([arrays.joint_directions, *extra_joint_rows]))
        buffer("weights_transposed", arrays.weights_transposed)
        buffer("joint_regressor", arrays.joint_regressor)

        if isinstance(landmarks, Mapping):
            embeddings = dict(landmarks)
        else:
            embeddings = load_landmarks_beside(folder) if landmarks else {}
        self.landmarks = LandmarkSet.from_embeddings(embeddings, arrays.faces, contour_convention)
        self._static_landmarks: list[str] = []
        for name, (vertex_indices, barycentric) in self.landmarks.static.items():
            key = f"_landmark_{len(self._static_landmarks)}"
            buffer(f"{key}_vertices", vertex_indices, floating=False)
            buffer(f"{key}_barycentric", barycentric)
            self._static_landmarks.append(name)
        if self.landmarks.contour is not None:
            buffer("_contour_vertices", self.landmarks.contour[0], floating=False)
            buffer("_contour_barycentric", self.landmarks.contour[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    @property
    def device(self) -> torch.device:
        return self.v_template.device

    def extra_repr(self) -> str:
        return (
            f"n_shape={self.n_shape}, n_expression={self.n_expression}, vertices={self.n_vertices}, "
            f"landmarks={self.landmarks.names}, extra_names={self.extra_names}, extra_stage={self.extra_stage!r}"
        )

    # -- public API -------------------------------------------------------------------------

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
    ) -> torch.Tensor:
        """Posed vertices ``(B, V, 3)``, or ``(V, 3)`` when no argument has a batch axis.

        ``extra_params`` ``(E,)`` or ``(B, E)`` weigh :attr:`extra_names` in order; ``offsets``
        ``(V, 3)`` or ``(B, V, 3)`` (VHAP's static + dynamic offsets) are added to the shaped
        vertices before the joints are regressed.
        """
        values, batch, batched = self._parse(**_arguments(locals()))
        vertices, _, _ = self._forward(values, batch)
        return vertices if batched else vertices[0]

    def run(
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
    ) -> FlameOutput:
        """Vertices, posed joints and every loaded landmark set (see :mod:`.landmarks`)."""
        values, batch, batched = self._parse(**_arguments(locals()))
        vertices, joints, neck_rotations = self._forward(values, batch)
        landmarks = self.evaluate_landmarks(vertices, neck_rotations)
        if not batched:
            return FlameOutput(vertices[0], joints[0], {k: v[0] for k, v in landmarks.items()})
        return FlameOutput(vertices, joints, landmarks)

    def shape_blend(self, shape_params: Any = None, expression_params: Any = None, offsets: Any = None) -> torch.Tensor:
        """``v_shaped = v_template + shapedirs . betas (+ offsets)``: ``(B, V, 3)`` or ``(V, 3)``."""
        values, batch, batched = self._parse(shape_params=shape_params, expression_params=expression_params, offsets=offsets)
        planar = blend(self._base(values, batch), self._coefficient_pieces(values), self.directions)
        out = planar.reshape(batch, 3, self.n_vertices).transpose(1, 2).contiguous()
        return out if batched else out[0]

    def skin(
        self,
        v_shaped: Any,
        global_pose: Any = None,
        neck_pose: Any = None,
        jaw_pose: Any = None,
        eye_pose: Any = None,
        transl: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose a shaped mesh ``(B, V, 3)`` or ``(V, 3)``: returns ``(vertices, joints)``.

        Joints come from ``J_regressor @ v_shaped``; poses and ``transl`` as in :meth:`forward`.
        """
        v = self._tensor("v_shaped", v_shaped)
        if v.shape[-2:] != (self.n_vertices, 3) or v.dim() not in (2, 3):
            raise FlameParameterError(
                f"v_shaped: expected shape ({self.n_vertices}, 3) or (B, {self.n_vertices}, 3), got {tuple(v.shape)}"
            )
        _check_finite({"v_shaped": v})
        values, batch, batched = self._parse(
            global_pose=global_pose, neck_pose=neck_pose, jaw_pose=jaw_pose, eye_pose=eye_pose, transl=transl
        )
        if v.dim() == 3:
            if batched and batch != v.shape[0]:
                raise FlameParameterError(f"v_shaped has batch size {v.shape[0]}, the poses {batch}")
            batch, batched = v.shape[0], True
            values = {k: value.expand(batch, value.shape[-1]) for k, value in values.items()}
        v = v.expand(batch, self.n_vertices, 3)
        planar = v.transpose(1, 2).reshape(batch, 3 * self.n_vertices)
        joints = torch.einsum("jv,bvc->bjc", self.joint_regressor, v).reshape(batch, -1)
        joints = joints.view(batch, self.n_joints, 3)
        pose = _pose_vectors(values, batch)
        if pose is None:
            vertices, posed_joints = finish(planar, None, joints, values.get("transl"), self.weights_transposed)
        else:
            feature, per_joint, posed_joints, _ = self._joint_math(pose, joints)
            v_posed = torch.addmm(planar, feature, self.directions[: self.n_pose_rows])
            vertices, posed_joints = finish(v_posed, per_joint, posed_joints, values.get("transl"), self.weights_transposed)
        return (vertices, posed_joints) if batched else (vertices[0], posed_joints[0])

    def evaluate_landmarks(self, vertices: torch.Tensor, neck_rotations: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every loaded landmark set for ``vertices (B, V, 3)``: name -> ``(B, L, 3)``.

        ``neck_rotations (B, 3, 3)`` = ``R_root @ R_neck`` chooses the jaw contour (identity if None).
        """
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self._static_landmarks):
            vertex_indices = getattr(self, f"_landmark_{i}_vertices")
            barycentric = getattr(self, f"_landmark_{i}_barycentric")
            out[name] = barycentric_points(vertices, vertex_indices, barycentric)
        if self.landmarks.contour is not None:
            batch = vertices.shape[0]
            if neck_rotations is None:
                bins = torch.zeros(batch, dtype=torch.int64, device=vertices.device)
            else:
                bins = contour_bin(neck_rotations, self.landmarks.contour_convention)  # the choice of core/model/landmarks.py, not a copy
            # (B, 17, 3) corners and weights of each head's contour row
            contour = barycentric_points(vertices, self._contour_vertices[bins], self._contour_barycentric[bins])
            out[self.landmarks.contour_name] = contour
            if "static_51" in out:
                out["dynamic_68"] = torch.cat([contour, out["static_51"]], dim=1)
        return out

    # -- internals --------------------------------------------------------------------------

    def _tensor(self, name: str, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.dtype == self.dtype and value.device == self.device:
                return value
            if value.is_complex():
                raise FlameParameterError(f"{name}: complex values are not parameters")
            return value.to(device=self.device, dtype=self.dtype)
        try:
            return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype, device=self.device)
        except (TypeError, ValueError) as error:
            raise FlameParameterError(f"{name}: not an array of numbers ({error})") from None

    def _parse(self, **raw: Any) -> tuple[dict[str, torch.Tensor], int, bool]:
        values = {name: self._tensor(name, value) for name, value in raw.items() if value is not None}
        for name in values:
            if name not in PARAMETER_NAMES:
                raise FlameParameterError(f"unknown parameter {name!r}; expected one of {PARAMETER_NAMES}")
        batch, batched = check_parameter_shapes(
            {k: tuple(v.shape) for k, v in values.items()}, self.n_shape, self.n_expression, len(self.extra_names)
        )
        _check_finite(values)
        offsets = values.pop("offsets", None)
        values = {k: v.expand(batch, v.shape[-1]) for k, v in values.items()}
        if offsets is not None:
            if offsets.shape[-2] != self.n_vertices:
                raise FlameParameterError(f"offsets: expected {self.n_vertices} vertices, got shape {tuple(offsets.shape)}")
            values["offsets"] = offsets.expand(batch, self.n_vertices, 3)
        return values, batch, batched

    def _base(self, values: Mapping[str, torch.Tensor], batch: int) -> torch.Tensor:
        """``v_template (+ offsets)`` planar ``(B, 3V)``."""
        base = self.v_template_planar.expand(batch, -1)
        offsets = values.get("offsets")
        if offsets is not None:
            base = base + offsets.transpose(1, 2).reshape(batch, -1)
        return base

    def _forward(
        self, values: Mapping[str, torch.Tensor], batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Vertices ``(B, V, 3)``, posed joints ``(B, J, 3)``, neck world rotations ``(B, 3, 3)`` or None."""
        pieces = self._coefficient_pieces(values)
        joints = self.joint_template.expand(batch, -1)
        for coefficients, rows in pieces:
            shifted = slice(rows.start - self.n_pose_rows, rows.stop - self.n_pose_rows)
            joints = torch.addmm(joints, coefficients, self.joint_directions[shifted])
        joints = joints.reshape(batch, self.n_joints, 3)
        offsets = values.get("offsets")
        if offsets is not None:
            joints = joints + torch.einsum("jv,bvc->bjc", self.joint_regressor, offsets)
        base = self._base(values, batch)
        # extra blend shapes after skinning (metrical-tracker) come before the translation
        posed_extra = values.get("extra_params") if self.extra_stage == "posed" else None
        transl = values.get("transl") if posed_extra is None else None
        pose = _pose_vectors(values, batch)
        neck = None
        if pose is None:
            planar = blend(base, pieces, self.directions)
            vertices, posed_joints = finish(planar, None, joints, transl, self.weights_transposed)
        else:
            feature, per_joint, posed_joints, neck = self._joint_math(pose, joints)
            pieces = merge_adjacent([(feature, slice(0, self.n_pose_rows))] + pieces)
            v_posed = blend(base, pieces, self.directions)
            vertices, posed_joints = finish(v_posed, per_joint, posed_joints, transl, self.weights_transposed)
        if posed_extra is not None:
            extra = (posed_extra @ self.directions[self._extra_rows]).view(batch, 3, self.n_vertices)
            vertices = vertices + extra.transpose(1, 2)
            if values.get("transl") is not None:
                shift = values["transl"].unsqueeze(1)
                vertices, posed_joints = vertices + shift, posed_joints + shift
        return vertices, posed_joints, neck

    def _coefficient_pieces(self, values: Mapping[str, torch.Tensor]) -> list[tuple[torch.Tensor, slice]]:
        """``(coefficients (B, k), rows of self.directions)`` for the given shape/expression values."""
        first = self.n_pose_rows
        pieces = []
        shape = values.get("shape_params")
        expression = values.get("expression_params")
        if shape is not None and shape.shape[1]:
            pieces.append((shape, slice(first, first + shape.shape[1])))
        if expression is not None and expression.shape[1]:
            start = first + self.n_shape
            pieces.append((expression, slice(start, start + expression.shape[1])))
        extra = values.get("extra_params")
        if extra is not None and self.extra_stage == "shaped":
            pieces.append((extra, self._extra_rows))
        return merge_adjacent(pieces)

    def _joint_math(
        self, pose: torch.Tensor, joints: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pose feature ``(B, 36)``, per-joint skinning rows ``(B, 12, J)`` (``[G_j - I | t_j]``
        flattened), posed joints ``(B, J, 3)`` and neck world rotations ``(B, 3, 3)``."""
        batch, n_joints = pose.shape[0], self.n_joints
        needs_grad = torch.is_grad_enabled() and (pose.requires_grad or joints.requires_grad)
        if self.device.type == "cpu" and not needs_grad:
            # Without autograd on the CPU, these few dozen operations on 3x3 matrices are several
            # times faster in numpy than through torch's per-operation dispatch (and float64).
            rotations = axis_angle_to_matrix(pose.numpy().astype(np.float64))
            transforms, world_joints, world = rigid_transforms(rotations, joints.numpy().astype(np.float64), self.parents)
            feature = pose_feature(rotations)
            per_joint = transforms.reshape(batch, n_joints, 12).transpose(0, 2, 1)

            def back(array: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32 if self.dtype == torch.float32 else np.float64))

            return back(feature), back(per_joint), back(world_joints), back(world[:, 1])
        rotations = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
        feature = pose_feature(rotations)
        transforms, posed_joints, world = rigid_transforms(rotations, joints, self.parents)  # (B, J, 3, 4)
        per_joint = transforms.reshape(batch, n_joints, 12).transpose(1, 2)
        return feature, per_joint, posed_joints, world[:, 1]


def contour_bin(neck_rotations: torch.Tensor, convention: str = "deca") -> torch.Tensor:
    """Contour table index ``(B,)`` int64 from ``R_root @ R_neck`` ``(B, 3, 3)``: the choice
    :func:`.landmarks.contour_bin` makes (no gradient flows through a table index)."""
    bins = contour_bin_numpy(neck_rotations.detach().cpu().numpy().astype(np.float64), convention)
    return torch.as_tensor(np.asarray(bins, dtype=np.int64), device=neck_rotations.device)


def _arguments(frame_locals: dict[str, Any]) -> dict[str, Any]:
    """The model inputs of a ``forward``/``run`` call: its keyword arguments, ``self`` left out."""
    return {name: value for name, value in frame_locals.items() if name != "self"}


def _pose_vectors(values: Mapping[str, torch.Tensor], batch: int) -> torch.Tensor | None:
    """``(B, J, 3)`` axis-angle per joint, or None when no pose was given (rest pose)."""
    if not any(name in values for name, _ in POSE_ARGUMENTS):
        return None
    reference = next(iter(values.values()))
    parts = []
    for name, size in POSE_ARGUMENTS:
        value = values.get(name)
        if value is None:
            parts.append(torch.zeros(batch, size, dtype=reference.dtype, device=reference.device))
        else:
            parts.append(value)
    return torch.cat(parts, dim=1).view(batch, 5, 3)


def _check_finite(values: Mapping[str, torch.Tensor]) -> None:
    if not values:
        return
    if all(v.device.type == "cpu" for v in values.values()):
        # a few dozen numbers: numpy checks them without torch's per-operation overhead
        if np.isfinite(np.concatenate([v.detach().numpy().reshape(-1) for v in values.values()])).all():
            return
    else:
        flat = [v.detach().reshape(-1) for v in values.values()]
        if bool(torch.isfinite(torch.cat(flat) if len(flat) > 1 else flat[0]).all()):
            return
    for name, value in values.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise FlameParameterError(f"{name} holds NaN or inf values")
