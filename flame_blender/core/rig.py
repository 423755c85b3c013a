"""FLAME as a native skinned rig: the maths behind the Blender rig and its exports (no bpy).

FLAME is linear blend skinning of a blend-shaped mesh, which is exactly what an engine's skinned
mesh with morph targets computes. The rig written here reproduces the forward pass with:

* a base mesh ``v_template + shapedirs . shape`` (identity baked in), or the bare template with
  identity kept as morph targets;
* one morph target per expression coefficient (its weight IS the coefficient);
* 36 corrective morph targets, one per entry of ``R_j - I`` of the four non-root joints (neck,
  jaw, eyes); their weights are those entries, so their mix is FLAME's pose blend shape;
* five bones at the rest joints ``J_regressor . base``, each with the identity rest orientation
  (in FLAME's axes), so a bone's local rotation IS FLAME's local rotation ``R_j``.

Skinning then reads, per bone, ``P_j = P_parent . T(rest_j - rest_parent) . T(loc_j) . R_j`` and
moves a vertex by ``sum_j w_j P_j T(-rest_j) v``: Blender's, glTF's and FBX's convention.

Expression (and identity kept as morph targets) also moves FLAME's joints:
``J(t) = rest + d(t)`` with ``d = J_regressor . (directions . coefficients)``. FLAME's world
transform of joint j is ``G_j = G_parent . T(J_j - J_parent) . R_j`` and skins with
``G_j T(-J_j)``. Requiring ``P_j T(-rest_j) = G_j T(-J_j)``, i.e. ``P_j = G_j T(-d_j)``, and
unrolling both recursions gives the bone translations exactly::

    loc_j    = (I - R_j) d_j                         (non-root joints)
    loc_root = transl + (I - R_root) d_root

so expression-driven joint motion is carried by bone translation keys, with no approximation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FlameFileError, FlameParameterError

#: Bone names in FLAME's joint order.
BONE_NAMES: tuple[str, ...] = ("root", "neck", "jaw", "left_eye", "right_eye")
#: Identity coefficients come first in ``shapedirs``; expression ones start here (FLAME 2020/2023).
SHAPE_SPACE_SIZE = 300
EXPRESSION_KEY_PREFIX = "expr_"
SHAPE_KEY_PREFIX = "shape_"
CORRECTIVE_KEY_PREFIX = "pose_"
#: The four joints whose rotations feed the pose correctives, in posedirs order.
CORRECTIVE_JOINTS: tuple[str, ...] = BONE_NAMES[1:]
#: Entries of ``R - I`` lie within [-2, 2]: the corrective keys' slider range.
CORRECTIVE_LIMIT = 2.0


def corrective_key_name(joint: int, row: int, column: int) -> str:
    """``pose_jaw_01``: entry (row, column) of ``R - I`` of joint ``joint`` (1..4)."""
    return f"{CORRECTIVE_KEY_PREFIX}{BONE_NAMES[joint]}_{row}{column}"


def corrective_key_names() -> list[str]:
    """The 36 corrective key names in posedirs order (joint-major, then row, then column)."""
    return [corrective_key_name(j, r, c) for j in range(1, 5) for r in range(3) for c in range(3)]


# Entry (r, c) of R - I for a unit quaternion (w, x, y, z), as Blender simple expressions: only
# variables, + - * and numbers, so drivers evaluate without Python (and on render farms).
_ROTATION_MINUS_IDENTITY = (
    ("-2*(y*y+z*z)", "2*(x*y-w*z)", "2*(x*z+w*y)"),
    ("2*(x*y+w*z)", "-2*(x*x+z*z)", "2*(y*z-w*x)"),
    ("2*(x*z-w*y)", "2*(y*z+w*x)", "-2*(x*x+y*y)"),
)


def corrective_expression(row: int, column: int) -> str:
    """The driver expression of entry (row, column) of ``R - I`` in quaternion variables w x y z."""
    return _ROTATION_MINUS_IDENTITY[row][column]


def axis_angle_to_quaternion(rotation_vectors: Any) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` (w, x, y, z) from axis-angle vectors ``(..., 3)`` (radians).

    ``q = (cos(theta/2), sin(theta/2)/theta * r)``: exact (1, 0, 0, 0) at zero, no division by 0.
    """
    r = np.asarray(rotation_vectors, dtype=np.float64)
    theta = np.sqrt(np.einsum("...i,...i->...", r, r) + np.finfo(np.float64).tiny)
    half = np.sin(0.5 * theta) / theta
    return np.concatenate([np.cos(0.5 * theta)[..., None], r * half[..., None]], axis=-1)


