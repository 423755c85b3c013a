"""Export presets for a FLAME rig, through Blender's own exporters.

- glTF / GLB: skin + morph targets + the sampled animation (``export_scene.gltf``);
- FBX for Unity (metres, Y up) and Unreal (centimetres, Z up) (``export_scene.fbx``);
- Alembic and USD: point caches of the evaluated mesh, one sample a frame.

Each export selects only the rig's two objects, mutes the corrective drivers so the exporters
read their keyframes (:func:`.rig.baked_correctives`), and puts the selection, the active object
and the frame back afterwards. A path that cannot be written raises ``OSError`` before any
exporter runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import bpy

from . import rig as rig_module

FORMATS: dict[str, tuple[str, str]] = {
    # id: (label, file extension)
    "GLB": ("glTF Binary (.glb)", ".glb"),
    "GLTF": ("glTF Separate (.gltf)", ".gltf"),
    "FBX_UNITY": ("FBX for Unity (metres, Y up)", ".fbx"),
    "FBX_UNREAL": ("FBX for Unreal (centimetres, Z up)", ".fbx"),
    "ABC": ("Alembic point cache (.abc)", ".abc"),
    "USD": ("USD point cache (.usdc)", ".usdc"),
}

#: FBX presets: Blender units are metres. Unity: 1 unit = 1 m, Y up, -Z forward; Unreal: 1 unit =
#: 1 cm (geometry scaled by 100), Z up, -Y forward. Both: no leaf bones, baked sampled animation.
FBX_PRESETS: dict[str, dict[str, Any]] = {
    "FBX_UNITY": {"apply_scale_options": "FBX_SCALE_ALL", "global_scale": 1.0, "axis_forward": "-Z", "axis_up": "Y"},
    "FBX_UNREAL": {"apply_scale_options": "FBX_SCALE_NONE", "global_scale": 1.0, "axis_forward": "-Y", "axis_up": "Z"},
}


def usd_available() -> bool:
    """Whether this Blender was built with USD (the PyPI bpy module is; some builds are not)."""
    return bool(getattr(bpy.app.build_options, "usd", False)) and hasattr(bpy.ops.wm, "usd_export")


def alembic_available() -> bool:
    return bool(getattr(bpy.app.build_options, "alembic", False)) and hasattr(bpy.ops.wm, "alembic_export")


def check_writable(path: str | Path) -> Path:
    """The absolute path, after checking its folder exists and can be written (``OSError`` if not)."""
    path = Path(bpy.path.abspath(str(path))).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise OSError(f"{path}: the folder {folder} does not exist")
    probe = folder / f".flame_write_test_{path.name}"
    try:
        probe.write_bytes(b"")
    except OSError as error:
        raise OSError(f"{path}: cannot write there ({error.strerror or error})") from None
    probe.unlink(missing_ok=True)
    if path.is_dir():
        raise OSError(f"{path} is a folder; expected a file name")
    return path


def export_rig(armature, path: str | Path, file_format: str, frame_range: tuple[int, int] | None = None) -> Path:
    """Export the rig of ``armature`` (made by :func:`.rig.make_rig`) to ``path``.

    ``file_format``: a key of :data:`FORMATS`. ``frame_range``: (first, last) frame; None: the
    rig's keyed range. Returns the written path.
    """
    if file_format not in FORMATS:
        raise ValueError(f"format {file_format!r}: expected one of {tuple(FORMATS)}")
    objects = rig_module.rig_objects(armature)
    if objects is None:
        raise ValueError(f"{getattr(armature, 'name', armature)!r} is not a FLAME rig; make one with Make Rig")
    armature, mesh_obj = objects
    path = check_writable(path)
    if file_format == "USD" and not usd_available():
        raise RuntimeError("this Blender has no USD support (bpy.app.build_options.usd is off)")
    if file_format == "ABC" and not alembic_available():
        raise RuntimeError("this Blender has no Alembic support (bpy.app.build_options.alembic is off)")
    first, last = frame_range or rig_module.rig_frame_range(armature)
    with _exporting(armature, mesh_obj, first, last):
        if file_format in ("GLB", "GLTF"):
            _call(
                bpy.ops.export_scene.gltf,
                filepath=str(path), export_format="GLB" if file_format == "GLB" else "GLTF_SEPARATE",
                use_selection=True, export_animations=True, export_skins=True, export_morph=True,
                export_morph_normal=False, export_frame_range=True, export_anim_single_armature=True,
                export_def_bones=False, export_apply=False, export_all_influences=True, export_yup=True,
                # The rig has one linear key a frame on every channel: written as they are (no
                # re-sampling through the depsgraph, ten times faster), and the armature's and
                # the shape keys' actions merged into one glTF animation that engines play.
                export_force_sampling=False, export_animation_mode="ACTIVE_ACTIONS",
            )
        elif file_format in FBX_PRESETS:
            _call(
                bpy.ops.export_scene.fbx,
                filepath=str(path), use_selection=True, object_types={"ARMATURE", "MESH"},
                add_leaf_bones=False, bake_anim=True, bake_anim_use_all_bones=True,
                bake_anim_use_nla_strips=False, bake_anim_use_all_actions=False,
                bake_anim_force_startend_keying=True, bake_anim_step=1.0, bake_anim_simplify_factor=0.0,
                use_armature_deform_only=False, primary_bone_axis="Y", secondary_bone_axis="X",
                mesh_smooth_type="FACE", use_mesh_modifiers=False, **FBX_PRESETS[file_format],
            )
        elif file_format == "ABC":
            _call(
                bpy.ops.wm.alembic_export,
                filepath=str(path), start=first, end=last, selected=True, flatten=False,
                uvs=True, normals=True, face_sets=False, export_hair=False, export_particles=False,
                evaluation_mode="RENDER", as_background_job=False,
            )
        else:
            _call(
                bpy.ops.wm.usd_export,
                filepath=str(path), selected_objects_only=True, export_animation=True,
                export_armatures=False, export_shapekeys=False, export_materials=True,
                export_uvmaps=True, export_normals=True, evaluation_mode="RENDER",
            )
    if not path.exists() and file_format != "GLTF":
        raise OSError(f"{path}: the exporter reported success but wrote nothing")
    return path


def _call(operator, **options: Any) -> None:
    """Run an exporter with the options this Blender knows (names differ between versions)."""
    known = {prop.identifier for prop in operator.get_rna_type().properties}
    result = operator(**{name: value for name, value in options.items() if name in known})
    if "FINISHED" not in result:
        raise RuntimeError(f"{operator.idname_py()} did not finish: {result}")


@contextmanager
def _exporting(armature, mesh_obj, first: int, last: int) -> Iterator[None]:
    context = bpy.context
    scene = context.scene
    view_layer = context.view_layer
    saved = (
        [obj for obj in view_layer.objects.selected if obj is not None],
        view_layer.objects.active, scene.frame_start, scene.frame_end, scene.frame_current,
    )
    try:
        for obj in saved[0]:
            obj.select_set(False)
        armature.select_set(True)
        mesh_obj.select_set(True)
        view_layer.objects.active = armature
        scene.frame_start, scene.frame_end = first, last
        with rig_module.baked_correctives(mesh_obj):
            yield
    finally:
        for obj in list(view_layer.objects.selected):
            if obj is not None:
                obj.select_set(False)
        for obj in saved[0]:
            with suppress(ReferenceError):
                obj.select_set(True)
        view_layer.objects.active = saved[1]
        scene.frame_start, scene.frame_end = saved[2], saved[3]
        scene.frame_set(saved[4])
