"""Importing a FLAME head: the mesh (faces, UVs, smooth shading, mask vertex groups), one shape
key per identity and expression component, and the pose key, as :mod:`.head` describes them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .. import core
from ..core.errors import FlameFileError, FlameParameterError
from ..core.model.flame_numpy import SHAPE_SPACE_SIZE
from . import pose_correction, runtime
from .head import (
    BASIS_KEY,
    COEFFICIENT_LIMIT,
    POSE_KEY,
    _set_key_points,
    expression_key_name,
    shape_key_name,
    suspended_updates,
    update_head,
)


def _resolve_counts(model: dict, n_shape: int | None, n_expression: int | None) -> tuple[int, int]:
    from .preferences import get_preferences

    total = int(model["shapedirs"].shape[2])
    file_shape = min(total, SHAPE_SPACE_SIZE)
    file_expression = max(total - SHAPE_SPACE_SIZE, 0)
    prefs = get_preferences()
    if n_shape is None or n_shape < 0:
        n_shape = min(file_shape, prefs.default_n_shape) if prefs is not None else file_shape
    if n_expression is None or n_expression < 0:
        n_expression = (
            min(file_expression, prefs.default_n_expression) if prefs is not None else file_expression
        )
    if n_shape + n_expression == 0:
        # Nothing to slide: almost always a mistyped count, so say so rather than import.
        raise FlameParameterError("choose at least one identity or expression component")
    if n_shape > file_shape or n_expression > file_expression:
        raise FlameParameterError(
            f"asked for {n_shape} identity and {n_expression} expression components; "
            f"the model has {file_shape} and {file_expression}"
        )
    return int(n_shape), int(n_expression)


def _optional_extras(folder: Path, faces: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Masks and per-corner UVs ``(3F, 2)`` from files beside the model, when present (UVs:
    ``core.find_head_uvs``, which says why it skipped a template OBJ)."""
    masks: dict[str, np.ndarray] = {}
    masks_file = folder / "FLAME_masks.pkl"
    if masks_file.is_file():
        masks = core.load_flame_masks(masks_file)
    uvs = core.find_head_uvs(folder, faces)
    for note in uvs.notes:
        print(f"FLAME: {note}")
    if uvs.corner_uvs is None:
        print(f"FLAME: {folder}: no UVs for the head (no template OBJ with UVs, no texture 'vt'/'ft'): no albedo")
    return masks, uvs.corner_uvs


def _target_collection(context_or_scene: Any):
    if isinstance(context_or_scene, bpy.types.Scene):
        return context_or_scene.collection, None
    collection = getattr(context_or_scene, "collection", None) or context_or_scene.scene.collection
    return collection, getattr(context_or_scene, "view_layer", None)