def quaternion_to_matrix(quaternions: Any) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` (w, x, y, z; normalised here)."""
    q = np.asarray(quaternions, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


@dataclass(frozen=True)
class RigModel:
    """The static part of a rig (float64; ``V`` vertices, ``E`` expression keys, ``S`` identity keys).

    ``shape`` is the identity baked into ``base`` (zeros when identity is kept as keys).
    """

    base: np.ndarray  # (V, 3) FLAME coordinates
    faces: np.ndarray  # (F, 3) int64
    joints: np.ndarray  # (5, 3) rest joint positions = J_regressor @ base
    parents: tuple[int, ...]
    weights: np.ndarray  # (V, 5)
    shape: np.ndarray  # (n_shape,) identity baked into base
    shape_directions: np.ndarray  # (S, V, 3) identity keys (S = 0 when baked)
    expression_directions: np.ndarray  # (E, V, 3)
    corrective_directions: np.ndarray  # (36, V, 3)
    joint_shape_directions: np.ndarray  # (S, 5, 3)
    joint_expression_directions: np.ndarray  # (E, 5, 3)

    @property
    def n_expression(self) -> int:
        return self.expression_directions.shape[0]

    @property
    def n_shape_keys(self) -> int:
        return self.shape_directions.shape[0]


def build_rig_model(
    model: Mapping[str, Any], shape: Any = (), n_expression: int = 100, identity_keys: int = 0
) -> RigModel:
    """Rig data from a FLAME model dict (the keys :func:`~.model_io.load_flame` returns).

    Args:
        model: the FLAME model.
        shape: ``(n,)`` identity coefficients baked into the base mesh (ignored when
            ``identity_keys`` > 0: the base is then the template).
        n_expression: expression keys to make.
        identity_keys: identity keys to make instead of baking the identity.
    """
    for key in ("v_template", "f", "shapedirs", "posedirs", "weights", "J_regressor", "kintree_table"):
        if key not in model:
            raise FlameFileError(None, f"FLAME model lacks {key!r}; expected the keys load_flame returns")
    template = np.asarray(model["v_template"], dtype=np.float64)
    n_vertices = template.shape[0]
    shapedirs = np.asarray(getattr(model["shapedirs"], "x", model["shapedirs"]), dtype=np.float64)
    file_shape = min(SHAPE_SPACE_SIZE, shapedirs.shape[2])
    file_expression = shapedirs.shape[2] - file_shape
    shape = np.asarray(shape, dtype=np.float64).reshape(-1)
    if identity_keys:
        shape = np.zeros(0)
    if shape.size > file_shape or identity_keys > file_shape or not 0 <= n_expression <= file_expression:
        raise FlameParameterError(
            f"asked for {max(shape.size, identity_keys)} identity and {n_expression} expression "
            f"components; the model has {file_shape} and {file_expression}"
        )
    posedirs = np.asarray(model["posedirs"], dtype=np.float64)
    weights = np.asarray(model["weights"], dtype=np.float64)
    if posedirs.shape != (n_vertices, 3, 36) or weights.shape != (n_vertices, 5):
        raise FlameFileError(
            None, f"posedirs {posedirs.shape} / weights {weights.shape}; expected ({n_vertices}, 3, 36) / ({n_vertices}, 5)"
        )
    regressor = model["J_regressor"]
    regressor = np.asarray(regressor.toarray() if hasattr(regressor, "toarray") else regressor, dtype=np.float64)
    kintree = np.asarray(model["kintree_table"]).astype(np.int64)
    parents = tuple(-1 if j == 0 else int(p) for j, p in enumerate(kintree[0]))
    base = template + shapedirs[:, :, : shape.size] @ shape
    expression = shapedirs[:, :, file_shape : file_shape + n_expression].transpose(2, 0, 1)
    identity = shapedirs[:, :, :identity_keys].transpose(2, 0, 1)
    return RigModel(
        base=base,
        faces=np.asarray(model["f"]).astype(np.int64),
        joints=regressor @ base,
        parents=parents,
        weights=weights,
        shape=shape,
        shape_directions=np.ascontiguousarray(identity),
        expression_directions=np.ascontiguousarray(expression),
        corrective_directions=np.ascontiguousarray(posedirs.transpose(2, 0, 1)),
        joint_shape_directions=np.einsum("jv,kvc->kjc", regressor, identity),
        joint_expression_directions=np.einsum("jv,kvc->kjc", regressor, expression),
    )


@dataclass
class RigAnimation:
    """Per-frame channel values of the rig (float64, ``N`` frames)."""

    quaternions: np.ndarray  # (N, 5, 4) bone rotations, w x y z
    locations: np.ndarray  # (N, 5, 3) bone translations (bone axes = FLAME axes)
    corrective_values: np.ndarray  # (N, 36) entries of R_j - I, posedirs order
    expression: np.ndarray  # (N, E) expression key values
    shape: np.ndarray  # (N, S) identity key values

    @property
    def n_frames(self) -> int:
        return self.quaternions.shape[0]


def rig_animation(
    rig: RigModel,
    global_pose: Any,
    neck_pose: Any,
    jaw_pose: Any,
    eye_pose: Any,
    transl: Any,
    expression: Any,
    shape: Any = None,
) -> RigAnimation:
    """Channel values reproducing FLAME on every frame.

    Args:
        global_pose, neck_pose, jaw_pose: ``(N, 3)`` axis-angle; eye_pose ``(N, 6)``;
        transl: ``(N, 3)``; expression: ``(N, E)`` (E = ``rig.n_expression``);
        shape: ``(N, S)`` identity key values when identity is kept as keys, else None.
    """
    pose = np.concatenate(
        [np.asarray(p, dtype=np.float64).reshape(-1, n) for p, n in
         ((global_pose, 3), (neck_pose, 3), (jaw_pose, 3), (eye_pose, 6))], axis=1
    )
    count = pose.shape[0]
    expression = np.asarray(expression, dtype=np.float64).reshape(count, -1)
    if expression.shape[1] != rig.n_expression:
        raise FlameParameterError(f"expression: {expression.shape[1]} values a frame; the rig has {rig.n_expression} keys")
    shape = np.zeros((count, rig.n_shape_keys)) if shape is None else np.asarray(shape, dtype=np.float64).reshape(count, -1)
    if shape.shape[1] != rig.n_shape_keys:
        raise FlameParameterError(f"shape: {shape.shape[1]} values a frame; the rig has {rig.n_shape_keys} identity keys")
    transl = np.asarray(transl, dtype=np.float64).reshape(count, 3)
    quaternions = axis_angle_to_quaternion(pose.reshape(count, 5, 3))
    rotations = quaternion_to_matrix(quaternions)  # what the bones will do
    offsets = np.einsum("ne,ejc->njc", expression, rig.joint_expression_directions)
    offsets += np.einsum("ns,sjc->njc", shape, rig.joint_shape_directions)
    locations = offsets - np.einsum("njab,njb->nja", rotations, offsets)
    locations[:, 0] += transl
    return RigAnimation(
        quaternions=quaternions,
        locations=locations,
        corrective_values=corrective_values(rotations[:, 1:]),
        expression=expression,
        shape=shape,
    )


def corrective_values(rotations: Any) -> np.ndarray:
    """``(N, 36)`` corrective key values from the non-root rotations ``(N, 4, 3, 3)``."""
    r = np.asarray(rotations, dtype=np.float64)
    return (r - np.eye(3)).reshape(r.shape[0], 36)


def bone_matrices(rig: RigModel, animation: RigAnimation) -> np.ndarray:
    """``(N, 5, 4, 4)`` skinning matrices ``P_j T(-rest_j)`` as Blender builds them from the
    channels (pose = parent pose . rest offset . T(loc) . R)."""
    count = animation.n_frames
    rotations = quaternion_to_matrix(animation.quaternions)
    pose = np.zeros((count, 5, 4, 4))
    for j, parent in enumerate(rig.parents):
        local = np.zeros((count, 4, 4))
        local[:, :3, :3] = rotations[:, j]
        offset = rig.joints[j] - (rig.joints[parent] if parent >= 0 else 0.0)
        local[:, :3, 3] = offset + animation.locations[:, j]
        local[:, 3, 3] = 1.0
        pose[:, j] = local if parent < 0 else pose[:, parent] @ local
    unbind = np.tile(np.eye(4), (5, 1, 1))
    unbind[:, :3, 3] = -rig.joints
    return pose @ unbind


def rig_vertices(rig: RigModel, animation: RigAnimation) -> np.ndarray:
    """``(N, V, 3)``: the rig evaluated the way a skinned mesh with morph targets is (morph, then
    skin). Used to check the rig maths against FLAME without Blender."""
    morphed = rig.base[None] + np.einsum("ne,evc->nvc", animation.expression, rig.expression_directions)
    morphed += np.einsum("ns,svc->nvc", animation.shape, rig.shape_directions)
    morphed += np.einsum("nk,kvc->nvc", animation.corrective_values, rig.corrective_directions)
    skin = np.einsum("vj,njab->nvab", rig.weights, bone_matrices(rig, animation))
    return np.einsum("nvab,nvb->nva", skin[..., :3, :3], morphed) + skin[..., :3, 3]