def import_head(
    context_or_scene: Any,
    flame_dir: str | Path,
    n_shape: int | None = None,
    n_expression: int | None = None,
    name: str = "FLAME",
    teeth: bool = False,
) -> bpy.types.Object:
    """Create a FLAME head object: 5023 vertices, smooth shading, UVs, mask vertex groups,
    shape keys ``Basis``, ``shape_000``..., ``expr_000``... and the pose key.

    Args:
        context_or_scene: a context (links into its active collection and makes the head
            active) or a scene (links into its master collection).
        flame_dir: a FLAME folder or model file (``core.find_flame_model_file`` picks the model).
        n_shape, n_expression: components to create; None: the preference defaults, capped at
            what the model has.
        name: object and mesh name.
        teeth: add VHAP's 120 tooth vertices inside the mouth (5143 vertices, see ``core.teeth``).

    Raises ``FlameFileError`` / ``FlameParameterError`` with nothing added to the file.
    """
    path = Path(bpy.path.abspath(str(flame_dir))).expanduser()
    if not path.exists():
        raise FlameFileError(path, "no such file or folder; expected a FLAME folder or model .pkl")
    # absolute but not resolved: a symlinked model reads the extras beside the link, as core does
    model_file = core.absolute_path(core.find_flame_model_file(path))
    model = runtime.get_model(model_file)
    n_shape, n_expression = _resolve_counts(model, n_shape, n_expression)
    faces = np.asarray(model["f"], dtype=np.int64)
    masks, corner_uvs = _optional_extras(model_file.parent, faces)
    if teeth:
        faces, corner_uvs = _with_teeth(model_file, faces, corner_uvs)
        model = runtime.get_model(model_file, teeth=True)
    runtime.get_backend(model_file, n_shape, n_expression, teeth)  # fail before creating anything

    collection, view_layer = _target_collection(context_or_scene)
    mesh = bpy.data.meshes.new(name)
    obj = None
    try:
        _fill_mesh(mesh, runtime.template(model_file, teeth), faces, corner_uvs)
        obj = bpy.data.objects.new(name, mesh)
        obj.rotation_euler = (math.pi / 2.0, 0.0, 0.0)
        for mask_name, indices in masks.items():
            obj.vertex_groups.new(name=mask_name).add(np.unique(indices).tolist(), 1.0, "REPLACE")
        _add_shape_keys(obj, model, n_shape, n_expression)
        with suspended_updates():
            obj.flame.is_head = True
            obj.flame.model_path = str(model_file)
            obj.flame.n_shape = n_shape
            obj.flame.n_expression = n_expression
            obj.flame.teeth = bool(teeth)
        collection.objects.link(obj)
        pose_correction.ensure(obj)
        update_head(obj)
    except BaseException:
        if obj is not None:
            pose_correction.remove(obj)
            key = obj.data.shape_keys
            bpy.data.objects.remove(obj)
            if key is not None and key.users == 0:
                bpy.data.shape_keys.remove(key)
        bpy.data.meshes.remove(mesh)
        raise
    if view_layer is not None:
        for other in view_layer.objects.selected:
            other.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
    return obj


def _with_teeth(model_file: Path, faces: np.ndarray, corner_uvs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Faces and per-corner UVs with VHAP's teeth triangles (and UVs) appended."""
    from ..core.model.teeth import teeth_faces

    all_faces = np.asarray(runtime.get_model(model_file, teeth=True)["f"], dtype=np.int64)
    if corner_uvs is not None:
        teeth_uvs = core.teeth_uvs().astype(np.float32)[teeth_faces().reshape(-1)]
        corner_uvs = np.concatenate([corner_uvs, teeth_uvs])
    return all_faces, corner_uvs


def _fill_mesh(mesh, vertices: np.ndarray, faces: np.ndarray, corner_uvs: np.ndarray | None) -> None:
    n_faces = faces.shape[0]
    mesh.vertices.add(vertices.shape[0])
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1))
    mesh.loops.add(3 * n_faces)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).reshape(-1))
    mesh.polygons.add(n_faces)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_faces, 3, dtype=np.int32))
    if corner_uvs is not None:
        mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", corner_uvs.reshape(-1))
    mesh.update()
    mesh.polygons.foreach_set("use_smooth", np.ones(n_faces, dtype=bool))
    mesh.update()


def _add_shape_keys(obj, model: dict, n_shape: int, n_expression: int) -> None:
    basis = obj.shape_key_add(name=BASIS_KEY, from_mix=False)
    template = np.asarray(model["v_template"], dtype=np.float64)
    directions = model["shapedirs"]
    names = [shape_key_name(i) for i in range(n_shape)]
    names += [expression_key_name(i) for i in range(n_expression)]
    columns = list(range(n_shape)) + [SHAPE_SPACE_SIZE + i for i in range(n_expression)]
    for key_name, column in zip(names, columns, strict=True):
        block = obj.shape_key_add(name=key_name, from_mix=False)
        block.slider_min = -COEFFICIENT_LIMIT
        block.slider_max = COEFFICIENT_LIMIT
        block.value = 0.0  # new keys may start at 1
        data = (template + directions[:, :, column]).astype(np.float32)
        _set_key_points(block, data)
    pose = obj.shape_key_add(name=POSE_KEY, from_mix=False)
    # Keep the pose key out of the way: its slider barely moves, and updates reset it to 1.
    pose.slider_max = 1.0
    pose.slider_min = 1.0 - 1e-3
    pose.value = 1.0
    if hasattr(pose, "lock_shape"):
        pose.lock_shape = True
    obj.active_shape_key_index = 0
    del basis
